'use strict'
// A deep page by offset and by cursor, on a log of 1,000,000 events: keyset pagination makes
// page 10,000 cost what page 1 costs, where OFFSET makes SQLite step over every row before it.
// Run: `node bench/deep-page.js` or `bun bench/deep-page.js`. Prints medians of 5 reads.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { initQueue } = require('..')

const EVENTS = 1_000_000
const LIMIT = 100
const USERS = 10

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'eventlite-deep-page-'))
const q = initQueue({ dbName: path.join(dir, 'events.sqlite'), indexes: { datetime: true, user_datetime: true } })

function median(read) {
  const times = []
  for (let i = 0; i < 5; i++) {
    const start = process.hrtime.bigint()
    read()
    times.push(Number(process.hrtime.bigint() - start) / 1e6)
  }
  return times.sort((a, b) => a - b)[2]
}

/** Walks to `page` by cursor; returns the cursor that reads it. */
function cursorOf(read, page) {
  let cursor = null
  for (let n = 1; n < page; n++) cursor = read({ limit: LIMIT, cursor, withCount: false }).nextCursor
  return cursor
}

/** Pages are read with `withCount: false`: counting is the same work whichever way a page is found. */
function compare(title, read, deepPage) {
  const cursor = cursorOf(read, deepPage)
  const offset = (deepPage - 1) * LIMIT
  const page = (o) => read({ limit: LIMIT, withCount: false, ...o })
  if (JSON.stringify(page({ offset }).events) !== JSON.stringify(page({ cursor }).events)) {
    throw new Error(`${title}: the page by offset and the page by cursor differ`)
  }
  const line = (label, read, note = '') => console.log(`  ${label.padEnd(34)} ${median(read).toFixed(3).padStart(8)} ms${note}`)
  const deep = `page ${deepPage.toLocaleString('en-US')}`
  console.log(title)
  line('page 1', () => page({}))
  line(`${deep} by offset (${offset.toLocaleString('en-US')})`, () => page({ offset }))
  line(`${deep} by cursor`, () => page({ cursor }))
  const total = read({ limit: 1 }).totalCount.toLocaleString('en-US')
  line(`COUNT(*) of the ${total} rows`, () => read({ limit: 1, offset: 1 }), ' (what withCount: true adds to each page)')
}

try {
  // Timestamps are Date.now(): thousands of events share each millisecond, so ties are common.
  for (let at = 0; at < EVENTS; at += 50_000) {
    q.storeBulk(Array.from({ length: 50_000 }, (_, k) => ({ cmd: 'logEvent', data: { i: at + k }, user: 'user' + ((at + k) % USERS) })))
  }
  const runtime = typeof Bun !== 'undefined' ? `Bun ${Bun.version}` : `Node ${process.version}`
  console.log(`${EVENTS.toLocaleString('en-US')} events, pages of ${LIMIT}, ${runtime}`)
  compare('getEventsInTimeRangePaginated(-Infinity, Infinity), indexes.datetime',
    (o) => q.getEventsInTimeRangePaginated(-Infinity, Infinity, o), EVENTS / LIMIT)
  compare(`getEventsByUserPaginated('user3'), indexes.user_datetime`,
    (o) => q.getEventsByUserPaginated('user3', o), EVENTS / USERS / LIMIT)
} finally {
  q.close()
  fs.rmSync(dir, { recursive: true, force: true })
}
