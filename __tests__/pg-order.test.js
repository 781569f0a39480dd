'use strict'
// Three writer processes on one PostgreSQL log while this process reads it (issue 15): "the
// PostgreSQL suite adds three writer processes and a consumer group of three, which must see
// every event exactly once, in order per correlation id". The ids form one order that a reader
// going by position sees whole: every event once, none skipped, whichever process wrote it and
// however the writers' transactions interleave. No waiting on time: readers stop on what they
// have seen.
const assert = require('node:assert/strict')
const path = require('node:path')
const { describe, after, startAcking, assertAcknowledged } = require('./helpers')
const { pgUrl, pgTest, freshSchema } = require('./pg-server')
const { openQueue } = require('..')

const WRITER = path.join(__dirname, 'fixtures', 'pg-append-loop.js')
/** Writes per producer of each writer process (fixtures/pg-append-loop.js has four producers). */
const OPERATIONS = 30
const MEMBERS = 3

/** Three writer processes on `schema`, each open and waiting for `go()`. */
async function startWriters(schema) {
  const writers = ['a', 'b', 'c'].map((name, i) => {
    const writer = startAcking(WRITER, [pgUrl().url, schema, name, String(OPERATIONS), String(i + 1)], { stdin: 'pipe' })
    return { ...writer, ready: writer.line('ready'), go: () => writer.child.stdin.end('go\n') }
  })
  await Promise.all(writers.map((w) => w.ready))
  return writers
}

/** Waits for the writers to end, each successfully; everything they acknowledged. */
async function acknowledged(writers) {
  for (const { code, stderr } of await Promise.all(writers.map((w) => w.exited))) assert.equal(code, 0, `a writer failed: ${stderr}`)
  return writers.flatMap((w) => w.acks)
}

/** The events the writers stored, as assertAcknowledged reads them: `{ id, writer, batch, size, at }`. */
const written = (rows) => rows.map((row) => ({ id: row.id, ...row.data }))

const consecutive = (count) => Array.from({ length: count }, (_, k) => k + 1)

/**
 * Runs `read()`, a reader that goes on while the writers run, and resolves with the error that
 * ended it, or its own result: nothing rejects unhandled meanwhile.
 */
const failure = (read) => read().catch((err) => err)

async function open(schema) {
  const q = await openQueue({ url: pgUrl().url, schema })
  after(() => q.close())
  return q
}

describe('three writer processes on one PostgreSQL log', () => {
  pgTest('a follower reading by position sees every event once, in id order, none skipped', async () => {
    const schema = freshSchema('order')
    const q = await open(schema)
    const writers = await startWriters(schema)
    const seen = []
    // Following from before the first write; it stops at the event this process stores once
    // the writers are done, the last of the log.
    const reading = failure(async () => {
      for await (const batch of q.streamEvents({ follow: true, batchSize: 50 })) {
        seen.push(...batch)
        if (batch.at(-1).cmd === 'end') return null
      }
      return new Error('the stream ended before the last event')
    })
    for (const w of writers) w.go()
    const acks = await acknowledged(writers)
    const end = await q.store({ cmd: 'end' })
    const failed = await reading
    if (failed) throw failed
    assert.deepEqual(seen.map((r) => r.id), consecutive(end.id), 'every id once, in order, none skipped')
    const batches = assertAcknowledged(written(seen.slice(0, -1)), acks)
    assert.equal(batches.size, acks.length, 'every acknowledged call once, nothing else')
    assert.equal(end.id, acks.reduce((sum, ack) => sum + ack.size, 0) + 1)
  })

  pgTest(`a consumer group of ${MEMBERS} sees every event exactly once, in order per correlation id`, async () => {
    const schema = freshSchema('group')
    const q = await open(schema)
    const writers = await startWriters(schema)
    const seen = Array.from({ length: MEMBERS }, () => [])
    let total = null
    const stops = Array.from({ length: MEMBERS }, () => new AbortController())
    // Once the writers are done and the members have seen as many events as were stored.
    const stopIfAllSeen = () => {
      if (total !== null && seen.flat().length >= total) for (const stop of stops) stop.abort()
    }
    const members = failure(async () => {
      await Promise.all(seen.map(async (own, member) => {
        const consumer = q.consume('projection', { group: { member, size: MEMBERS }, batchSize: 25, signal: stops[member].signal })
        try {
          for await (const batch of consumer) {
            own.push(...batch)
            stopIfAllSeen()
          }
        } catch (err) {
          if (err.name !== 'AbortError') throw err
        }
      }))
      return null
    })
    for (const w of writers) w.go()
    const acks = await acknowledged(writers)
    total = acks.reduce((sum, ack) => sum + ack.size, 0)
    stopIfAllSeen()
    const failed = await members
    if (failed) throw failed

    const ids = seen.flat().map((r) => r.id).sort((a, b) => a - b)
    assert.deepEqual(ids, consecutive(total), 'every event exactly once')
    assertAcknowledged(written(seen.flat().sort((a, b) => a.id - b.id)), acks)
    const memberOf = new Map()
    seen.forEach((own, member) => {
      const last = new Map()
      for (const row of own) {
        const correlation = row.correlation_id
        assert.ok((last.get(correlation) ?? 0) < row.id, `member ${member} sees ${correlation} in id order`)
        last.set(correlation, row.id)
        assert.equal(memberOf.get(correlation) ?? member, member, `${correlation} belongs to one member`)
        memberOf.set(correlation, member)
      }
    })
  })
})
