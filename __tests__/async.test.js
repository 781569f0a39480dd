'use strict'
// openQueue: the async queue, its group commit, its ordering, and its durability. The tests of the
// queue's behaviour run on every backend (__tests__/backends.js); those about SQLite files (options,
// :memory:, sharing a file with initQueue, SIGKILL of a writer, dropped queues) on SQLite only.
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { spawn } = require('node:child_process')
const {
  describe, test, after, tempDb, tempDir, recordingModel, recordingCallbacks, startAcking, storedEvents, assertAcknowledged,
  rejectsCode,
} = require('./helpers')
const { BACKENDS } = require('./backends')
const { openQueue, initQueue, eventCallbacks } = require('..')

const PACKAGE = path.join(__dirname, '..')
/** Writer processes that acknowledge what they stored (see `startAcking`), through initQueue or openQueue. */
const WRITERS = {
  sync: path.join(__dirname, 'fixtures', 'append-loop.js'),
  async: path.join(__dirname, 'fixtures', 'async-append-loop.js'),
}

/** A queue on a new SQLite file, for the tests about SQLite files. */
async function open(options = {}) {
  const q = await openQueue({ dbName: tempDb(), ...options })
  after(() => q.close())
  return q
}

/** Resolves after the event loop has turned once (past its I/O and check phases). */
const turn = () => new Promise((resolve) => setImmediate(resolve))

/** The first step of an async iterable, as a Promise. */
const firstStep = (iterable) => iterable[Symbol.asyncIterator]().next()

/** Runs `source` in a child process of this runtime, with openQueue in scope; resolves with its exit code. */
function runChild(source) {
  const script = path.join(tempDir(), 'child.js')
  fs.writeFileSync(script, `const { openQueue } = require(${JSON.stringify(PACKAGE)})\n${source}`)
  const child = spawn(process.execPath, [script], { stdio: ['ignore', 'ignore', 'inherit'] })
  return new Promise((resolve, reject) => {
    child.on('error', reject)
    child.on('exit', (code) => resolve(code))
  })
}

/**
 * Starts a writer process of `kind` (sync or async). With `barrier`, it opens its queue, then
 * `ready` settles, and it writes once `go()` is called.
 */
function startWriter(kind, file, journal, name, operations, seed, barrier = false) {
  const args = [file, journal, name, String(operations), String(seed), ...(barrier ? ['barrier'] : [])]
  const writer = startAcking(WRITERS[kind], args, { stdin: barrier ? 'pipe' : 'ignore' })
  return { ...writer, ready: barrier && writer.line('ready'), go: () => writer.child.stdin.end('go\n') }
}

/** Resolves once `condition()` holds, looking again every few milliseconds. */
const until = async (condition) => {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5))
}

/** A deterministic generator of numbers in [0, 1). */
function seeded(seed) {
  let state = seed >>> 0
  return () => ((state = (state * 1664525 + 1013904223) >>> 0) / 2 ** 32)
}

for (const backend of BACKENDS) {
  /** A new queue on a log of its own of this backend; `place` to share one. */
  async function open(options = {}, place = backend.place()) {
    const q = await openQueue({ ...place, ...options })
    after(() => q.close())
    return q
  }

  backend.describe(`openQueue on ${backend.name}`, () => {
    describe('opening', () => {
      test('resolves to a queue whose methods return Promises', async () => {
        const q = await open()
        const stored = q.store({ cmd: 'go', data: { a: 1 } })
        assert.ok(stored instanceof Promise)
        const row = await stored
        assert.deepEqual({ ...row, datetime: 0, correlation_id: '' }, {
          id: 1, version: 1, datetime: 0, user: '', ip: '', cmd: 'go', data: { a: 1 }, correlation_id: '', causation_id: null, metadata: {},
        })
        assert.match(row.correlation_id, /^[0-9a-f-]{36}$/)
        assert.deepEqual(await q.retrieveByID(1), row)
      })
    })

    describe('writes', () => {
      test('store runs the model after the commit and resolves with its result; storeBulk gives consecutive ids', async () => {
        const place = backend.place()
        const q = await open({}, place)
        const other = await backend.other(place)
        // What another connection read when each model ran: committed by then.
        const seenByAnotherConnection = []
        const model = {
          add(data, meta) {
            seenByAnotherConnection.push(other.retrieveByID(meta.id))
            return data.a + data.b
          },
        }
        assert.equal(await q.store({ cmd: 'add', data: { a: 2, b: 3 } }, model), 5)
        const results = await q.storeBulk([{ cmd: 'add', data: { a: 1, b: 1 } }, { cmd: 'add', data: { a: 4, b: 4 } }], model)
        assert.deepEqual(results.map((r) => [r.row.id, r.result]), [[2, 2], [3, 8]])
        const seen = (await Promise.all(seenByAnotherConnection)).map((row) => row?.cmd)
        assert.deepEqual(seen, ['add', 'add', 'add'], 'each event was committed before its model ran')
        assert.deepEqual((await q.storeBulk([{ cmd: 'x' }])).map((r) => r.result), [null], 'no model: null results')
      })

      test('each event keeps the datetime its clock gave, repeated or not, in groups too', async () => {
        const times = [5, 5, 5, 7, 7, 5, -1, -1, 0, 9]
        const clock = times.values()
        const q = await open({ datetime: () => clock.next().value })
        // Written at once, so that the calls share one commit where the backend groups them.
        const [single, bulk, tail] = await Promise.all([
          q.store({ cmd: 'a' }),
          q.storeBulk(times.slice(1, 8).map((_, i) => ({ cmd: `b${i}` }))),
          q.storeBulk([{ cmd: 'c', correlationId: 's', expectedVersion: 0 }, { cmd: 'd' }]),
        ])
        const returned = [single, ...bulk.map((r) => r.row), ...tail.map((r) => r.row)]
        assert.deepEqual(returned.map((row) => row.datetime), times)
        const stored = await Promise.all(returned.map((row) => q.retrieveByID(row.id)))
        assert.deepEqual(stored.map((row) => row.datetime), times)
      })

      test('invalid input rejects, never throws, and stores nothing; errorsTotal counts it', async () => {
        const q = await open()
        const cycle = {}
        cycle.self = cycle
        const bad = [{ cmd: 42 }, { cmd: 'x', version: 0 }, { cmd: 'x', data: cycle }, { cmd: 'x', data: { n: 1n } }, { cmd: 'x', causationId: 'a' }, null, 'cmd']
        for (const event of bad) await rejectsCode(q.store(event), TypeError, 'ERR_INVALID_EVENT')
        const atTwo = await rejectsCode(q.storeBulk([{ cmd: 'a' }, { cmd: 'b' }, { cmd: 'c', user: 5 }]), TypeError, 'ERR_INVALID_EVENT')
        assert.equal(atTwo.index, 2)
        assert.equal((await rejectsCode(q.storeBulk([{ cmd: 'a' }, {}]), Error, 'ERR_INVALID_EVENT')).index, 1)
        await rejectsCode(q.storeBulk('nope'), TypeError, 'ERR_INVALID_EVENT')
        await rejectsCode(q.storeBulk([]), TypeError, 'ERR_INVALID_EVENT')
        const throwing = { get correlationId() { throw new Error('getter') } }
        await rejectsCode(q.storeWithContext({ cmd: 'x' }, throwing), TypeError, 'ERR_INVALID_EVENT')
        assert.equal(await q.getLastRow(), null)
        assert.equal((await q.getMetrics()).errorsTotal, bad.length + 5)
        assert.equal((await q.store({ cmd: 'fine' })).id, 1, 'the queue still works')
      })

      test('a missing cmd is reported to callbacks._error and resolves undefined; with nobody to tell, it rejects', async () => {
        const q = await open()
        const { callbacks, calls } = recordingCallbacks()
        assert.equal(await q.store({ data: { x: 1 }, user: 'bob' }, undefined, callbacks), undefined)
        assert.equal(calls.length, 1)
        assert.deepEqual([calls[0][1].msg, calls[0][1].priority, calls[0][1].user], ['No command given; aborting', 2, 'bob'])
        await rejectsCode(q.store({ data: { x: 1 } }), TypeError, 'ERR_INVALID_EVENT')
        assert.equal(await q.getLastRow(), null)
        assert.equal((await q.getMetrics()).errorsTotal, 2)
      })

      test('the queue\'s _model and _cb stand in for a model and callbacks not given', async () => {
        const q = await open()
        const { callbacks, calls } = recordingCallbacks()
        q._model = { double: (data) => data.n * 2 }
        q._cb = callbacks
        assert.equal(await q.store({ cmd: 'double', data: { n: 4 } }), 8)
        assert.deepEqual((await q.storeBulk([{ cmd: 'double', data: { n: 1 } }])).map((r) => r.result), [2])
        assert.deepEqual(calls.map(([kind, result]) => [kind, result]), [['_default', 8], ['_default', 2]])
        assert.equal(await q.store({}), undefined, 'a missing cmd goes to _cb._error')
        assert.equal(calls.at(-1)[0], '_error')
      })

      test('storeWithContext: the context wins, parentEventId is causationId, metadata merges; children inherit', async () => {
        const q = await open()
        const parent = await q.store({ cmd: 'parent', correlationId: 'flow' })
        const child = await q.storeWithContext({ cmd: 'child', metadata: { a: 1 }, correlationId: 'lost' }, { correlationId: 'ctx', parentEventId: parent.id, metadata: { b: 2 } })
        assert.deepEqual([child.correlation_id, child.causation_id, child.metadata], ['ctx', parent.id, { a: 1, b: 2 }])
        const [inherited] = await q.storeBulk([{ cmd: 'grandchild', causationId: parent.id }])
        assert.equal(inherited.row.correlation_id, 'flow', 'the correlation id of the parent, read after the commit')
        assert.equal((await q.store({ cmd: 'orphan', causationId: 404 })).correlation_id, null)
      })

      test('execute is synchronous, as it runs user code only', async () => {
        const q = await open()
        const row = await q.store({ cmd: 'go', data: { n: 2 } })
        assert.equal(q.execute(row, { go: (data) => data.n * 10 }), 20)
      })
    })

    describe('group commit', () => {
      test('writes issued before awaiting share one commit', async () => {
        const q = await open()
        const calls = Array.from({ length: 256 }, (_, i) => (i % 4 === 3 ? q.storeBulk([{ cmd: 'b', data: { i } }, { cmd: 'b', data: { i } }]) : q.store({ cmd: 's', data: { i } })))
        const results = await Promise.all(calls)
        const firstIds = results.map((r) => (Array.isArray(r) ? r[0].row.id : r.id))
        assert.ok(firstIds.every((id, i) => i === 0 || id > firstIds[i - 1]), 'ids follow the order of the calls')
        const metrics = await q.getMetrics()
        assert.equal(metrics.writesTotal, 256 + 64)
        // The 256 calls reach the writer in one piece (one turn of the event loop), so one group.
        assert.ok(metrics.commitsTotal <= 2, `${metrics.commitsTotal} commits for 256 writes`)
        assert.equal(metrics.eventCount, 320)
      })

      test('a call that fails in the middle of a group fails alone, and leaves no gap in the ids', async () => {
        const place = backend.place()
        const q = await open({}, place)
        await backend.refuse(place, 'boom')
        const calls = Array.from({ length: 200 }, (_, i) => {
          if (i === 100) return q.storeBulk([{ cmd: 'fine', data: { i } }, { cmd: 'boom' }, { cmd: 'fine', data: { i } }])
          if (i === 150) return q.store({ cmd: 'boom' })
          return q.store({ cmd: 'fine', data: { i } })
        })
        const settled = await Promise.allSettled(calls)
        const failed = settled.flatMap((s, i) => (s.status === 'rejected' ? [[i, s.reason.code]] : []))
        assert.deepEqual(failed, [[100, backend.refusedCode], [150, backend.refusedCode]])
        for (const [i] of failed) assert.match(settled[i].reason.message, /boom refused/)
        const ids = settled.filter((s) => s.status === 'fulfilled').map((s) => s.value.id)
        assert.deepEqual(ids, Array.from({ length: 198 }, (_, k) => k + 1), 'the others stored, ids in call order without a gap')
        const rows = []
        for await (const batch of q.streamEvents()) rows.push(...batch)
        assert.deepEqual(rows.map((r) => r.data.i), Array.from({ length: 200 }, (_, i) => i).filter((i) => i !== 100 && i !== 150))
        const metrics = await q.getMetrics()
        assert.equal(metrics.errorsTotal, 2)
        assert.ok(metrics.commitsTotal <= 2, `${metrics.commitsTotal} commits`)
      })

      test('a commit that fails rejects every call of its group and stores none of them', async () => {
        const place = backend.place()
        const { options, code } = backend.commitFailure
        const q = await open(options, place)
        await q.store({ cmd: 'before' })
        const release = await backend.failCommits(place)
        let settled
        try {
          const calls = [q.store({ cmd: 'a' }), q.storeBulk([{ cmd: 'b' }, { cmd: 'c' }]), q.store({ cmd: 'd' })]
          settled = await Promise.allSettled(calls)
        } finally {
          await release()
        }
        assert.deepEqual(settled.map((s) => [s.status, s.reason && s.reason.code]), Array(3).fill(['rejected', code]))
        assert.deepEqual((await q.store({ cmd: 'after' })).id, 2, 'nothing of the group was stored')
        assert.deepEqual((await q.getTransaction((await q.retrieveByID(2)).correlation_id)).map((r) => r.cmd), ['after'])
        assert.equal((await q.getMetrics()).errorsTotal, 3)
      })

      test('the event loop turns and reads answer while a commit waits for a lock', async () => {
        const place = backend.place()
        const q = await open(backend.lockWaitOptions, place)
        await q.store({ cmd: 'first' })
        const release = await backend.holdWriteLock(place)
        let written = false
        const write = q.store({ cmd: 'second' }).then((row) => { written = true; return row })
        try {
          await turn()
          assert.equal((await q.getLastRow()).cmd, 'first', 'the read did not wait for the write')
          assert.equal((await q.retrieveByID(1)).cmd, 'first')
          assert.equal(written, false, 'the write is still waiting for the lock')
        } finally {
          await release()
        }
        assert.equal((await write).id, 2)
      })
    })

    describe('ordering', () => {
      test('Promises resolve in call order, ids follow it, and models run in id order, across groups', async () => {
        const q = await open()
        const executed = []
        const model = { _default: (data, meta) => { executed.push(meta.id); return meta.id } }
        const resolved = []
        const calls = []
        for (let round = 0; round < 4; round++) {
          for (let i = 0; i < 25; i++) {
            const call = calls.length
            const pending = call % 3 === 0
              ? q.storeBulk(Array.from({ length: 1 + (call % 5) }, () => ({ cmd: 'bulk' })), model).then((results) => results.map((r) => r.result))
              : q.store({ cmd: 'one' }, model).then((id) => [id])
            calls.push(pending.then((ids) => { resolved.push(call); return ids }))
          }
          await turn()
        }
        const ids = (await Promise.all(calls)).flat()
        assert.deepEqual(resolved, calls.map((_, i) => i), 'resolved in call order')
        assert.deepEqual(ids, Array.from({ length: ids.length }, (_, k) => k + 1), 'ids in call order')
        assert.deepEqual(executed, ids, 'every event ran through the model once, in id order')
      })
    })

    describe('reads', () => {
      test('the plain reads answer as another program reading the same log does', async () => {
        const place = backend.place()
        const q = await open({}, place)
        const other = await backend.other(place)
        const root = await q.store({ cmd: 'root', correlationId: 'c' })
        const kids = await q.storeBulk([{ cmd: 'kid', causationId: root.id }, { cmd: 'kid', causationId: root.id }])
        assert.deepEqual(await q.retrieveByID(2), kids[0].row)
        assert.deepEqual(await q.retrieveByID(2), await other.retrieveByID(2))
        assert.equal(await q.retrieveByID('nope'), null)
        assert.deepEqual(await q.getLastRow(), kids[1].row)
        assert.deepEqual(await q.getLastRow(), await other.getLastRow())
        assert.deepEqual(await q.getTransaction('c'), [root, ...kids.map((k) => k.row)])
        assert.deepEqual(await q.getTransaction('c'), await other.getTransaction('c'))
        assert.deepEqual(await q.getChildEvents(1), await other.getChildEvents(1))
        assert.deepEqual(await q.getEventLineage(2), { event: kids[0].row, parent: root, children: [] })
        assert.deepEqual(await q.getEventLineage(2), await other.getEventLineage(2))
        assert.equal(await q.getEventLineage(99), null)
        assert.deepEqual(await q.getIndexes(), ['idx_causation_id', 'idx_correlation_id'])
      })

      test('the five paginated reads, with cursors; bad arguments reject', async () => {
        const q = await open({ datetime: (() => { let t = 0; return () => ++t })() })
        await q.storeBulk(Array.from({ length: 25 }, (_, i) => ({ cmd: i % 2 ? 'odd' : 'even', user: 'u', correlationId: 'c', causationId: i ? 1 : null })))
        const walk = async (read) => {
          const ids = []
          let page = await read({ limit: 10 })
          ids.push(...page.events.map((r) => r.id))
          while (page.nextCursor) {
            page = await read({ limit: 10, cursor: page.nextCursor })
            ids.push(...page.events.map((r) => r.id))
          }
          return ids
        }
        const up = (from, to) => Array.from({ length: to - from + 1 }, (_, k) => from + k)
        assert.deepEqual(await walk((o) => q.getByCorrelationIdPaginated('c', o)), up(1, 25))
        assert.deepEqual(await walk((o) => q.getChildEventsPaginated(1, o)), up(2, 25))
        assert.deepEqual(await walk((o) => q.getEventsByUserPaginated('u', o)), up(1, 25).reverse())
        assert.deepEqual(await walk((o) => q.getEventsByCmdPaginated('odd', o)), up(1, 25).filter((id) => id % 2 === 0).reverse())
        assert.deepEqual(await walk((o) => q.getEventsInTimeRangePaginated(5, 7, o)), [7, 6, 5])
        const first = await q.getByCorrelationIdPaginated('c', { limit: 10 })
        assert.deepEqual([first.totalCount, first.hasMore, first.nextOffset], [25, true, 10])
        await rejectsCode(q.getByCorrelationIdPaginated('c', { limit: 0 }), RangeError, 'ERR_INVALID_OPTION')
        await rejectsCode(q.getEventsByUserPaginated('u', { cursor: 'garbage' }), RangeError, 'ERR_INVALID_OPTION')
        await rejectsCode(q.getChildEventsPaginated('x'), TypeError, 'ERR_INVALID_ARG')
      })

      test('cached reads return what the uncached ones do, refreshed by writes of this queue and of another', async () => {
        const place = backend.place()
        const q = await open({}, place)
        const other = await backend.other(place)
        await q.store({ cmd: 'a', correlationId: 't' })
        assert.deepEqual((await q.getTransactionCached('t')).map((r) => r.cmd), ['a'])
        await q.store({ cmd: 'b', correlationId: 't' })
        assert.deepEqual((await q.getTransactionCached('t')).map((r) => r.cmd), ['a', 'b'])
        await other.store({ cmd: 'c', correlationId: 't' })
        assert.deepEqual((await q.getTransactionCached('t')).map((r) => r.cmd), ['a', 'b', 'c'])
        assert.deepEqual(await q.retrieveByIDCached(1), await q.retrieveByID(1))
        const mutated = await q.retrieveByIDCached(1)
        mutated.data.changed = true
        assert.deepEqual((await q.retrieveByIDCached(1)).data, {})
        const stats = await q.getCacheStats()
        assert.ok(stats.hits >= 2 && stats.enabled, JSON.stringify(stats))
        assert.equal(await q.clearCache(), undefined)
        assert.equal((await q.getCacheStats()).size, 0)
      })

      test('getMetrics counts the writes, the refused ones and the commits', async () => {
        const q = await open()
        await q.store({ cmd: 'a' })
        await q.storeBulk([{ cmd: 'b' }, { cmd: 'c' }])
        await q.store({ cmd: 5 }).catch(() => {})
        const m = await q.getMetrics()
        assert.deepEqual([m.writesTotal, m.batchWritesTotal, m.batchEventsTotal, m.errorsTotal, m.commitsTotal], [3, 1, 2, 1, 2])
        assert.deepEqual([m.journalMode, m.synchronous, m.eventCount], ['WAL', backend.synchronous, 3])
      })
    })

    describe('streams and replay', () => {
      test('streamEvents yields batches; a bad option rejects its first step', async () => {
        const q = await open()
        await q.storeBulk(Array.from({ length: 7 }, (_, i) => ({ cmd: 'e', data: { i } })))
        const batches = []
        for await (const batch of q.streamEvents({ batchSize: 3, startId: 2 })) batches.push(batch.map((r) => r.id))
        assert.deepEqual(batches, [[2, 3, 4], [5, 6, 7]])
        await rejectsCode(firstStep(q.streamEvents({ batchSize: 0 })), RangeError, 'ERR_INVALID_OPTION')
        await rejectsCode(firstStep(q.streamEvents({ colour: 'red' })), TypeError, 'ERR_INVALID_OPTION')
      })

      test('a following stream sees this queue\'s writes and another queue\'s; close() ends it', async () => {
        const place = backend.place()
        const q = await openQueue(place)
        const other = await backend.other(place)
        const seen = []
        const following = (async () => {
          for await (const batch of q.streamEvents({ follow: true })) {
            seen.push(...batch.map((r) => r.cmd))
            if (seen.length === 1) await other.store({ cmd: 'from-other' })
            if (seen.length === 2) await q.close()
          }
        })()
        await q.store({ cmd: 'from-this' })
        await following
        assert.deepEqual(seen, ['from-this', 'from-other'])
      })

      test('cycleThrough replays a range in id order, resolves after doneCB, and lets the event loop turn between batches', async () => {
        const q = await open()
        await q.storeBulk(Array.from({ length: 5000 }, (_, i) => ({ cmd: 'e', data: { i } })))
        let turned = false
        setImmediate(() => { turned = true })
        const ids = []
        let turnedAt = null
        const { model } = recordingModel({ e: (data, meta) => { ids.push(meta.id); if (turned && turnedAt === null) turnedAt = meta.id } })
        let done = false
        await q.cycleThrough(model, () => { done = true }, eventCallbacks.void)
        assert.equal(done, true)
        assert.deepEqual(ids, Array.from({ length: 5000 }, (_, k) => k + 1))
        assert.ok(turnedAt !== null && turnedAt < 5000, `the event loop turned during the replay (first seen at id ${turnedAt})`)
        const ranged = []
        await q.cycleThrough({ e: (data, meta) => ranged.push(meta.id) }, undefined, undefined, { start: 4998, stop: 5000 })
        assert.deepEqual(ranged, [4998, 4999])
        const none = []
        await q.cycleThrough({ e: (data, meta) => none.push(meta.id) }, undefined, undefined, { start: 10, stop: 3 })
        assert.deepEqual(none, [])
        await rejectsCode(q.cycleThrough({}, undefined, undefined, { start: 1.5 }), TypeError, 'ERR_INVALID_ARG')
      })

      test('cycleThrough replays the events that existed when it started, even when the model stores one per event', async () => {
        const q = await open()
        await q.storeBulk(Array.from({ length: 2500 }, (_, i) => ({ cmd: 'e', data: { i } })))
        const handled = []
        const stored = []
        // Every event replayed, echoes included, stores another: only a replay bounded at its start ends.
        await q.cycleThrough({ _default: (data, meta) => { handled.push(meta.id); stored.push(q.store({ cmd: 'echo', data: { of: meta.id } })) } })
        await Promise.all(stored)
        assert.deepEqual(handled, Array.from({ length: 2500 }, (_, k) => k + 1))
        assert.equal((await q.getLastRow()).id, 5000)
      })
    })

    describe('close', () => {
      test('waits for the writes in flight; later calls reject with ERR_QUEUE_CLOSED; a SQLite file is released', async () => {
        const place = backend.place()
        const q = await openQueue(place)
        const settled = []
        const writes = Array.from({ length: 300 }, (_, i) => {
          const call = i % 10 === 0 ? q.storeBulk([{ cmd: 'b' }, { cmd: 'b' }]) : q.store({ cmd: 's' })
          return call.then(() => settled.push(i))
        })
        const closing = q.close()
        assert.equal(q.close(), closing, 'idempotent')
        await closing
        assert.equal(settled.length, 300, 'every write was settled before close() resolved')
        await Promise.all(writes)
        if (backend.sqlite) assert.equal(fs.existsSync(`${place.dbName}-wal`), false, 'no connection holds the file: the last one removed the WAL')
        await rejectsCode(q.store({ cmd: 'late' }), Error, 'ERR_QUEUE_CLOSED')
        await rejectsCode(q.storeBulk([{ cmd: 'late' }]), Error, 'ERR_QUEUE_CLOSED')
        await rejectsCode(q.retrieveByID(1), Error, 'ERR_QUEUE_CLOSED')
        await rejectsCode(q.getMetrics(), Error, 'ERR_QUEUE_CLOSED')
        await rejectsCode(firstStep(q.streamEvents()), Error, 'ERR_QUEUE_CLOSED')
        const other = await backend.other(place)
        assert.equal((await other.getMetrics()).eventCount, 330)
      })

      test('a program that never closes its queue exits by itself, and a write it did not await is stored', async () => {
        const place = backend.place()
        const code = await runChild(`
          openQueue(${JSON.stringify(place)}).then(async (q) => {
            await q.store({ cmd: 'awaited' })
            q.store({ cmd: 'not-awaited' })
          })
        `)
        assert.equal(code, 0)
        const other = await backend.other(place)
        assert.deepEqual([(await other.retrieveByID(1)).cmd, (await other.retrieveByID(2)).cmd], ['awaited', 'not-awaited'])
      })
    })
  })
}

describe('openQueue on SQLite files', () => {
  test('a bad option rejects, never throws; a file that is not SQLite rejects with SQLITE_NOTADB', async () => {
    await rejectsCode(openQueue({ dbName: tempDb(), colour: 'red' }), TypeError, 'ERR_INVALID_OPTION')
    await rejectsCode(openQueue({ dbName: tempDb(), busyTimeout: -1 }), RangeError, 'ERR_INVALID_OPTION')
    await rejectsCode(openQueue(42), TypeError, 'ERR_INVALID_OPTION')
    const file = tempDb()
    fs.writeFileSync(file, 'x'.repeat(4096))
    await rejectsCode(openQueue({ dbName: file }), Error, 'SQLITE_NOTADB')
  })

  test('an in-memory queue writes, reads, streams and replays', async () => {
    const q = await open({ dbName: ':memory:' })
    await Promise.all([q.store({ cmd: 'a' }), q.storeBulk([{ cmd: 'b' }, { cmd: 'c' }])])
    assert.deepEqual((await q.getTransaction((await q.getLastRow()).correlation_id)).map((r) => r.cmd), ['c'])
    const streamed = []
    for await (const batch of q.streamEvents({ batchSize: 2 })) streamed.push(...batch.map((r) => r.cmd))
    assert.deepEqual(streamed, ['a', 'b', 'c'])
    const replayed = []
    await q.cycleThrough({ _default: (data, meta) => replayed.push(meta.cmd) })
    assert.deepEqual(replayed, ['a', 'b', 'c'])
  })
})


describe('resources', () => {
  test('queues dropped without close() release their files and writer threads as the program runs on', async () => {
    const dbName = tempDb()
    const first = await openQueue({ dbName })
    await first.store({ cmd: 'x' })
    await first.close()
    const count = (folder) => fs.readdirSync(folder).length
    const filesBefore = count('/proc/self/fd')
    const threadsBefore = count('/proc/self/task')
    let mostFiles = 0
    let mostThreads = 0
    for (let i = 0; i < 1500; i++) {
      const q = await openQueue({ dbName })
      assert.equal((await q.retrieveByID(1)).cmd, 'x')
      if (i % 2) await q.store({ cmd: 'y' })
      // Dropped queues are collected when the engine collects, which the native memory they
      // report makes it do; their finalizers run as the event loop turns.
      if (i % 50 === 49) {
        await turn()
        mostFiles = Math.max(mostFiles, count('/proc/self/fd') - filesBefore)
        mostThreads = Math.max(mostThreads, count('/proc/self/task') - threadsBefore)
      }
    }
    // Each queue holds a writer thread and two connections (three descriptors or more) while
    // it lives: kept, 1,500 queues would hold 1,500 threads and 4,500 descriptors.
    assert.ok(mostFiles < 1000, `descriptors held at most ${mostFiles} above the start`)
    assert.ok(mostThreads < 300, `threads at most ${mostThreads} above the start`)
  })
})

describe('sharing a file', () => {
  test('an initQueue queue and an openQueue queue in one process see each other\'s events', async () => {
    const dbName = tempDb()
    const sync = initQueue({ dbName })
    after(() => sync.close())
    const q = await open({ dbName })
    for (let i = 0; i < 20; i++) {
      if (i % 2) await q.store({ cmd: 'async', correlationId: 'shared' })
      else sync.store({ cmd: 'sync', correlationId: 'shared' })
    }
    const expected = Array.from({ length: 20 }, (_, i) => (i % 2 ? 'async' : 'sync'))
    assert.deepEqual(sync.getTransaction('shared').map((r) => r.cmd), expected)
    assert.deepEqual((await q.getTransaction('shared')).map((r) => r.cmd), expected)
    assert.deepEqual(sync.getTransactionCached('shared').map((r) => r.id), Array.from({ length: 20 }, (_, k) => k + 1))
    await q.store({ cmd: 'async', correlationId: 'shared' })
    assert.equal(sync.getTransactionCached('shared').length, 21, 'the other queue\'s cache saw the write')
  })

  for (const journal of ['wal', 'delete']) {
    test(`async writers in several processes, and a sync one, neither lose nor duplicate events (${journal} journal)`, async () => {
      const file = tempDb()
      initQueue({ dbName: file, WAL: journal === 'wal' }).close()
      const writers = [
        startWriter('async', file, journal, 'a', 30, 3, true),
        startWriter('async', file, journal, 'b', 30, 4, true),
        startWriter('sync', file, journal, 'c', 120, 5, true),
      ]
      await Promise.all(writers.map((w) => w.ready))
      for (const w of writers) w.go()
      for (const { code, stderr } of await Promise.all(writers.map((w) => w.exited))) assert.equal(code, 0, `a writer failed: ${stderr}`)
      const { rows, integrity } = storedEvents(file)
      assert.equal(integrity, 'ok')
      const acks = writers.flatMap((w) => w.acks)
      assert.equal(acks.length, 2 * 8 * 30 + 120)
      const batches = assertAcknowledged(rows, acks)
      assert.equal(batches.size, acks.length, 'every acknowledged batch once, nothing else')
      assert.deepEqual(rows.map((r) => r.id), rows.map((_, k) => k + 1), 'ids without a gap or a duplicate')
      for (const w of writers) {
        const byProducer = new Map()
        for (const ack of w.acks) byProducer.set(ack.key.split(':')[0], [...(byProducer.get(ack.key.split(':')[0]) ?? []), ack])
        for (const [producer, own] of byProducer) {
          assert.ok(own.every((a, k) => k === 0 || a.first > own[k - 1].first), `${producer} sees its ids increase`)
        }
      }
    })
  }
})

describe('crash safety', () => {
  for (const journal of ['wal', 'delete']) {
    test(`every resolved write survives SIGKILL, and every batch is whole or absent (${journal} journal)`, async () => {
      const file = tempDb()
      const random = seeded(journal === 'wal' ? 1 : 2)
      const acknowledged = []
      for (let kill = 0; kill < 3; kill++) {
        const writer = startWriter('async', file, journal, `w${kill}`, 0, 40 + kill)
        const target = 1 + Math.floor(random() * 120)
        await until(() => writer.acks.length >= target || writer.child.exitCode !== null)
        writer.child.kill('SIGKILL')
        const { signal, stderr } = await writer.exited
        assert.equal(signal, 'SIGKILL', stderr)
        acknowledged.push(...writer.acks)
      }
      const { rows, integrity } = storedEvents(file)
      assert.equal(integrity, 'ok')
      assertAcknowledged(rows, acknowledged)
      assert.deepEqual(rows.map((r) => r.id), rows.map((_, k) => k + 1), 'ids without a gap: no part of a group stayed')
      const q = await open({ dbName: file, WAL: journal === 'wal' })
      assert.equal((await q.store({ cmd: 'after-the-crashes' })).id, rows.length + 1, 'a new queue continues the ids')
    })
  }
})
