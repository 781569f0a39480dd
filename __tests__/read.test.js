'use strict'
const assert = require('node:assert/strict')
const { describe, test, tempDb } = require('./helpers')
const { initQueue } = require('..')

function seeded() {
  const q = initQueue({ dbName: tempDb(), datetime: () => 7 })
  q.store({ cmd: 'root', correlationId: 'flow', data: { step: 0 } }) // 1
  q.store({ cmd: 'a', causationId: 1, data: { step: 1 } }) // 2
  q.store({ cmd: 'other', correlationId: 'elsewhere' }) // 3
  q.store({ cmd: 'b', causationId: 1, data: { step: 2 } }) // 4
  q.store({ cmd: 'c', causationId: 2 }) // 5
  return q
}

describe('reads', () => {
  test('retrieveByID returns the row or null', () => {
    const q = seeded()
    assert.equal(q.retrieveByID(2).cmd, 'a')
    assert.equal(q.retrieveByID(99), null)
    assert.equal(q.retrieveByID('4').cmd, 'b', 'a string of digits is an id, as in SQLite')
    for (const id of [0, -1, 1.5, NaN, 'x', null, undefined, {}, Infinity]) assert.equal(q.retrieveByID(id), null)
    q.close()
  })

  test('getLastRow returns the newest row, or null when empty', () => {
    const q = seeded()
    assert.equal(q.getLastRow().id, 5)
    const empty = initQueue({ dbName: ':memory:' })
    assert.equal(empty.getLastRow(), null)
    empty.close()
    q.close()
  })

  test('getTransaction returns the rows of one correlation id in id order', () => {
    const q = seeded()
    assert.deepEqual(q.getTransaction('flow').map((r) => r.id), [1, 2, 4, 5])
    assert.deepEqual(q.getTransaction('nope'), [])
    assert.deepEqual(q.getTransaction(undefined), [])
    q.close()
  })

  test('getChildEvents returns the direct children in id order', () => {
    const q = seeded()
    assert.deepEqual(q.getChildEvents(1).map((r) => r.id), [2, 4])
    assert.deepEqual(q.getChildEvents(5), [])
    q.close()
  })

  test('getEventLineage returns event, parent and children, or null', () => {
    const q = seeded()
    const lineage = q.getEventLineage(2)
    assert.equal(lineage.event.id, 2)
    assert.equal(lineage.parent.id, 1)
    assert.deepEqual(lineage.children.map((r) => r.id), [5])
    const root = q.getEventLineage(1)
    assert.equal(root.parent, null)
    assert.deepEqual(root.children.map((r) => r.id), [2, 4])
    assert.equal(q.getEventLineage(404), null)
    q.close()
  })

  test('rows have the documented shape and types', () => {
    const q = seeded()
    const row = q.retrieveByID(2)
    assert.deepEqual(Object.keys(row), ['id', 'version', 'datetime', 'user', 'ip', 'cmd', 'data', 'correlation_id', 'causation_id', 'metadata'])
    assert.equal(typeof row.causation_id, 'number')
    assert.equal(typeof row.correlation_id, 'string')
    assert.equal(q.retrieveByID(1).causation_id, null)
    q.close()
  })

  test('each read returns fresh objects: mutating one never changes a later read', () => {
    const q = seeded()
    const first = q.retrieveByID(1)
    first.data.step = 'changed'
    first.metadata.injected = true
    first.cmd = 'changed'
    assert.deepEqual(q.retrieveByID(1).data, { step: 0 })
    assert.deepEqual(q.retrieveByID(1).metadata, {})
    const tx = q.getTransaction('flow')
    tx[0].data.step = 'changed'
    tx.pop()
    assert.equal(q.getTransaction('flow').length, 4)
    assert.equal(q.getTransaction('flow')[0].data.step, 0)
    q.close()
  })

  test('the native rowById throws coded errors for anything but an open queue, an id and a function', () => {
    const { NativeQueue, rowById } = require('../lib/native')
    const make = (...values) => values
    for (const args of [[], [null, 1, make], [1, 1, make], ['queue', 1, make], [{}, 1, make], [Object.create(NativeQueue.prototype), 1, make], [[], 1, make]]) {
      assert.throws(() => rowById(...args), (err) => err instanceof Error && err.code === 'ERR_INVALID_ARG', String(args))
    }
    const native = new NativeQueue({ dbName: ':memory:', wal: false, busyTimeout: 0, indexes: {}, reset: false, cache: { enabled: false, maxSize: 1, ttl: 1 } })
    for (const args of [[native, 1], [native, 1, 'make'], [native, 1, {}]]) {
      assert.throws(() => rowById(...args), (err) => err instanceof Error && err.code === 'ERR_INVALID_ARG', String(args))
    }
    assert.equal(rowById(native, 1, make), null)
    assert.throws(() => rowById(native, 'x', make), { code: 'NumberExpected' }, 'as the #[napi] glue reports it')
    assert.throws(() => rowById(native, 1.5, make), { code: 'ERR_INVALID_OPTION' })
    native.close()
    assert.throws(() => rowById(native, 1, make), { code: 'ERR_QUEUE_CLOSED' })
  })
})
