'use strict'
// getMetrics(): write counters, batch figures, errors, latency percentiles, and what SQLite
// reports about the file.
const assert = require('node:assert/strict')
const { describe, test, tempDb, holdWriteLock } = require('./helpers')
const { initQueue } = require('..')

const open = (options = {}) => initQueue({ dbName: tempDb(), ...options })
const ev = (i) => ({ cmd: 'logEvent', data: { i }, correlationId: 'c' + (i % 3) })
const many = (n) => Array.from({ length: n }, (_, i) => ev(i))

describe('write metrics', () => {
  test('a new queue reports zeros and the journal settings SQLite uses', () => {
    const q = open()
    assert.deepEqual(q.getMetrics(), {
      writesTotal: 0,
      batchWritesTotal: 0,
      batchEventsTotal: 0,
      lastWriteMs: 0,
      lastBatchMs: 0,
      lastBatchSize: 0,
      avgBatchSize: 0,
      lastBatchThroughputEps: 0,
      errorsTotal: 0,
      writeLatencyMs: { p50: 0, p95: 0, p99: 0 },
      journalMode: 'WAL',
      synchronous: 'NORMAL',
      eventCount: 0,
    })
    q.close()
  })

  test('every figure after a known sequence of writes', () => {
    const q = open()
    for (let i = 0; i < 3; i++) q.store(ev(i))
    q.storeBulk(many(5))
    q.store(ev(9))
    q.storeBulk([ev(10)])
    q.storeBulk(many(3))
    const m = q.getMetrics()
    assert.equal(m.writesTotal, 13)
    assert.equal(m.batchWritesTotal, 3)
    assert.equal(m.batchEventsTotal, 9)
    assert.equal(m.lastBatchSize, 3)
    assert.equal(m.avgBatchSize, 3)
    assert.equal(m.errorsTotal, 0)
    assert.equal(m.eventCount, 13)
    assert.ok(m.lastWriteMs > 0 && m.lastBatchMs > 0)
    assert.ok(Math.abs(m.lastBatchThroughputEps - 3 / (m.lastBatchMs / 1000)) <= 1e-6 * m.lastBatchThroughputEps)
    const { p50, p95, p99 } = m.writeLatencyMs
    assert.ok(p50 > 0 && p50 <= p95 && p95 <= p99, JSON.stringify(m.writeLatencyMs))
    q.close()
  })

  test('every failed write is counted, and nothing of it is stored', async () => {
    const dbName = tempDb()
    const q = initQueue({ dbName, busyTimeout: 0 })
    q.store(ev(1))
    const errors = () => q.getMetrics().errorsTotal
    assert.equal(q.store({ data: {} }, undefined, { _error() {} }), undefined, 'no cmd')
    assert.equal(errors(), 1)
    assert.throws(() => q.store({ cmd: 'x', version: 0 }), { code: 'ERR_INVALID_EVENT' })
    const cycle = {}
    cycle.self = cycle
    assert.throws(() => q.store({ cmd: 'x', data: cycle }), { code: 'ERR_INVALID_EVENT' })
    assert.throws(() => q.storeBulk([]), TypeError)
    assert.throws(() => q.storeBulk('events'), TypeError)
    assert.throws(() => q.storeBulk([ev(2), { cmd: 5 }]), { code: 'ERR_INVALID_EVENT', index: 1 })
    assert.equal(errors(), 6)

    // A write SQLite refuses: another connection holds the write lock.
    const release = await holdWriteLock(dbName)
    try {
      assert.throws(() => q.store(ev(3)), { code: 'SQLITE_BUSY' })
      assert.throws(() => q.storeBulk(many(2)), { code: 'SQLITE_BUSY' })
    } finally {
      await release()
    }

    const m = q.getMetrics()
    assert.equal(m.errorsTotal, 8)
    assert.equal(m.writesTotal, 1)
    assert.equal(m.batchWritesTotal, 0)
    assert.equal(m.eventCount, 1)
    q.close()
  })

  test('a model that throws does not make the write a failed one', () => {
    const q = open()
    q.store(ev(1), { logEvent() { throw new Error('model bug') } }, { _error() {} })
    const m = q.getMetrics()
    assert.equal(m.writesTotal, 1)
    assert.equal(m.errorsTotal, 0)
    q.close()
  })

  test('journalMode and synchronous are read back from SQLite', () => {
    const cases = [
      [{ WAL: false }, 'DELETE', 'FULL'],
      [{ synchronous: 'off' }, 'WAL', 'OFF'],
      [{ WAL: false, synchronous: 'EXTRA' }, 'DELETE', 'EXTRA'],
      [{ dbName: ':memory:' }, 'MEMORY', 'NORMAL'],
    ]
    for (const [options, journalMode, synchronous] of cases) {
      const q = open(options)
      const m = q.getMetrics()
      assert.deepEqual([m.journalMode, m.synchronous], [journalMode, synchronous], JSON.stringify(options))
      q.close()
    }
  })

  test('eventCount counts what is in the file, whoever wrote it', () => {
    const dbName = tempDb()
    const mine = initQueue({ dbName, risky: true })
    const theirs = initQueue({ dbName })
    mine.storeBulk(many(4))
    theirs.store(ev(5))
    assert.equal(mine.getMetrics().eventCount, 5)
    assert.equal(mine.getMetrics().writesTotal, 4, 'writesTotal counts this queue\'s writes')
    mine.reset()
    assert.equal(mine.getMetrics().eventCount, 0)
    mine.close()
    theirs.close()
  })

  test('the latency percentiles stay sound over thousands of writes', () => {
    const q = open({ synchronous: 'OFF' })
    for (let i = 0; i < 3000; i++) q.store(ev(i))
    for (let i = 0; i < 20; i++) q.storeBulk(many(100))
    const m = q.getMetrics()
    assert.equal(m.writesTotal, 5000)
    assert.equal(m.avgBatchSize, 100)
    const { p50, p95, p99 } = m.writeLatencyMs
    assert.ok(Number.isFinite(p99) && p50 > 0 && p50 <= p95 && p95 <= p99, JSON.stringify(m.writeLatencyMs))
    q.close()
  })

  test('a closed queue refuses getMetrics', () => {
    const q = open()
    q.close()
    assert.throws(() => q.getMetrics(), { code: 'ERR_QUEUE_CLOSED' })
  })
})
