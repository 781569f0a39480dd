'use strict'
// The ordered reads of openQueue({ url }): the paginated reads and their cursors (page for page
// what the SQLite queue returns for the same events), streamEvents and its options, follow woken
// by a store of another process, cycleThrough, and the no-gaps rule: a reader never passes an
// event of a transaction still open. Each test has a schema of its own; reported as skipped,
// with the reason, when no PostgreSQL server can run.
const assert = require('node:assert/strict')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { Client } = require('pg')
const { after, tempDb } = require('./helpers')
const { pgUrl, pgDescribe, pgTest, freshSchema } = require('./pg-server')
const { initQueue, openQueue } = require('..')

const OPENER = path.join(__dirname, 'fixtures', 'pg-open.js')

/** A node-postgres client of the test server, ended when the suite ends. */
async function client() {
  const c = new Client({ connectionString: pgUrl().url })
  await c.connect()
  after(() => c.end())
  return c
}

async function open(options = {}) {
  const schema = options.schema ?? freshSchema('read')
  const q = await openQueue({ url: pgUrl().url, ...options, schema })
  after(() => q.close())
  return q
}

/**
 * Resolves once `check()` is truthy (its value). No deadline of its own: a condition that never
 * comes fails the test by the runner's timeout, whatever the machine's speed. `what` names it
 * for whoever reads the hung test.
 */
async function until(check, what) {
  for (;;) {
    const value = await check()
    if (value) return value
    await new Promise((resolve) => setTimeout(resolve, 5, what))
  }
}

/** Reads a following stream's batches into `seen` (their ids) until `stop` aborts it. */
function follow(q, options, seen) {
  const controller = new AbortController()
  const done = (async () => {
    for await (const rows of q.streamEvents({ ...options, follow: true, signal: controller.signal })) {
      seen.push(...rows.map((row) => row.id))
    }
  })()
  return { stop: () => controller.abort(), done }
}

/** Twelve events: correlation `c{i % 2}`, user `u{i % 3}`, cmd `a`/`b`, datetime `floor(i / 4)`, each after the first a child of event 1. */
function sample(i) {
  return { cmd: i % 4 === 0 ? 'b' : 'a', data: { i }, user: `u${i % 3}`, correlationId: `c${i % 2}`, causationId: i === 1 ? null : 1 }
}

/** Stores the sample events 1..n into a queue opened with `datetime: clock.now`. */
async function storeSample(store, clock, n) {
  for (let i = 1; i <= n; i++) {
    clock.at = Math.floor(i / 4)
    await store(sample(i))
  }
}

/** Every page of `read(options)`, walked by cursor (or by offset): the pages as returned. */
async function walk(read, { limit, byOffset = false }) {
  const pages = []
  let options = { limit }
  for (;;) {
    const page = await read(options)
    pages.push(page)
    if (!page.hasMore) return pages
    options = byOffset ? { limit, offset: page.nextOffset } : { limit, cursor: page.nextCursor }
  }
}

const READS = [
  ['getByCorrelationIdPaginated', 'c0'],
  ['getChildEventsPaginated', 1],
  ['getEventsByUserPaginated', 'u1'],
  ['getEventsByCmdPaginated', 'a'],
  ['getEventsInTimeRangePaginated', 1, 2],
]

pgDescribe('openQueue({ url }): ordered reads', () => {
  pgTest('the five paginated reads return, page for page and cursor for cursor, what SQLite returns for the same events', async () => {
    const clock = { at: 0 }
    const q = await open({ datetime: () => clock.at })
    const sqlite = initQueue({ dbName: tempDb(), datetime: () => clock.at })
    after(() => sqlite.close())
    await storeSample((e) => q.store(e), clock, 12)
    await storeSample((e) => sqlite.store(e), clock, 12)
    for (const [method, ...args] of READS) {
      for (const limit of [1, 3, 5, 100]) {
        for (const byOffset of [false, true]) {
          const pg = await walk((options) => q[method](...args, options), { limit, byOffset })
          const lite = await walk((options) => sqlite[method](...args, options), { limit, byOffset })
          assert.deepEqual(pg, lite, `${method}(${args}) by ${byOffset ? 'offset' : 'cursor'}, limit ${limit}`)
        }
      }
      const uncounted = await q[method](...args, { limit: 2, withCount: false })
      assert.deepEqual(uncounted, sqlite[method](...args, { limit: 2, withCount: false }))
      assert.equal(uncounted.totalCount, null)
    }
    // The expected ids, so that the comparison is not of two empty results.
    const ids = async (method, ...args) => (await q[method](...args)).events.map((e) => e.id)
    assert.deepEqual(await ids('getByCorrelationIdPaginated', 'c0'), [2, 4, 6, 8, 10, 12])
    assert.deepEqual(await ids('getEventsInTimeRangePaginated', 1, 2), [11, 10, 9, 8, 7, 6, 5, 4])
    assert.deepEqual(await ids('getEventsInTimeRangePaginated', 0.5, 1.5), [7, 6, 5, 4])
    assert.deepEqual(await ids('getEventsByUserPaginated', 'nobody'), [])
  })

  pgTest('a cursor of another query, a malformed cursor and bad page options are RangeErrors, and the arguments TypeErrors', async () => {
    const clock = { at: 0 }
    const q = await open({ datetime: () => clock.at })
    await storeSample((e) => q.store(e), clock, 6)
    const { nextCursor } = await q.getEventsByUserPaginated('u1', { limit: 1 })
    const refused = async (promise, Ctor, pattern) => {
      await assert.rejects(promise, (err) => err instanceof Ctor && err.code === 'ERR_INVALID_OPTION' && pattern.test(err.message))
    }
    await refused(q.getEventsByUserPaginated('u2', { cursor: nextCursor }), RangeError, /another query/)
    await refused(q.getEventsByCmdPaginated('u1', { cursor: nextCursor }), RangeError, /another query/)
    await refused(q.getEventsByUserPaginated('u1', { cursor: 'x' }), RangeError, /malformed/)
    await refused(q.getEventsByUserPaginated('u1', { cursor: nextCursor, offset: 1 }), RangeError, /not both/)
    await refused(q.getEventsByUserPaginated('u1', { limit: 0 }), RangeError, /limit/)
    await refused(q.getEventsByUserPaginated('u1', { cursor: 7 }), TypeError, /cursor/)
    await assert.rejects(q.getEventsByUserPaginated(7), { name: 'TypeError', code: 'ERR_INVALID_ARG' })
    await assert.rejects(q.getChildEventsPaginated('one'), { name: 'TypeError', code: 'ERR_INVALID_ARG' })
    await assert.rejects(q.getEventsInTimeRangePaginated(0, 'later'), { name: 'TypeError', code: 'ERR_INVALID_ARG' })
  })

  pgTest('streamEvents: batches in id order, bounded by startId and endId, filtered by correlationId, user and cmd', async () => {
    const clock = { at: 0 }
    const q = await open({ datetime: () => clock.at })
    await storeSample((e) => q.store(e), clock, 12)
    const read = async (options) => {
      const batches = []
      for await (const rows of q.streamEvents(options)) batches.push(rows.map((row) => row.id))
      return batches
    }
    assert.deepEqual(await read({ batchSize: 5 }), [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10], [11, 12]])
    assert.deepEqual(await read({ batchSize: 4, startId: 3, endId: 9 }), [[3, 4, 5, 6], [7, 8, 9]])
    assert.deepEqual(await read({ correlationId: 'c1', user: 'u1' }), [[1, 7]])
    assert.deepEqual(await read({ cmd: 'b', batchSize: 2 }), [[4, 8], [12]])
    assert.deepEqual(await read({ startId: 13 }), [])
    const [first] = await read({ endId: 1 })
    assert.deepEqual(first, [1])
    const rows = []
    for await (const batch of q.streamEvents({ startId: 2, endId: 2 })) rows.push(...batch)
    assert.deepEqual(rows, [await q.retrieveByID(2)], 'a streamed row is the row the point read returns')
    for (const bad of [{ batchSize: 0 }, { startId: -1 }, { follow: 'yes' }, { nope: 1 }]) {
      await assert.rejects(read(bad), (err) => err.code === 'ERR_INVALID_OPTION', JSON.stringify(bad))
    }
  })

  pgTest('cycleThrough replays every event stored before it started, in id order', async () => {
    const q = await open()
    for (let i = 0; i < 25; i++) await q.store({ cmd: 'n', data: { i } })
    const seen = []
    let done = false
    await q.cycleThrough({ n: (data, meta) => { seen.push(meta.id) } }, () => { done = true }, undefined, { start: 3 })
    assert.ok(done)
    assert.deepEqual(seen, Array.from({ length: 23 }, (_, k) => k + 3))
  })

  pgTest('a following stream is woken by a store of another process, and ends when the queue closes', async () => {
    const schema = freshSchema('read')
    const q = await open({ schema })
    await q.store({ cmd: 'first' })
    const seen = []
    const reader = follow(q, {}, seen)
    await until(() => seen.length >= 1, 'the stored event is read')
    const child = spawn(process.execPath, [OPENER, pgUrl().url, schema], { stdio: ['pipe', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (chunk) => { out += chunk })
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.stdin.write('go\n')
    assert.equal(await exited, 0)
    assert.match(out, /^stored 2$/m)
    await until(() => seen.length >= 2, 'the other process\'s event is read')
    assert.deepEqual(seen, [1, 2])
    await q.close()
    await reader.done
  })

  pgTest('no gaps: an open transaction holds back every reader at its event, and once it commits both events come, in id order', async () => {
    const schema = freshSchema('read')
    const q = await open({ schema })
    const other = await open({ schema })
    await q.store({ cmd: 'before' })
    const raw = await client()
    await raw.query('BEGIN')
    // Not following the write protocol (no advisory lock): its id is taken now, its commit comes last.
    const { rows } = await raw.query(`INSERT INTO "${schema}".queue (datetime, cmd) VALUES (0, 'open') RETURNING id`)
    const openId = Number(rows[0].id)
    const stored = await other.store({ cmd: 'after' })
    assert.ok(stored.id > openId, 'the committed event has the larger id')
    const seen = []
    const reader = follow(q, {}, seen)
    const consumed = []
    const consumer = q.consume('gap', { batchSize: 1 })
    const consuming = (async () => {
      for await (const rows of consumer) consumed.push(...rows.map((row) => row.id))
    })()
    const streamed = async () => {
      const ids = []
      for await (const batch of q.streamEvents({})) ids.push(...batch.map((row) => row.id))
      return ids
    }
    await until(() => seen.length >= 1 && consumed.length >= 1, 'the event before the open transaction is read')
    // Every ordered read stops before the open transaction's event: a stream, a page, a replay.
    assert.deepEqual(await streamed(), [1])
    assert.deepEqual((await q.getEventsByCmdPaginated('after')).events, [])
    // A store from the follower's own queue wakes it: it reads again, and still stops there.
    await q.store({ cmd: 'later' })
    const page = await q.getEventsInTimeRangePaginated(-Infinity, Infinity, { limit: 1 })
    assert.equal(page.totalCount, 1)
    assert.deepEqual(seen, [1])
    assert.deepEqual(consumed, [1])
    // Its commit notifies nobody: the readers find its event on their slow re-read, and the one
    // after it with it.
    await raw.query('COMMIT')
    await until(() => seen.length >= 4 && consumed.length >= 4, 'every event is read once the transaction commits')
    assert.deepEqual(seen, [1, openId, stored.id, stored.id + 1])
    assert.deepEqual(consumed, seen)
    assert.deepEqual(await streamed(), [1, openId, stored.id, stored.id + 1])
    reader.stop()
    await reader.done
    await q.close()
    await consuming
  })

  pgTest('a follower whose LISTEN connection is terminated listens again, and misses nothing stored meanwhile', async () => {
    const schema = freshSchema('read')
    const q = await open({ schema })
    const other = await open({ schema })
    const admin = await client()
    const seen = []
    const listeners = async () => (await admin.query(
      "SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN %' AND datname = current_database()")).rows.map((r) => r.pid)
    // Other tests' queues listen too: this follower's connection is the one that was not there.
    const others = new Set(await listeners())
    const reader = follow(q, {}, seen)
    const ours = async (not) => (await listeners()).find((pid) => !others.has(pid) && pid !== not)
    const first = await until(() => ours(), 'the listener connects')
    await other.store({ cmd: 'one' })
    await until(() => seen.length >= 1, 'the first event is read')
    await admin.query('SELECT pg_terminate_backend($1)', [first])
    await other.store({ cmd: 'two' })
    await until(() => seen.length >= 2, 'the event stored while the listener was down is read')
    await until(() => ours(first), 'the listener connects again')
    await other.store({ cmd: 'three' })
    await until(() => seen.length >= 3, 'the event stored after it reconnected is read')
    assert.deepEqual(seen, [1, 2, 3])
    reader.stop()
    await reader.done
  })

  pgTest('a consumer commits the batch in hand when the next is asked for, and a new queue resumes after the last commit', async () => {
    const schema = freshSchema('read')
    const q = await open({ schema })
    for (let i = 1; i <= 5; i++) await q.store({ cmd: 'n', data: { i } })
    const first = q.consume('projection', { batchSize: 2, follow: false })
    const batches = []
    for await (const rows of first) {
      batches.push(rows.map((row) => row.id))
      if (batches.length === 2) break // [3, 4] in hand, not committed
    }
    assert.deepEqual(batches, [[1, 2], [3, 4]])
    assert.equal(first.position, 2)
    assert.deepEqual(await q.getConsumers(), [{ name: 'projection', member: 0, size: 1, position: 2, lag: 3 }])
    await q.close()

    const again = await open({ schema })
    const resumed = again.consume('projection', { batchSize: 2, follow: false })
    const rest = []
    for await (const rows of resumed) {
      // Started where the last queue's commits left it.
      if (rest.length === 0) assert.equal(resumed.position, 2)
      rest.push(rows.map((row) => row.id))
      await resumed.commit() // committing the batch in hand at once: the same as on the next step
      assert.equal(resumed.position, rows.at(-1).id)
    }
    assert.deepEqual(rest, [[3, 4], [5]])
    assert.deepEqual(await again.getConsumers(), [{ name: 'projection', member: 0, size: 1, position: 5, lag: 0 }])
    // Back to the start: the consumer reads everything again.
    await again.resetConsumer('projection', 0)
    const replayed = []
    for await (const rows of again.consume('projection', { follow: false })) replayed.push(...rows.map((row) => row.id))
    assert.deepEqual(replayed, [1, 2, 3, 4, 5])
  })

  pgTest('one reader per consumer: a second is refused with ERR_CONSUMER_BUSY while the first reads, and so is resetConsumer', async () => {
    const q = await open()
    await q.store({ cmd: 'n' })
    const reading = q.consume('solo', { follow: true })
    const step = await reading.next()
    assert.equal(step.value.length, 1)
    const second = q.consume('solo', { follow: false })
    await assert.rejects(second.next(), { code: 'ERR_CONSUMER_BUSY' })
    await assert.rejects(q.resetConsumer('solo', 0), { code: 'ERR_CONSUMER_BUSY' })
    await reading.return()
    // Released: now both succeed.
    await q.resetConsumer('solo', 0)
    const third = q.consume('solo', { follow: false })
    assert.deepEqual((await third.next()).value.map((row) => row.id), [1])
    await third.return()
    await assert.rejects(q.consume('', {}).next(), { code: 'ERR_INVALID_ARG' })
    await assert.rejects(q.consume('x', { group: { member: 3, size: 3 } }).next(), { code: 'ERR_INVALID_OPTION' })
  })

  pgTest('a group of three: each member sees its partition exactly once, each correlation id whole and in id order', async () => {
    const schema = freshSchema('read')
    const q = await open({ schema })
    const events = Array.from({ length: 60 }, (_, i) => ({ cmd: 'n', correlationId: `k${i % 10}`, data: { i } }))
    await q.storeBulk(events.slice(0, 30))
    for (const event of events.slice(30)) await q.store(event)
    // Each member in a queue (a connection pool) of its own, reading at the same time.
    const members = await Promise.all([0, 1, 2].map(async (member) => {
      const queue = member === 0 ? q : await open({ schema })
      const rows = []
      for await (const batch of await queue.consume('group', { batchSize: 7, follow: false, group: { member, size: 3 } })) rows.push(...batch)
      return rows
    }))
    const all = members.flat().map((row) => row.id).sort((a, b) => a - b)
    assert.deepEqual(all, Array.from({ length: 60 }, (_, i) => i + 1), 'every event exactly once')
    const owner = new Map()
    for (const [member, rows] of members.entries()) {
      assert.ok(rows.length > 0, `member ${member} has a share`)
      const ids = rows.map((row) => row.id)
      assert.deepEqual(ids, [...ids].sort((a, b) => a - b), `member ${member} reads in id order`)
      for (const row of rows) {
        assert.equal(owner.get(row.correlation_id) ?? member, member, `${row.correlation_id} is one member's`)
        owner.set(row.correlation_id, member)
      }
    }
    const positions = (await q.getConsumers()).map(({ member, size, lag }) => [member, size, lag])
    assert.deepEqual(positions, [[0, 3, 0], [1, 3, 0], [2, 3, 0]])
    assert.equal(await q.getStreamVersion('k3'), 6)
    assert.equal(await q.getStreamVersion('nobody'), 0)
  })
})
