'use strict'
// openQueue({ url }) when the server goes away (issue 15, ASYNC.md): "a connection that drops
// is replaced, and the calls that were on it reject with ERR_CONNECTION; nothing acknowledged
// is lost". The server is restarted (pg_ctl restart, fast and immediate) while producers
// write, and a server of the test's own is stopped under calls that wait on it. Every wait is
// on a condition (counts of settled calls, locks the server reports), never on a sleep.
const assert = require('node:assert/strict')
const { describe, after } = require('./helpers')
const { pgUrl, pgTest, freshSchema, restartPg } = require('./pg-server')
const { pgClient } = require('./backends')
const postgres = require('../scripts/postgres')
const { openQueue } = require('..')

/** Producers writing at once: enough that some calls are in flight when the server goes. */
const PRODUCERS = 4
/** Writes that must resolve before the restart, and after it. */
const SETTLED_BEFORE = 20
const RESOLVED_AFTER = 20

/** Asserts that `promise` rejects with an Error with `code`, and returns the error. */
async function rejectsCode(promise, code) {
  let caught
  await promise.then(() => assert.fail(`expected ${code}, the Promise resolved`), (err) => { caught = err })
  assert.equal(caught.code, code, caught.message)
  return caught
}

/**
 * Writes of `PRODUCERS` producers, each awaiting its call before the next, until `stop()`:
 * store, or storeBulk of two events, each event tagged with its call, then a getLastRow().
 * `resolved` gets `{ tag, ids }`, `rejected` `{ tag, size, error }`, `reads` `{ row }` or
 * `{ error }`; `until(condition)` resolves once `condition()` holds, looked at after every
 * settled call.
 */
function producers(queue) {
  const resolved = []
  const rejected = []
  const reads = []
  const waiting = new Set()
  let stopped = false
  const settled = () => {
    for (const waiter of waiting) {
      if (waiter.condition()) {
        waiting.delete(waiter)
        waiter.resolve()
      }
    }
  }
  async function produce(producer) {
    for (let call = 0; !stopped; call++) {
      const tag = `${producer}:${call}`
      const size = call % 3 === 2 ? 2 : 1
      try {
        const events = Array.from({ length: size }, (_, at) => ({ cmd: 'produced', data: { tag, at } }))
        const ids = size === 1 ? [(await queue.store(events[0])).id] : (await queue.storeBulk(events)).map((r) => r.row.id)
        resolved.push({ tag, ids })
      } catch (error) {
        rejected.push({ tag, size, error })
      }
      // A read of the newest event on a connection of the pool (not the writer's): the row,
      // or ERR_CONNECTION.
      try {
        reads.push({ row: await queue.getLastRow() })
      } catch (error) {
        reads.push({ error })
      }
      settled()
    }
  }
  const running = Promise.all(Array.from({ length: PRODUCERS }, (_, producer) => produce(producer)))
  return {
    resolved,
    rejected,
    reads,
    until: (condition) => new Promise((resolve) => {
      if (condition()) return resolve()
      waiting.add({ condition, resolve })
    }),
    stop() {
      stopped = true
      return running
    },
  }
}

/** The events of a schema's table, `{ id, tag, at }`, in id order. */
async function storedEvents(schema) {
  const client = await pgClient()
  try {
    const { rows } = await client.query(`SELECT id, data FROM "${schema}".queue ORDER BY id`)
    return rows.map((row) => ({ id: Number(row.id), ...JSON.parse(row.data) }))
  } finally {
    await client.end()
  }
}

describe('openQueue on PostgreSQL when the server goes away', () => {
  for (const mode of ['fast', 'immediate']) {
    pgTest(`a restart (${mode}) while producers write: every resolved write is stored once, every other one rejected with ERR_CONNECTION or absent, and the queue stores again`, async () => {
      const schema = freshSchema('restart')
      const queue = await openQueue({ url: pgUrl().url, schema, poolSize: 3 })
      after(() => queue.close())
      const writes = producers(queue)
      await writes.until(() => writes.resolved.length >= SETTLED_BEFORE)
      await restartPg({ mode })
      // What settles from here on was issued once the server accepted connections again
      // (or was on a connection of the old server, which the pool replaces).
      const [resolvedBefore, rejectedBefore] = [writes.resolved.length, writes.rejected.length]
      const resolvedAfter = () => writes.resolved.length - resolvedBefore
      const rejectedAfter = () => writes.rejected.length - rejectedBefore
      // Each producer can meet a dead connection at most once per pooled connection: far
      // fewer rejections than this mean the pool replaced them; more, that it does not.
      await writes.until(() => resolvedAfter() >= RESOLVED_AFTER || rejectedAfter() > 100)
      await writes.stop()
      assert.ok(resolvedAfter() >= RESOLVED_AFTER, `the queue stores again after the restart: ${resolvedAfter()} resolved, ${rejectedAfter()} rejected since, the last with ${writes.rejected.at(-1)?.error.message}`)

      const rows = await storedEvents(schema)
      assert.deepEqual(rows.map((r) => r.id), [...new Set(rows.map((r) => r.id))], 'no id twice')
      const byTag = new Map()
      for (const row of rows) byTag.set(row.tag, [...(byTag.get(row.tag) ?? []), row])
      for (const { tag, ids } of writes.resolved) {
        assert.deepEqual(byTag.get(tag)?.map((r) => r.id), ids, `the resolved write ${tag} is stored once, under the ids it resolved with`)
      }
      for (const { tag, size, error } of writes.rejected) {
        const stored = byTag.get(tag) ?? []
        if (stored.length > 0) {
          // A commit whose answer was lost with the connection: stored, and said so by no one.
          assert.equal(error.code, 'ERR_CONNECTION', `${tag} rejected with ${error.code} (${error.message}) and is stored`)
          assert.equal(stored.length, size, `${tag} is whole`)
        } else {
          assert.equal(error.code, 'ERR_CONNECTION', `${tag} rejected: ${error.message}`)
        }
      }
      for (const { row, error } of writes.reads) {
        if (error) assert.equal(error.code, 'ERR_CONNECTION', `a read rejected: ${error.message}`)
        else if (row !== null) assert.ok(byTag.get(row.data.tag)?.some((r) => r.id === row.id), `the row read, ${row.id}, is stored`)
      }
      const written = new Set([...writes.resolved, ...writes.rejected].map((call) => call.tag))
      for (const tag of byTag.keys()) assert.ok(written.has(tag), `${tag} is stored, and no call wrote it`)
      assert.equal((await queue.store({ cmd: 'last' })).id, rows.at(-1).id + 1, 'the ids go on')
    })
  }

  pgTest('a server stopped under waiting calls: they and every later call reject with ERR_CONNECTION, and close() resolves', async () => {
    // A server of this test's own, since it is stopped for good.
    const own = postgres.start({ durable: false })
    after(() => own.stop())
    const schema = freshSchema('stopped')
    const queue = await openQueue({ url: own.url, schema, poolSize: 4 })
    await queue.store({ cmd: 'first' })
    const { Client } = require('pg')
    const locker = new Client({ connectionString: own.url })
    const watcher = new Client({ connectionString: own.url })
    await Promise.all([locker.connect(), watcher.connect()])
    // Reads and writes of the queue's table wait for this lock.
    locker.on('error', () => {})
    watcher.on('error', () => {})
    await locker.query(`BEGIN; LOCK TABLE "${schema}".queue IN ACCESS EXCLUSIVE MODE`)
    const pending = [queue.store({ cmd: 'waits' }), queue.storeBulk([{ cmd: 'waits' }, { cmd: 'too' }]), queue.retrieveByID(1), queue.getLastRow()]
    const outcomes = Promise.allSettled(pending)
    // The write (one group) and the two reads wait on the server.
    for (;;) {
      const { rows: [{ waiting }] } = await watcher.query("SELECT count(*)::int AS waiting FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()")
      if (waiting >= 3) break
      await new Promise((resolve) => setImmediate(resolve))
    }
    // Stopped with the lock still held, as a crash: every session ends at once and the lock is
    // never released, so the calls are still waiting when their sessions end. (A fast stop ends
    // the sessions one by one: the locker's could end first and let a waiting call through.)
    own.stop({ mode: 'immediate' })
    await Promise.allSettled([locker.end(), watcher.end()])
    for (const outcome of await outcomes) {
      assert.equal(outcome.status, 'rejected', 'nothing could be done')
      assert.equal(outcome.reason.code, 'ERR_CONNECTION', outcome.reason.message)
    }
    await rejectsCode(queue.store({ cmd: 'after' }), 'ERR_CONNECTION')
    await rejectsCode(queue.storeBulk([{ cmd: 'after' }]), 'ERR_CONNECTION')
    await rejectsCode(queue.retrieveByID(1), 'ERR_CONNECTION')
    await rejectsCode(queue.getTransaction('c'), 'ERR_CONNECTION')
    await rejectsCode(queue.getMetrics(), 'ERR_CONNECTION')
    await queue.close()
    await rejectsCode(queue.store({ cmd: 'closed' }), 'ERR_QUEUE_CLOSED')
  })
})
