'use strict'
const assert = require('node:assert/strict')
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const { describe, test, after, tempDb, tempDir, recordingModel } = require('./helpers')
const { initQueue } = require('..')

const PACKAGE = path.join(__dirname, '..')

function open(options = {}) {
  const q = initQueue({ dbName: tempDb(), ...options })
  after(() => q.close())
  return q
}

/** Stores `count` events: event n (id n + 1 in a fresh queue) has user `u{n % 2}`, cmd `c{n % 3}`, correlation id `k{n % 5}`. */
function fill(q, count, from = 0) {
  for (let at = 0; at < count; at += 10000) {
    const size = Math.min(10000, count - at)
    q.storeBulk(Array.from({ length: size }, (_, k) => {
      const n = from + at + k
      return { cmd: `c${n % 3}`, data: { n }, user: `u${n % 2}`, correlationId: `k${n % 5}` }
    }))
  }
}

/** Every batch of a stream, as arrays of ids. */
async function batchesOf(stream) {
  const batches = []
  for await (const batch of stream) batches.push(batch.map((r) => r.id))
  return batches
}

/** Runs `source` as a script in a child process of this runtime (node or bun); resolves when it exits cleanly. */
function runChild(source) {
  const script = path.join(tempDir(), 'child.js')
  fs.writeFileSync(script, `const { initQueue } = require(${JSON.stringify(PACKAGE)})\n${source}`)
  const child = spawn(process.execPath, [script], { stdio: ['ignore', 'ignore', 'inherit'] })
  return new Promise((resolve, reject) => {
    child.on('error', reject)
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`the child process exited with ${code}`))))
  })
}

const range = (from, to, step = 1) => Array.from({ length: Math.floor((to - from) / step) + 1 }, (_, i) => from + i * step)
const tick = (ms = 0) => new Promise((resolve) => setTimeout(resolve, ms))

/** Resolves with the first `count` rows a following stream yields, then aborts it. */
async function follow(q, count, options = {}) {
  const controller = new AbortController()
  const rows = []
  for await (const batch of q.streamEvents({ ...options, follow: true, signal: controller.signal })) {
    rows.push(...batch)
    if (rows.length >= count) controller.abort()
  }
  return rows
}

describe('streamEvents', () => {
  test('yields every event in id order, in batches of batchSize (1000 by default)', async () => {
    const q = open()
    fill(q, 2500)
    const batches = await batchesOf(q.streamEvents())
    assert.deepStrictEqual(batches.map((b) => b.length), [1000, 1000, 500])
    assert.deepStrictEqual(batches.flat(), range(1, 2500))
    assert.deepStrictEqual((await batchesOf(q.streamEvents({ batchSize: 7 }))).flat(), range(1, 2500))
  })

  test('rows are full rows, equal to what retrieveByID returns', async () => {
    const q = open()
    q.store({ cmd: 'go', data: { deep: [1, { two: 2 }] }, metadata: { m: true }, user: 'me', ip: '1.2.3.4', correlationId: 'x' })
    q.store({ cmd: 'child', causationId: 1 })
    const rows = []
    for await (const batch of q.streamEvents()) rows.push(...batch)
    assert.deepStrictEqual(rows, [q.retrieveByID(1), q.retrieveByID(2)])
  })

  test('startId and endId bound the ids, both inclusive', async () => {
    const q = open()
    fill(q, 50)
    assert.deepStrictEqual(await batchesOf(q.streamEvents({ startId: 10, endId: 20, batchSize: 4 })), [[10, 11, 12, 13], [14, 15, 16, 17], [18, 19, 20]])
    assert.deepStrictEqual((await batchesOf(q.streamEvents({ startId: 45 }))).flat(), range(45, 50))
    assert.deepStrictEqual(await batchesOf(q.streamEvents({ startId: 51 })), [])
    assert.deepStrictEqual(await batchesOf(q.streamEvents({ startId: 30, endId: 29 })), [])
  })

  test('correlationId, user and cmd filter, and combine with AND', async () => {
    const q = open({ indexes: { user: true } })
    fill(q, 300)
    const idsWhere = (pred) => range(1, 300).filter((id) => pred(id - 1))
    const stream = async (options) => (await batchesOf(q.streamEvents({ batchSize: 8, ...options }))).flat()
    assert.deepStrictEqual(await stream({ correlationId: 'k3' }), idsWhere((n) => n % 5 === 3))
    assert.deepStrictEqual(await stream({ user: 'u1' }), idsWhere((n) => n % 2 === 1))
    assert.deepStrictEqual(await stream({ cmd: 'c2' }), idsWhere((n) => n % 3 === 2))
    assert.deepStrictEqual(await stream({ user: 'u1', cmd: 'c2' }), idsWhere((n) => n % 2 === 1 && n % 3 === 2))
    assert.deepStrictEqual(
      await stream({ user: 'u0', cmd: 'c0', correlationId: 'k0', startId: 31, endId: 270 }),
      idsWhere((n) => n % 30 === 0).filter((id) => id >= 31 && id <= 270),
    )
    assert.deepStrictEqual(await stream({ cmd: 'nothing' }), [])
  })

  test('an in-memory queue streams too', async () => {
    const q = initQueue({ dbName: ':memory:' })
    after(() => q.close())
    fill(q, 30)
    assert.deepStrictEqual((await batchesOf(q.streamEvents({ batchSize: 10, user: 'u0' }))).flat(), range(1, 29, 2))
    const tail = follow(q, 2, { startId: 31 })
    await tick()
    q.store({ cmd: 'a' })
    q.store({ cmd: 'b' })
    assert.deepStrictEqual((await tail).map((r) => r.cmd), ['a', 'b'])
  })

  test('leaving the loop early releases the reader: a writer with no busy timeout is not blocked', async () => {
    // With the rollback journal a reader still reading (the batch read ahead, large enough to
    // be in flight when the loop is left) would make this writer fail at once with
    // SQLITE_BUSY; WAL would hide that.
    const dbName = tempDb()
    const q = initQueue({ dbName, WAL: false, busyTimeout: 0 })
    after(() => q.close())
    fill(q, 40000)
    for await (const batch of q.streamEvents({ batchSize: 10000 })) {
      assert.equal(batch.length, 10000)
      break
    }
    assert.equal(q.store({ cmd: 'after-break' }).id, 40001)
    await assert.rejects(async () => {
      for await (const batch of q.streamEvents({ batchSize: 10000 })) {
        if (batch[0].id > 10000) throw new Error('stop here')
      }
    }, /stop here/)
    assert.equal(q.store({ cmd: 'after-throw' }).id, 40002)
    const other = initQueue({ dbName, WAL: false, busyTimeout: 0 })
    after(() => other.close())
    assert.equal(other.store({ cmd: 'from-another-connection' }).id, 40003)
  })

  test('close() ends open streams, waiting or not, and nothing is yielded after it', async () => {
    const q = open()
    fill(q, 3000)
    const seen = []
    for await (const batch of q.streamEvents({ batchSize: 100 })) {
      seen.push(batch.length)
      if (seen.length === 2) q.close()
    }
    assert.deepStrictEqual(seen, [100, 100])
    assert.throws(() => q.streamEvents(), { code: 'ERR_QUEUE_CLOSED' })

    const live = open()
    fill(live, 3)
    const tail = live.streamEvents({ follow: true })
    assert.deepStrictEqual((await tail.next()).value.map((r) => r.id), [1, 2, 3])
    const waiting = tail.next()
    await tick(20)
    live.close()
    assert.deepStrictEqual(await waiting, { done: true, value: undefined })
    const never = open()
    const stream = never.streamEvents()
    never.close()
    assert.deepStrictEqual(await batchesOf(stream), [], 'a stream first iterated after close() ends at once')
  })

  test('follow: catches up, then yields what this queue appends', async () => {
    const q = open()
    fill(q, 5)
    const tail = follow(q, 8, { batchSize: 2 })
    await tick(10)
    q.store({ cmd: 'live-1' })
    await tick(10)
    q.storeBulk([{ cmd: 'live-2' }, { cmd: 'live-3' }])
    const rows = await tail
    assert.deepStrictEqual(rows.map((r) => r.id), range(1, 8))
    assert.deepStrictEqual(rows.slice(5).map((r) => r.cmd), ['live-1', 'live-2', 'live-3'])
  })

  test('follow: yields what another process appends to the same file', async () => {
    const dbName = tempDb()
    const q = initQueue({ dbName })
    after(() => q.close())
    q.store({ cmd: 'before' })
    const tail = follow(q, 4)
    await runChild(`
      const q = initQueue({ dbName: ${JSON.stringify(dbName)} })
      q.store({ cmd: 'from-child', data: { n: 1 } })
      q.storeBulk([{ cmd: 'from-child', data: { n: 2 } }, { cmd: 'from-child', data: { n: 3 } }])
      q.close()
    `)
    const rows = await tail
    assert.deepStrictEqual(rows.map((r) => [r.cmd, r.data.n]), [['before', undefined], ['from-child', 1], ['from-child', 2], ['from-child', 3]])
  })

  test('follow ends when its signal aborts; an aborted signal yields nothing', async () => {
    const q = open()
    fill(q, 3)
    const controller = new AbortController()
    const tail = q.streamEvents({ follow: true, signal: controller.signal })
    assert.deepStrictEqual((await tail.next()).value.map((r) => r.id), [1, 2, 3])
    const waiting = tail.next()
    await tick(20)
    controller.abort()
    assert.deepStrictEqual(await waiting, { done: true, value: undefined })
    assert.deepStrictEqual(await batchesOf(q.streamEvents({ signal: AbortSignal.abort() })), [])
    assert.deepStrictEqual(await batchesOf(q.streamEvents({ follow: true, endId: 3 })), [[1, 2, 3]], 'a follow past endId has nothing to wait for')
  })

  test('the event loop keeps running while a large stream reads', async () => {
    const q = open()
    fill(q, 200000)
    let ticks = 0
    const timer = setInterval(() => ticks++, 1)
    let rows = 0
    let ticksAtFirstBatch = null
    try {
      for await (const batch of q.streamEvents({ batchSize: 1000 })) {
        ticksAtFirstBatch ??= ticks
        rows += batch.length
      }
    } finally {
      clearInterval(timer)
    }
    assert.equal(rows, 200000)
    assert.ok(ticks > ticksAtFirstBatch, `the timer fired while the stream ran (${ticksAtFirstBatch} then ${ticks})`)
  }, 60000) // bun test's timeout; node:test has none by default and ignores this argument

  test('bounded memory: streaming 1,000,000 events grows RSS by less than 64 MB', async () => {
    // Written by another process, so that the garbage of writing does not hide what reading adds.
    const dbName = tempDb()
    await runChild(`
      const q = initQueue({ dbName: ${JSON.stringify(dbName)} })
      for (let at = 0; at < 1000000; at += 50000) {
        q.storeBulk(Array.from({ length: 50000 }, (_, k) => ({ cmd: 'e', data: { n: at + k }, correlationId: 'c' })))
      }
      q.close()
    `)
    const q = initQueue({ dbName })
    after(() => q.close())
    if (typeof Bun !== 'undefined') Bun.gc(true)
    else if (typeof global.gc === 'function') global.gc()
    const before = process.memoryUsage.rss()
    let peak = before
    let rows = 0
    let last = 0
    for await (const batch of q.streamEvents()) {
      rows += batch.length
      last = batch[batch.length - 1].id
      peak = Math.max(peak, process.memoryUsage.rss())
    }
    assert.equal(rows, 1000000)
    assert.equal(last, 1000000)
    const grownMb = (peak - before) / 2 ** 20
    assert.ok(grownMb < 64, `RSS grew by ${grownMb.toFixed(1)} MB`)
  }, 120000)

  test('a read that fails rejects with the SQLite code, and the stream ends', async () => {
    const dir = tempDir()
    const q = initQueue({ dbName: path.join(dir, 'events.sqlite') })
    after(() => q.close())
    q.store({ cmd: 'x' })
    const stream = q.streamEvents()
    fs.rmSync(dir, { recursive: true, force: true }) // the stream opens its reader on its first read
    await assert.rejects(stream.next(), { code: 'SQLITE_CANTOPEN' })
    assert.deepStrictEqual(await stream.next(), { done: true, value: undefined })
  })

  test('options are checked when streamEvents is called', () => {
    const q = open()
    const bad = [
      [{ batchSize: 0 }, RangeError], [{ batchSize: 1.5 }, RangeError], [{ batchSize: 2 ** 53 }, RangeError], [{ batchSize: '10' }, TypeError],
      [{ startId: -1 }, RangeError], [{ startId: '1' }, TypeError], [{ endId: 2.5 }, RangeError], [{ endId: '9' }, TypeError],
      [{ user: 1 }, TypeError], [{ cmd: {} }, TypeError], [{ correlationId: [] }, TypeError],
      [{ follow: 'yes' }, TypeError], [{ signal: {} }, TypeError], [{ signal: 'stop' }, TypeError],
      [{ colour: 'red' }, TypeError], [null, TypeError], [5, TypeError],
    ]
    for (const [options, Ctor] of bad) {
      assert.throws(() => q.streamEvents(options), { name: Ctor.name, code: 'ERR_INVALID_OPTION' }, JSON.stringify(options))
    }
    q.streamEvents({ endId: null, user: null, signal: undefined }) // null means absent
  })
})

describe('cycleThrough', () => {
  test('replays every event in id order, in batches, from start to before stop', () => {
    const q = open()
    fill(q, 2345)
    const { model, calls } = recordingModel()
    let done = 0
    q.cycleThrough(model, () => done++)
    const replayed = calls.filter((c) => c[0] === '_done').map((c) => c[1])
    assert.deepStrictEqual(replayed, range(1, 2345))
    assert.equal(done, 1)
    const some = recordingModel()
    q.cycleThrough(some.model, () => {}, undefined, { start: 1000, stop: 2001 })
    assert.deepStrictEqual(some.calls.filter((c) => c[0] === '_done').map((c) => c[1]), range(1000, 2000))
    const row = some.calls.find((c) => c[0] === '_default')
    assert.deepStrictEqual(row[1], { n: 999 })
    assert.equal(row[2].id, 1000)
  })

  test('a model may store events while it replays', () => {
    const q = open()
    fill(q, 1500)
    let replayed = 0
    const model = {
      _default(data, meta) {
        replayed++
        if (meta.id % 500 === 0) q.store({ cmd: 'echo', data: { of: meta.id } })
      },
    }
    q.cycleThrough(model, () => {}, undefined, { stop: 1501 })
    assert.equal(replayed, 1500)
    assert.equal(q.getLastRow().id, 1503)
  })
})
