'use strict'
const assert = require('node:assert/strict')
const { describe, test, tempDb, openRaw, recordingModel, recordingCallbacks, throwsCode } = require('./helpers')
const { initQueue, eventCallbacks } = require('..')

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

function open(extra = {}) {
  return initQueue({ dbName: tempDb(), datetime: () => 1700000000000, ...extra })
}

describe('store', () => {
  test('without a model it returns the stored row, with EventLite defaults', () => {
    const q = open()
    const row = q.store({ cmd: 'created' })
    assert.equal(row.id, 1)
    assert.equal(row.cmd, 'created')
    assert.deepEqual(row.data, {})
    assert.deepEqual(row.metadata, {})
    assert.equal(row.user, '')
    assert.equal(row.ip, '')
    assert.equal(row.version, 1)
    assert.equal(row.datetime, 1700000000000)
    assert.equal(row.causation_id, null)
    assert.match(row.correlation_id, UUID_V4)
    assert.deepEqual(q.retrieveByID(1), row, 'what store returns is what a read returns')
    q.close()
  })

  test('every field given is stored as given', () => {
    const q = open()
    const event = {
      cmd: 'paid', data: { amount: 12.5, tags: ['a', 'b'], nested: { deep: [null, true] } },
      user: 'ann', ip: '10.0.0.1', version: 3, correlationId: 'order-7', causationId: 99, metadata: { source: 'web' },
    }
    const row = q.store(event)
    assert.deepEqual(q.retrieveByID(row.id), {
      id: 1, version: 3, datetime: 1700000000000, user: 'ann', ip: '10.0.0.1', cmd: 'paid',
      data: event.data, correlation_id: 'order-7', causation_id: 99, metadata: { source: 'web' },
    })
    q.close()
  })

  test('each event without ids starts a new correlation id', () => {
    const q = open()
    const a = q.store({ cmd: 'a' })
    const b = q.store({ cmd: 'b' })
    assert.match(a.correlation_id, UUID_V4)
    assert.notEqual(a.correlation_id, b.correlation_id)
    q.close()
  })

  test('a causationId without a correlationId inherits the parent correlation id', () => {
    const q = open()
    const parent = q.store({ cmd: 'parent', correlationId: 'flow-1' })
    const child = q.store({ cmd: 'child', causationId: parent.id })
    assert.equal(child.correlation_id, 'flow-1')
    assert.equal(child.causation_id, parent.id)
    assert.equal(q.retrieveByID(child.id).correlation_id, 'flow-1')
    const own = q.store({ cmd: 'own', causationId: parent.id, correlationId: 'other' })
    assert.equal(own.correlation_id, 'other', 'an explicit correlation id wins')
    q.close()
  })

  test('a causationId whose parent does not exist leaves the correlation id null', () => {
    const q = open()
    const orphan = q.store({ cmd: 'orphan', causationId: 404 })
    assert.equal(orphan.correlation_id, null)
    assert.equal(q.retrieveByID(orphan.id).correlation_id, null)
    q.close()
  })

  test('a missing or empty cmd calls callbacks._error, returns undefined and stores nothing', () => {
    const q = open()
    const { callbacks, calls } = recordingCallbacks()
    assert.equal(q.store({ data: { x: 1 }, user: 'bob', ip: '1.1.1.1' }, undefined, callbacks), undefined)
    assert.equal(q.store({ cmd: '' }, undefined, callbacks), undefined)
    assert.equal(calls.length, 2)
    const [, errObj] = calls[0]
    assert.equal(errObj.priority, 2)
    assert.equal(errObj.user, 'bob')
    assert.equal(errObj.ip, '1.1.1.1')
    assert.deepEqual(errObj.data, { x: 1 })
    assert.equal(errObj.cmd, undefined)
    assert.equal(typeof errObj.msg, 'string')
    assert.equal(q.getLastRow(), null)
    q.close()
  })

  test('invalid fields throw TypeError ERR_INVALID_EVENT and store nothing', () => {
    const q = open()
    const cycle = { name: 'loop' }
    cycle.self = cycle
    const bad = [
      { cmd: 42 },
      { cmd: 'x', version: 0 },
      { cmd: 'x', version: 1.5 },
      { cmd: 'x', version: '2' },
      { cmd: 'x', causationId: 'seven' },
      { cmd: 'x', causationId: 1.5 },
      { cmd: 'x', data: cycle },
      { cmd: 'x', data: { n: 10n } },
      { cmd: 'x', metadata: cycle },
      { cmd: 'x', data: () => 1 },
      { cmd: 'x', data: Symbol('s') },
      { cmd: 'x', user: 7 },
      { cmd: 'x', ip: {} },
      { cmd: 'x', correlationId: 5 },
      { cmd: 'x\uD800' },
    ]
    for (const event of bad) throwsCode(() => q.store(event), TypeError, 'ERR_INVALID_EVENT')
    for (const event of [null, 5, 'cmd', []]) throwsCode(() => q.store(event), TypeError, 'ERR_INVALID_EVENT')
    assert.equal(q.getLastRow(), null)
    assert.equal(q.store({ cmd: 'fine' }).id, 1, 'the queue still works')
    q.close()
  })

  test('with a model the row is executed and store returns the handler result', () => {
    const q = open()
    const { model, calls } = recordingModel({ add(data) { return data.a + data.b } })
    const { callbacks, calls: cbCalls } = recordingCallbacks()
    assert.equal(q.store({ cmd: 'add', data: { a: 2, b: 3 } }, model, callbacks), 5)
    assert.deepEqual(calls, [['_done', 1, 5]])
    assert.deepEqual(cbCalls, [['_default', 5, 1]])
    q.close()
  })

  test('strings round-trip exactly through every kind of read: unicode, quotes, control characters and NUL', async () => {
    const q = open({ cache: { enabled: true } })
    const text = 'é ü 😀 "quoted" \\ back\nline\ttab\u0000nul\u2028sep 中文'
    // Plain ASCII rows around it: reads that return many rows carry both kinds in one text.
    q.store({ cmd: 'plain', correlationId: text })
    const row = q.store({ cmd: text, user: text, ip: text, correlationId: text, data: { text }, metadata: { text } })
    q.store({ cmd: 'plain', correlationId: text })
    const streamed = []
    for await (const batch of q.streamEvents()) streamed.push(...batch)
    const reads = {
      retrieveByID: q.retrieveByID(row.id),
      retrieveByIDCached: q.retrieveByIDCached(row.id),
      getTransaction: q.getTransaction(text)[1],
      getTransactionCached: q.getTransactionCached(text)[1],
      page: q.getByCorrelationIdPaginated(text).events[1],
      stream: streamed[1],
    }
    for (const [read, back] of Object.entries(reads)) {
      for (const field of ['cmd', 'user', 'ip', 'correlation_id']) assert.equal(back[field], text, `${read} ${field}`)
      assert.equal(back.data.text, text, read)
      assert.equal(back.metadata.text, text, read)
    }
    q.close()
  })

  test('data of any JSON kind is stored, with null user and ip allowed', () => {
    const q = open()
    for (const data of [null, 0, 'text', [1, [2]], true, { a: { b: { c: [] } } }]) {
      const row = q.store({ cmd: 'any', data, user: null, ip: null })
      const back = q.retrieveByID(row.id)
      assert.deepEqual(back.data, data)
      assert.equal(back.user, null)
      assert.equal(back.ip, null)
    }
    q.close()
  })

  test('data and metadata are stored as JSON text in the file', () => {
    const file = tempDb()
    const q = initQueue({ dbName: file })
    q.store({ cmd: 'x', data: { b: 1, a: [true] }, metadata: { m: 'v' } })
    q.close()
    const raw = openRaw(file)
    const row = raw.get('SELECT data, metadata, typeof(data) AS t FROM queue')
    assert.equal(row.data, '{"b":1,"a":[true]}')
    assert.equal(row.metadata, '{"m":"v"}')
    assert.equal(row.t, 'text')
    raw.close()
  })
})

describe('storeBulk', () => {
  test('stores every event in one call with consecutive ids, returning rows and null results', () => {
    const q = open()
    const out = q.storeBulk([{ cmd: 'a', data: { n: 1 } }, { cmd: 'b', correlationId: 'c' }, { cmd: 'c' }])
    assert.deepEqual(out.map((r) => r.row.id), [1, 2, 3])
    assert.deepEqual(out.map((r) => r.result), [null, null, null])
    assert.deepEqual(out[0].row, q.retrieveByID(1))
    assert.equal(out[1].row.correlation_id, 'c')
    assert.match(out[2].row.correlation_id, UUID_V4)
    q.close()
  })

  test('with a model each row is executed after the commit, in order', () => {
    const q = open()
    const seen = []
    const model = {
      _queries: {}, _migrations: {}, _done() {}, _error() {},
      count(data, meta) {
        // Executed after the commit: every event of the batch is already readable.
        seen.push([meta.id, q.getLastRow().id])
        return data.n * 10
      },
    }
    const out = q.storeBulk([{ cmd: 'count', data: { n: 1 } }, { cmd: 'count', data: { n: 2 } }], model, eventCallbacks.void)
    assert.deepEqual(out.map((r) => r.result), [10, 20])
    assert.deepEqual(seen, [[1, 2], [2, 2]])
    q.close()
  })

  test('an invalid event anywhere stores nothing and names its index', () => {
    const q = open()
    q.store({ cmd: 'before' })
    const events = Array.from({ length: 100 }, (_, i) => ({ cmd: 'ok', data: { i } }))
    events[73] = { data: { no: 'cmd' } }
    const missing = throwsCode(() => q.storeBulk(events), Error, 'ERR_INVALID_EVENT')
    assert.equal(missing.index, 73)
    const cycle = {}
    cycle.cycle = cycle
    events[73] = { cmd: 'ok', data: cycle }
    const circular = throwsCode(() => q.storeBulk(events), TypeError, 'ERR_INVALID_EVENT')
    assert.equal(circular.index, 73)
    events[73] = { cmd: 'ok', version: -1 }
    assert.equal(throwsCode(() => q.storeBulk(events), TypeError, 'ERR_INVALID_EVENT').index, 73)
    assert.equal(q.getLastRow().cmd, 'before')
    assert.equal(q.getTransaction('nothing').length, 0)
    q.close()
  })

  test('not an array, or empty, is a TypeError', () => {
    const q = open()
    for (const arg of [undefined, null, {}, 'events', { length: 1, 0: { cmd: 'x' } }, []]) {
      throwsCode(() => q.storeBulk(arg), TypeError, 'ERR_INVALID_EVENT')
    }
    q.close()
  })

  test('children inherit correlation ids from parents in the database and earlier in the batch', () => {
    const q = open()
    q.store({ cmd: 'root', correlationId: 'stored-flow' })
    // 40 events: more than one 32-row insert chunk, with inheriting events on both sides of it.
    const events = Array.from({ length: 40 }, (_, i) => ({ cmd: 'e', correlationId: `own-${i}` }))
    events[0] = { cmd: 'child-of-stored', causationId: 1 }
    events[35] = { cmd: 'child-of-batch', causationId: 3 } // id 3 is events[1]
    const out = q.storeBulk(events)
    assert.equal(out[0].row.correlation_id, 'stored-flow')
    assert.equal(out[35].row.correlation_id, 'own-1')
    for (const { row } of out) assert.deepEqual(q.retrieveByID(row.id), row)
    q.close()
  })

  test('large batches keep ids, order and content', () => {
    const q = open()
    const events = Array.from({ length: 2500 }, (_, i) => ({ cmd: 'n', data: { i }, correlationId: `c${i % 7}` }))
    const out = q.storeBulk(events)
    assert.equal(out.length, 2500)
    assert.equal(out[2499].row.id, 2500)
    assert.equal(q.getTransaction('c3').length, Math.ceil((2500 - 3) / 7))
    assert.deepEqual(q.retrieveByID(1234).data, { i: 1233 })
    q.close()
  })
})

describe('storeWithContext', () => {
  test('context ids win, parentEventId means causationId, metadata objects merge', () => {
    const q = open()
    const parent = q.store({ cmd: 'parent', correlationId: 'ctx-flow' })
    const row = q.storeWithContext(
      { cmd: 'child', correlationId: 'event-own', metadata: { a: 1, shared: 'event' } },
      { correlationId: 'ctx-flow', parentEventId: parent.id, metadata: { b: 2, shared: 'context' } },
    )
    assert.equal(row.correlation_id, 'ctx-flow')
    assert.equal(row.causation_id, parent.id)
    assert.deepEqual(row.metadata, { a: 1, shared: 'context', b: 2 })
    const inherited = q.storeWithContext({ cmd: 'grandchild' }, { causationId: row.id })
    assert.equal(inherited.correlation_id, 'ctx-flow')
    assert.equal(inherited.causation_id, row.id)
    q.close()
  })

  test('passes model and callbacks through', () => {
    const q = open()
    const { model } = recordingModel({ double(data) { return data.n * 2 } })
    assert.equal(q.storeWithContext({ cmd: 'double', data: { n: 4 } }, {}, model), 8)
    q.close()
  })
})
