'use strict'
// The query cache: retrieveByIDCached, getTransactionCached, clearCache, getCacheStats.
const assert = require('node:assert/strict')
const { describe, test, tempDb, sqlElsewhere } = require('./helpers')
const { initQueue } = require('..')

const open = (options = {}) => initQueue({ dbName: tempDb(), ...options })
const ev = (i, extra = {}) => ({
  cmd: 'logEvent',
  data: { i, nested: { list: [i, { deep: true }] } },
  correlationId: 'c' + (i % 2),
  metadata: { source: 'test' },
  ...extra,
})
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** The counters that say what the cache did, without `hitRate`, `maxSize` and `ttl`. */
function counts(q) {
  const { size, hits, misses, evictions, expirations } = q.getCacheStats()
  return { size, hits, misses, evictions, expirations }
}

/** Whether a read was served from the cache. */
function hit(q, read) {
  const before = q.getCacheStats().hits
  read()
  return q.getCacheStats().hits === before + 1
}

describe('the query cache', () => {
  test('a cached read returns what the uncached read returns, on a miss and on a hit', () => {
    const q = open()
    q.storeBulk([ev(1), ev(2), ev(3, { causationId: 1, correlationId: undefined })])
    for (let round = 0; round < 2; round++) {
      for (const id of [1, 2, 3, 99, '2', 'x', 1.5]) assert.deepEqual(q.retrieveByIDCached(id), q.retrieveByID(id))
      for (const c of ['c0', 'c1', 'none', 7]) assert.deepEqual(q.getTransactionCached(c), q.getTransaction(c))
    }
    assert.deepEqual(q.getTransactionCached(undefined), [])
    assert.throws(() => q.getTransactionCached({}), { name: 'TypeError', code: 'ERR_INVALID_ARG' })
    q.close()
  })

  test('hits and misses are counted and hitRate is hits / (hits + misses)', () => {
    const q = open()
    assert.deepEqual(q.getCacheStats(), {
      enabled: true, size: 0, maxSize: 1000, ttl: 300000, hits: 0, misses: 0, evictions: 0, expirations: 0, hitRate: 0,
    })
    q.store(ev(1))
    q.retrieveByIDCached(1)
    q.retrieveByIDCached(1)
    q.retrieveByIDCached(1)
    assert.equal(q.retrieveByIDCached(99), null)
    assert.equal(q.retrieveByIDCached(99), null, 'a missing event is not cached')
    q.getTransactionCached('c1')
    q.getTransactionCached('c1')
    assert.deepEqual(counts(q), { size: 2, hits: 3, misses: 4, evictions: 0, expirations: 0 })
    assert.equal(q.getCacheStats().hitRate, 3 / 7)
    q.close()
  })

  test('at maxSize the least recently used entry is evicted', () => {
    const q = open({ cache: { maxSize: 2 } })
    q.storeBulk([ev(1), ev(2), ev(3)])
    q.retrieveByIDCached(1)
    q.retrieveByIDCached(2)
    assert.ok(hit(q, () => q.retrieveByIDCached(1)), 'now 2 is the least recently used')
    q.retrieveByIDCached(3)
    assert.deepEqual(counts(q), { size: 2, hits: 1, misses: 3, evictions: 1, expirations: 0 })
    assert.ok(hit(q, () => q.retrieveByIDCached(1)))
    assert.ok(hit(q, () => q.retrieveByIDCached(3)))
    assert.ok(!hit(q, () => q.retrieveByIDCached(2)), '2 was evicted')
    assert.ok(!hit(q, () => q.retrieveByIDCached(1)), 'reading 2 evicted 1, the least recently used')
    assert.equal(q.getCacheStats().evictions, 3)
    assert.deepEqual(q.retrieveByIDCached(2), q.retrieveByID(2))
    q.close()
  })

  test('an entry past its ttl is a miss and counts as an expiration', async () => {
    const q = open({ cache: { ttl: 100 } })
    q.storeBulk([ev(1), ev(2)])
    q.retrieveByIDCached(1)
    q.getTransactionCached('c0')
    await sleep(150)
    // Found expired on lookup: an expiration and a miss, then read afresh and cached again.
    assert.deepEqual(q.retrieveByIDCached(1), q.retrieveByID(1))
    // getCacheStats drops the expired transaction too, so that size counts live entries.
    assert.deepEqual(counts(q), { size: 1, hits: 0, misses: 3, evictions: 0, expirations: 2 })
    q.close()
  })

  test('store forgets the transaction it joins, and only that one', () => {
    const q = open()
    q.storeBulk([ev(1), ev(2)])
    assert.equal(q.getTransactionCached('c1').length, 1)
    assert.equal(q.getTransactionCached('c0').length, 1)
    q.retrieveByIDCached(1)
    q.store(ev(3))
    assert.deepEqual(q.getTransactionCached('c1'), q.getTransaction('c1'))
    assert.equal(q.getTransactionCached('c1').length, 2)
    assert.ok(hit(q, () => q.getTransactionCached('c0')))
    assert.ok(hit(q, () => q.retrieveByIDCached(1)))
    q.close()
  })

  test('storeBulk forgets every transaction it writes to, also in long batches', () => {
    const q = open()
    q.store(ev(1, { correlationId: 'a' }))
    q.store(ev(2, { correlationId: 'b' }))
    for (const c of ['a', 'b', 'big']) q.getTransactionCached(c)
    assert.deepEqual(q.getTransactionCached('big'), [])
    const big = Array.from({ length: 70 }, (_, i) => ev(i, { correlationId: 'big' }))
    q.storeBulk([ev(3, { correlationId: 'a' }), ...big])
    assert.equal(q.getTransactionCached('a').length, 2)
    assert.equal(q.getTransactionCached('big').length, 70)
    assert.deepEqual(q.getTransactionCached('big'), q.getTransaction('big'))
    assert.ok(hit(q, () => q.getTransactionCached('b')))
    q.close()
  })

  test('a child that inherits its correlation id through causationId refreshes that transaction', () => {
    const q = open()
    const parent = q.store(ev(1, { correlationId: 'p' }))
    assert.equal(q.getTransactionCached('p').length, 1)
    q.store({ cmd: 'child', causationId: parent.id })
    assert.equal(q.getTransactionCached('p').length, 2)
    q.storeBulk([{ cmd: 'other', correlationId: 'q' }, { cmd: 'grandchild', causationId: parent.id }])
    assert.deepEqual(q.getTransactionCached('p'), q.getTransaction('p'))
    assert.equal(q.getTransactionCached('p').length, 3)
    q.close()
  })

  test('reset empties the cache', () => {
    const q = open({ risky: true })
    q.store(ev(1))
    q.retrieveByIDCached(1)
    q.getTransactionCached('c1')
    q.reset()
    assert.equal(q.getCacheStats().size, 0)
    assert.equal(q.retrieveByIDCached(1), null)
    assert.deepEqual(q.getTransactionCached('c1'), [])
    q.store(ev(1, { data: { fresh: true } }))
    assert.deepEqual(q.retrieveByIDCached(1).data, { fresh: true })
    assert.equal(q.getTransactionCached('c1').length, 1)
    q.close()
  })

  test('every cached read returns fresh objects', () => {
    const q = open()
    q.storeBulk([ev(1), ev(3)])
    const expectedRow = q.retrieveByID(1)
    const expectedRows = q.getTransaction('c1')
    for (let round = 0; round < 3; round++) {
      const row = q.retrieveByIDCached(1)
      assert.deepEqual(row, expectedRow)
      row.data.nested.list.push('changed')
      row.data.nested.list[1].deep = false
      row.metadata.source = 'changed'
      row.cmd = 'changed'
      delete row.id
      const rows = q.getTransactionCached('c1')
      assert.deepEqual(rows, expectedRows)
      rows[0].data.i = -1
      rows.pop()
    }
    assert.notEqual(q.retrieveByIDCached(1), q.retrieveByIDCached(1))
    q.close()
  })

  test('a "__proto__" key in stored data stays an own property', () => {
    const q = open()
    q.store({ cmd: 'odd', data: JSON.parse('{"__proto__":{"polluted":true},"a":[{"__proto__":1}]}') })
    for (let round = 0; round < 2; round++) {
      const row = q.retrieveByIDCached(1)
      assert.deepEqual(row, q.retrieveByID(1))
      assert.equal(Object.getPrototypeOf(row.data), Object.prototype)
      assert.equal(row.data.polluted, undefined)
      assert.deepEqual(Object.keys(row.data), ['__proto__', 'a'])
    }
    q.close()
  })

  test('with the cache disabled the reads are the same and nothing is cached or counted', () => {
    const q = open({ cache: { enabled: false, maxSize: 5, ttl: 100 } })
    q.storeBulk([ev(1), ev(2)])
    for (let round = 0; round < 2; round++) {
      const row = q.retrieveByIDCached(1)
      assert.deepEqual(row, q.retrieveByID(1))
      row.data.i = 'changed'
      assert.equal(q.retrieveByIDCached(99), null)
      assert.deepEqual(q.getTransactionCached('c0'), q.getTransaction('c0'))
    }
    q.clearCache()
    assert.deepEqual(q.getCacheStats(), {
      enabled: false, size: 0, maxSize: 5, ttl: 100, hits: 0, misses: 0, evictions: 0, expirations: 0, hitRate: 0,
    })
    q.close()
  })

  test('clearCache empties the cache and keeps the counters', () => {
    const q = open()
    q.store(ev(1))
    q.retrieveByIDCached(1)
    q.retrieveByIDCached(1)
    q.getTransactionCached('c1')
    q.clearCache()
    assert.deepEqual(counts(q), { size: 0, hits: 1, misses: 2, evictions: 0, expirations: 0 })
    assert.ok(!hit(q, () => q.retrieveByIDCached(1)))
    assert.deepEqual(q.retrieveByIDCached(1), q.retrieveByID(1))
    q.close()
  })

  test('a transaction another queue on the same file writes to is read afresh', () => {
    const dbName = tempDb()
    const mine = initQueue({ dbName })
    const theirs = initQueue({ dbName })
    mine.store(ev(1, { correlationId: 'shared' }))
    assert.equal(mine.getTransactionCached('shared').length, 1)
    theirs.store(ev(2, { correlationId: 'shared' }))
    assert.equal(mine.getTransactionCached('shared').length, 2)
    assert.deepEqual(mine.getTransactionCached('shared'), theirs.getTransaction('shared'))
    mine.close()
    theirs.close()
  })

  test('a row whose stored JSON does not parse throws as uncached and leaves no wrong entry', () => {
    const dbName = tempDb()
    const q = initQueue({ dbName, cache: { maxSize: 1 } })
    q.store(ev(1))
    sqlElsewhere(dbName, `INSERT INTO queue (datetime, cmd, data, correlation_id, metadata) VALUES (1, 'bad', '{oops', 'c1', '{}')`)
    const corrupt = { code: 'ERR_CORRUPT_ROW', id: 2 }
    assert.throws(() => q.retrieveByID(2), corrupt)
    q.retrieveByIDCached(1)
    // With maxSize 1, reading event 2 would take the slot event 1's row was kept in.
    assert.throws(() => q.retrieveByIDCached(2), corrupt)
    assert.throws(() => q.retrieveByIDCached(2), corrupt)
    assert.throws(() => q.getTransactionCached('c1'), corrupt)
    assert.deepEqual(q.retrieveByIDCached(1), q.retrieveByID(1))
    q.close()
  })

  test('the native hit fast path answers -1 to anything but a queue holding the id', () => {
    const { NativeQueue, cachedIdHit } = require('../lib/native')
    for (const args of [[], [null, 1], [undefined, 1], [1, 1], ['queue', 1], [{}, 1], [Object.create(NativeQueue.prototype), 1], [[], 1]]) {
      assert.equal(cachedIdHit(...args), -1, String(args))
    }
  })

  test('a closed queue refuses the cache methods', () => {
    const q = open()
    q.close()
    for (const call of [
      () => q.retrieveByIDCached(1),
      () => q.getTransactionCached('c'),
      () => q.clearCache(),
      () => q.getCacheStats(),
    ]) {
      assert.throws(call, { code: 'ERR_QUEUE_CLOSED' })
    }
  })
})
