'use strict'
// openQueue's streams: expectedVersion and idempotencyKey inside group commit (each call
// checked in its own savepoint, the calls before it counted), getStreamVersion, and consumers
// whose leases and positions are written by the writer thread, never on the JavaScript thread.
// On every backend (__tests__/backends.js); what compares with initQueue on one file, or holds
// SQLite's write lock, on SQLite only.
const assert = require('node:assert/strict')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { describe, test, after, tempDb, recordingModel, holdWriteLock, rejectsCode } = require('./helpers')
const { BACKENDS } = require('./backends')
const { openQueue, initQueue } = require('..')

const RACER = path.join(__dirname, 'fixtures', 'version-racer.js')

/** Settles every call, as `{ value }` or `{ error }`, in order. */
const settled = (calls) => Promise.all(calls.map((call) => call.then((value) => ({ value }), (error) => ({ error }))))

/** The commits the writer made so far. */
const commits = async (q) => (await q.getMetrics()).commitsTotal

/** Every row of the file, as `[id, cmd]`. */
async function stored(q) {
  const rows = []
  for await (const batch of q.streamEvents()) for (const row of batch) rows.push([row.id, row.cmd])
  return rows
}

/** Every batch a consumer yields, as arrays of ids. */
async function batchesOf(consumer) {
  const batches = []
  for await (const batch of consumer) batches.push(batch.map((r) => r.id))
  return batches
}

/** Resolves after the event loop has turned once. */
const turn = () => new Promise((resolve) => setImmediate(resolve))

for (const backend of BACKENDS) {
  /** A new queue on a log of its own of this backend; `place` to share one. */
  async function open(options = {}, place = backend.place()) {
    const q = await openQueue({ ...place, ...options })
    after(() => q.close())
    return q
  }

  backend.describe(`streams on ${backend.name}`, () => {
    describe('expectedVersion in group commit', () => {
      test('a conflict fails its call alone, the others of the group are stored with consecutive ids', async () => {
        const q = await open()
        await q.store({ cmd: 'opened', correlationId: 'order' })
        const before = await commits(q)
        // Made in one turn of the event loop: they reach the writer together, and share one commit.
        const results = await settled([
          q.store({ cmd: 'paid', correlationId: 'order', expectedVersion: 1 }),
          q.store({ cmd: 'other', correlationId: 'elsewhere' }),
          q.store({ cmd: 'stale', correlationId: 'order', expectedVersion: 1 }),
          q.storeBulk([{ cmd: 'b1', correlationId: 'x' }, { cmd: 'late', correlationId: 'order', expectedVersion: 1 }]),
          q.storeBulk([{ cmd: 'shipped', correlationId: 'order', expectedVersion: 2 }, { cmd: 'closed', correlationId: 'order', expectedVersion: 3 }]),
        ])
        assert.equal(await commits(q), before + 1, 'one commit for the group')
        assert.equal(results[0].value.id, 2)
        assert.equal(results[1].value.id, 3)
        const conflict = results[2].error
        assert.equal(conflict.code, 'ERR_VERSION_CONFLICT')
        assert.deepEqual({ ...conflict }, { code: 'ERR_VERSION_CONFLICT', correlationId: 'order', expectedVersion: 1, actualVersion: 2 })
        assert.match(conflict.message, /^store\(event\): stream "order" is at version 2, not the expected 1; nothing was stored$/)
        const bulkConflict = results[3].error
        assert.deepEqual({ ...bulkConflict }, { code: 'ERR_VERSION_CONFLICT', correlationId: 'order', expectedVersion: 1, actualVersion: 2, index: 1 })
        assert.deepEqual(results[4].value.map((entry) => entry.row.id), [4, 5])
        assert.deepEqual(await stored(q), [[1, 'opened'], [2, 'paid'], [3, 'other'], [4, 'shipped'], [5, 'closed']])
        assert.equal(await q.getStreamVersion('order'), 4)
        const metrics = await q.getMetrics()
        assert.equal(metrics.errorsTotal, 2, 'each conflict is a failed write')
      })

      test('expectedVersion counts a parent\'s stream for a child that inherits it, and is validated before anything is sent', async () => {
        const q = await open()
        const parent = await q.store({ cmd: 'parent', correlationId: 'family' })
        const [child, stale] = await settled([
          q.store({ cmd: 'child', causationId: parent.id, expectedVersion: 1 }),
          q.store({ cmd: 'twin', causationId: parent.id, expectedVersion: 1 }),
        ])
        assert.equal(child.value.correlation_id, 'family')
        assert.equal(stale.error.code, 'ERR_VERSION_CONFLICT')
        const call = q.store({ cmd: 'x', expectedVersion: 0 })
        await rejectsCode(call, TypeError, 'ERR_INVALID_EVENT')
        await rejectsCode(q.store({ cmd: 'x', correlationId: 'c', expectedVersion: -1 }), TypeError, 'ERR_INVALID_EVENT')
        await rejectsCode(q.store({ cmd: 'x', correlationId: 'c', idempotencyKey: '' }), RangeError, 'ERR_INVALID_EVENT')
        assert.equal(await q.getStreamVersion('family'), 2)
      })
    })

    describe('idempotencyKey in group commit', () => {
      test('a repeat in the same group resolves to the first row, and its model does not run', async () => {
        const q = await open()
        const { model, calls } = recordingModel()
        const [first, plain, again] = await Promise.all([
          q.store({ cmd: 'charge', data: { n: 1 }, correlationId: 'p', idempotencyKey: 'k1' }, model),
          q.store({ cmd: 'plain', correlationId: 'p' }, model),
          q.store({ cmd: 'charge', data: { n: 2 }, correlationId: 'p', idempotencyKey: 'k1' }),
        ])
        assert.equal(first, 'default', 'the model ran for the first')
        assert.equal(plain, 'default')
        assert.equal(again.id, 1)
        assert.deepEqual(again.data, { n: 1 }, 'the row stored the first time')
        assert.equal(calls.filter(([kind]) => kind === '_default').length, 2)
        assert.deepEqual(await stored(q), [[1, 'charge'], [2, 'plain']])
      })

      test('a repeat in a later group, by store and by storeBulk, mixed with new events', async () => {
        const q = await open()
        const first = await q.store({ cmd: 'charge', correlationId: 'p', idempotencyKey: 'k1' })
        const { model, calls } = recordingModel()
        const [again, bulk] = await Promise.all([
          q.store({ cmd: 'charge', correlationId: 'p', idempotencyKey: 'k1' }, model),
          q.storeBulk([
            { cmd: 'before', correlationId: 'p' },
            { cmd: 'charge', correlationId: 'p', idempotencyKey: 'k1' },
            { cmd: 'refund', correlationId: 'p', idempotencyKey: 'k2', expectedVersion: 2 },
            { cmd: 'refund', correlationId: 'p', idempotencyKey: 'k2' },
          ], model),
        ])
        assert.deepEqual(again, first, 'store gives back the row, and runs nothing')
        assert.deepEqual(bulk.map(({ row, result, duplicate }) => [row.id, row.cmd, result, duplicate ?? false]), [
          [2, 'before', 'default', false],
          [1, 'charge', null, true],
          [3, 'refund', 'default', false],
          [3, 'refund', null, true],
        ])
        assert.deepEqual(calls.filter(([kind]) => kind === '_default').map(([, , meta]) => meta.id), [2, 3])
        assert.equal(await q.getStreamVersion('p'), 3)
      })

      test('a key stored by another program is a repeat for this queue, and the reverse', async () => {
        const place = backend.place()
        const q = await open({}, place)
        const other = await backend.other(place)
        const fromOther = await other.store({ cmd: 'a', correlationId: 'c', idempotencyKey: 'other-key' })
        const fromThis = await q.store({ cmd: 'b', correlationId: 'c', idempotencyKey: 'this-key' })
        assert.deepEqual(await q.store({ cmd: 'a', correlationId: 'c', idempotencyKey: 'other-key' }), fromOther)
        assert.deepEqual(await other.store({ cmd: 'b', correlationId: 'c', idempotencyKey: 'this-key' }), fromThis)
        assert.equal(await other.getStreamVersion('c'), 2)
      })
    })

    describe('getStreamVersion', () => {
      test('counts what this queue and another program appended to one log, and rejects a bad id', async () => {
        const place = backend.place()
        const q = await open({}, place)
        assert.equal(await q.getStreamVersion('s'), 0)
        await Promise.all(Array.from({ length: 40 }, (_, i) => q.store({ cmd: 'e', data: { i }, correlationId: 's' })))
        assert.equal(await q.getStreamVersion('s'), 40)
        const other = await backend.other(place)
        await other.storeBulk(Array.from({ length: 5 }, () => ({ cmd: 'f', correlationId: 's' })))
        assert.equal(await q.getStreamVersion('s'), 45)
        await q.store({ cmd: 'g', correlationId: 's', expectedVersion: 45 })
        assert.equal(await other.getStreamVersion('s'), 46)
        await rejectsCode(q.getStreamVersion({}), TypeError, 'ERR_INVALID_ARG')
      })
    })

    describe('consume', () => {
      test('resumes after a close and a reopen where its commits left it', async () => {
        const place = backend.place()
        let q = await openQueue(place)
        await q.storeBulk(Array.from({ length: 10 }, (_, i) => ({ cmd: 'e', data: { i } })))
        const consumer = q.consume('projection', { batchSize: 4, follow: false })
        assert.equal(consumer.position, 0)
        const seen = []
        for await (const batch of consumer) {
          seen.push(batch.map((r) => r.id))
          if (seen.length === 2) {
            await consumer.commit()
            break
          }
        }
        assert.deepEqual(seen, [[1, 2, 3, 4], [5, 6, 7, 8]])
        assert.equal(consumer.position, 8, 'the explicit commit')
        await q.close()

        q = await openQueue(place)
        after(() => q.close())
        assert.deepEqual(await q.getConsumers(), [{ name: 'projection', member: 0, size: 1, position: 8, lag: 2 }])
        const resumed = q.consume('projection', { batchSize: 4, follow: false })
        assert.deepEqual(await batchesOf(resumed), [[9, 10]])
        assert.equal(resumed.position, 10)
        // And another program sees the same position.
        const other = await backend.other(place)
        assert.deepEqual(await other.getConsumers(), [{ name: 'projection', member: 0, size: 1, position: 10, lag: 0 }])
      })

      test('a batch left without commit comes again; commit() returns a Promise', async () => {
        const q = await open()
        await q.storeBulk([{ cmd: 'a' }, { cmd: 'b' }, { cmd: 'c' }])
        const first = q.consume('p', { batchSize: 2, follow: false })
        for await (const batch of first) {
          assert.deepEqual(batch.map((r) => r.id), [1, 2])
          break
        }
        const again = q.consume('p', { batchSize: 2, follow: false })
        const iterator = again[Symbol.asyncIterator]()
        assert.deepEqual((await iterator.next()).value.map((r) => r.id), [1, 2])
        const committing = again.commit()
        assert.ok(committing instanceof Promise)
        await committing
        assert.equal(again.position, 2)
        assert.deepEqual((await iterator.next()).value.map((r) => r.id), [3])
        assert.equal((await iterator.next()).done, true)
        assert.equal(again.position, 3)
      })

      test('a following consumer is woken by this queue\'s writes', async () => {
        const q = await open()
        const consumer = q.consume('live')
        const iterator = consumer[Symbol.asyncIterator]()
        const next = iterator.next()
        await turn()
        await q.store({ cmd: 'wake' })
        assert.deepEqual((await next).value.map((r) => r.cmd), ['wake'])
        await iterator.return()
      })

      test('group members see their own partitions, every event once', async () => {
        const q = await open()
        await q.storeBulk(Array.from({ length: 30 }, (_, n) => ({ cmd: 'e', correlationId: `k${n % 7}` })))
        const seen = []
        for (let member = 0; member < 3; member++) {
          const batches = await batchesOf(q.consume('workers', { follow: false, group: { member, size: 3 } }))
          seen.push(batches.flat())
        }
        assert.deepEqual(seen.flat().sort((a, b) => a - b), Array.from({ length: 30 }, (_, i) => i + 1))
        const rows = await q.getConsumers()
        assert.deepEqual(rows.map((r) => [r.member, r.size, r.position]), [[0, 3, 30], [1, 3, 30], [2, 3, 30]])
        await rejectsCode(q.consume('workers', { group: { member: 3, size: 3 } })[Symbol.asyncIterator]().next(), RangeError, 'ERR_INVALID_OPTION')
      })

      test('one reader per consumer: a second one, of either queue, is ERR_CONSUMER_BUSY until the first ends', async () => {
        const place = backend.place()
        const q = await open({}, place)
        const other = await backend.other(place)
        await q.store({ cmd: 'a' })
        const first = q.consume('solo')[Symbol.asyncIterator]()
        assert.equal((await first.next()).value.length, 1)
        await rejectsCode(q.consume('solo').next(), Error, 'ERR_CONSUMER_BUSY')
        await rejectsCode(other.consume('solo').next(), Error, 'ERR_CONSUMER_BUSY')
        await rejectsCode(q.resetConsumer('solo', 0), Error, 'ERR_CONSUMER_BUSY')
        await first.return()
        assert.deepEqual(await batchesOf(other.consume('solo', { follow: false })), [[1]], 'released, and its batch uncommitted')
      })

      test('close() releases the leases of its consumers', async () => {
        const place = backend.place()
        const q = await openQueue(place)
        await q.store({ cmd: 'a' })
        const reading = q.consume('p')[Symbol.asyncIterator]()
        await reading.next()
        await q.close()
        assert.deepEqual(await reading.next(), { done: true, value: undefined })
        const other = await backend.other(place)
        assert.deepEqual(await batchesOf(other.consume('p', { follow: false })), [[1]])
      })

      test('resetConsumer moves every member; getConsumers lists them', async () => {
        const q = await open()
        await q.storeBulk(Array.from({ length: 6 }, () => ({ cmd: 'e' })))
        await batchesOf(q.consume('p', { follow: false }))
        assert.deepEqual(await q.getConsumers(), [{ name: 'p', member: 0, size: 1, position: 6, lag: 0 }])
        assert.equal(await q.resetConsumer('p', 2), undefined)
        assert.equal(await q.resetConsumer('fresh'), undefined)
        assert.deepEqual(await q.getConsumers(), [
          { name: 'fresh', member: 0, size: 1, position: 0, lag: 6 },
          { name: 'p', member: 0, size: 1, position: 2, lag: 4 },
        ])
        assert.deepEqual(await batchesOf(q.consume('p', { follow: false })), [[3, 4, 5, 6]])
      })

      test('invalid input rejects, never throws; a closed queue rejects ERR_QUEUE_CLOSED', async () => {
        const q = await openQueue(backend.place())
        await rejectsCode(q.resetConsumer('', 0), TypeError, 'ERR_INVALID_ARG')
        await rejectsCode(q.resetConsumer('p', -1), RangeError, 'ERR_INVALID_ARG')
        await rejectsCode(q.resetConsumer('p', 1.5), RangeError, 'ERR_INVALID_ARG')
        await rejectsCode(q.consume('')[Symbol.asyncIterator]().next(), TypeError, 'ERR_INVALID_ARG')
        await rejectsCode(q.consume('p', { nope: 1 })[Symbol.asyncIterator]().next(), TypeError, 'ERR_INVALID_OPTION')
        await q.close()
        await rejectsCode(q.getStreamVersion('s'), Error, 'ERR_QUEUE_CLOSED')
        await rejectsCode(q.getConsumers(), Error, 'ERR_QUEUE_CLOSED')
        await rejectsCode(q.resetConsumer('p'), Error, 'ERR_QUEUE_CLOSED')
        await rejectsCode(q.consume('p')[Symbol.asyncIterator]().next(), Error, 'ERR_QUEUE_CLOSED')
        await rejectsCode(q.store({ cmd: 'a', correlationId: 'c', expectedVersion: 0 }), Error, 'ERR_QUEUE_CLOSED')
      })
    })
  })
}

describe('on SQLite files', () => {
  test('the conflicts match those of initQueue on the same file', async () => {
    const dbName = tempDb()
    const q = await openQueue({ dbName })
    after(() => q.close())
    const sync = initQueue({ dbName })
    after(() => sync.close())
    sync.store({ cmd: 'a', correlationId: 's' })
    let syncErr
    try {
      sync.storeBulk([{ cmd: 'b', correlationId: 's', expectedVersion: 1 }, { cmd: 'c', correlationId: 's', expectedVersion: 1 }])
    } catch (err) {
      syncErr = err
    }
    const asyncErr = await rejectsCode(
      q.storeBulk([{ cmd: 'b', correlationId: 's', expectedVersion: 1 }, { cmd: 'c', correlationId: 's', expectedVersion: 1 }]),
      Error, 'ERR_VERSION_CONFLICT',
    )
    assert.equal(asyncErr.message, syncErr.message)
    assert.deepEqual({ ...asyncErr }, { ...syncErr })
    assert.equal(await q.getStreamVersion('s'), 1, 'nothing of either batch was stored')
  })

  test('a consumer\'s writes wait for the write lock on the writer thread, not on this one', async () => {
    const dbName = tempDb()
    const q = await openQueue({ dbName, busyTimeout: 60000 })
    after(() => q.close())
    await q.store({ cmd: 'a' })
    const release = await holdWriteLock(dbName)
    let reset = false
    const resetting = q.resetConsumer('p', 1).then(() => { reset = true })
    let read
    try {
      // The event loop turns, and reads go on, while the reset waits for the lock.
      await turn()
      read = await q.getConsumers()
      assert.equal(reset, false, 'the reset is still waiting for the lock')
    } finally {
      await release()
    }
    await resetting
    assert.deepEqual(read, [])
    assert.deepEqual(await q.getConsumers(), [{ name: 'p', member: 0, size: 1, position: 1, lag: 0 }])
  })
})

describe('two processes appending with expectedVersion', () => {
  test('an initQueue process and this openQueue one race on one stream: every append lands at its expected version', async () => {
    const dbName = tempDb()
    const q = await openQueue({ dbName, busyTimeout: 20000 })
    after(() => q.close())
    await q.getStreamVersion('order') // the file and its stream tables exist before the child opens it
    const COUNT = 40
    const child = spawn(process.execPath, [RACER, dbName, 'sync', String(COUNT)], { stdio: ['pipe', 'pipe', 'inherit'] })
    let stdout = ''
    child.stdout.setEncoding('utf8')
    const exited = new Promise((resolve) => child.once('close', (code) => resolve(code)))
    await new Promise((resolve) => child.stdout.on('data', (chunk) => {
      stdout += chunk
      if (stdout.includes('ready\n')) resolve()
    }))
    child.stdin.end('go\n')
    let appended = 0
    while (appended < COUNT) {
      const version = await q.getStreamVersion('order')
      try {
        await q.store({ cmd: 'step', data: { writer: 'async', version }, correlationId: 'order', expectedVersion: version })
        appended++
      } catch (err) {
        // The other process got in first: read the version again.
        if (err.code !== 'ERR_VERSION_CONFLICT' || err.actualVersion <= version) throw err
      }
    }
    assert.equal(await exited, 0)
    const report = JSON.parse(stdout.split('\n').find((line) => line.startsWith('{')))
    assert.equal(report.appended, COUNT)
    const rows = (await q.getTransaction('order'))
    assert.equal(rows.length, 2 * COUNT)
    assert.deepEqual(rows.map((row) => row.data.version), Array.from({ length: 2 * COUNT }, (_, i) => i), 'each append landed at the version it expected')
    assert.equal(await q.getStreamVersion('order'), 2 * COUNT)
  })
})
