'use strict'
const assert = require('node:assert/strict')
const { describe, test, tempDb, recordingModel, recordingCallbacks } = require('./helpers')
const { initQueue, eventCallbacks } = require('..')

const open = () => initQueue({ dbName: tempDb(), datetime: () => 42 })

describe('execute', () => {
  test('migrations run from the row version up before the handler', () => {
    const q = open()
    const seen = []
    const model = {
      _queries: {},
      _migrations: { rename: [(d) => ({ ...d, v2: true }), (d) => ({ ...d, v3: true })] },
      rename(data) { seen.push(data); return 'ok' },
    }
    q.store({ cmd: 'rename', data: { n: 1 }, version: 1 }, model)
    q.store({ cmd: 'rename', data: { n: 2 }, version: 2 }, model)
    q.store({ cmd: 'rename', data: { n: 3 }, version: 3 }, model)
    assert.deepEqual(seen, [{ n: 1, v2: true, v3: true }, { n: 2, v3: true }, { n: 3 }])
    q.close()
  })

  test('the handler gets data and meta; callbacks[cmd] wins over callbacks._default; _done follows', () => {
    const q = open()
    const order = []
    const model = {
      _queries: {},
      greet(data, meta) { order.push(['greet', data, meta]); return `hi ${data.name}` },
      _done(row, res) { order.push(['_done', row.id, res]) },
    }
    const callbacks = {
      greet(res, row) { order.push(['cb.greet', res, row.cmd]) },
      _default() { order.push(['cb._default']) },
    }
    const result = q.store({ cmd: 'greet', data: { name: 'ann' }, user: 'u', ip: 'i', correlationId: 'c', metadata: { m: 1 } }, model, callbacks)
    assert.equal(result, 'hi ann')
    assert.deepEqual(order, [
      ['greet', { name: 'ann' }, { datetime: 42, user: 'u', ip: 'i', cmd: 'greet', id: 1, version: 1, correlationId: 'c', causationId: null, metadata: { m: 1 } }],
      ['cb.greet', 'hi ann', 'greet'],
      ['_done', 1, 'hi ann'],
    ])
    q.close()
  })

  test('a cmd listed in _queries is answered by model.get', () => {
    const q = open()
    const model = { _queries: { lookup: true }, get(cmd, data) { return [cmd, data.key] } }
    assert.deepEqual(q.store({ cmd: 'lookup', data: { key: 'k' } }, model), ['lookup', 'k'])
    q.close()
  })

  test('a cmd with no handler goes to _default; Object.prototype names are not handlers', () => {
    const q = open()
    const { model, calls } = recordingModel()
    assert.equal(q.store({ cmd: 'unknown' }, model), 'default')
    assert.equal(q.store({ cmd: 'toString' }, model), 'default')
    assert.equal(q.store({ cmd: 'constructor' }, model), 'default')
    assert.equal(calls.filter(([name]) => name === '_default').length, 3)
    q.close()
  })

  test('a throw calls callbacks._error and model._error with the row, and returns undefined', () => {
    const q = open()
    const boom = new Error('boom')
    const { model, calls } = recordingModel({ fail() { throw boom } })
    const { callbacks, calls: cbCalls } = recordingCallbacks()
    assert.equal(q.store({ cmd: 'fail', data: { x: 1 }, user: 'ann', ip: '1.2.3.4' }, model, callbacks), undefined)
    const [[name, errObj]] = cbCalls
    assert.equal(name, '_error')
    assert.equal(errObj.error, boom)
    assert.match(errObj.msg, /boom/)
    assert.equal(errObj.cmd, 'fail')
    assert.equal(errObj.id, 1)
    assert.equal(errObj.user, 'ann')
    assert.deepEqual(errObj.data, { x: 1 })
    assert.ok('res' in errObj)
    assert.deepEqual(calls.filter(([n]) => n === '_error').map(([, e]) => e), [errObj])
    assert.equal(q.retrieveByID(1).cmd, 'fail', 'the event itself stays stored')
    q.close()
  })

  test('a throwing callback is reported the same way', () => {
    const q = open()
    const { model, calls } = recordingModel({ ok() { return 1 } })
    const callbacks = { _default() {}, ok() { throw new Error('callback broke') }, _error() {} }
    assert.equal(q.store({ cmd: 'ok' }, model, callbacks), undefined)
    assert.match(calls.find(([n]) => n === '_error')[1].msg, /callback broke/)
    q.close()
  })

  test('a missing model executes nothing and reports nothing; a non-row is ERR_INVALID_ARG', () => {
    const q = open()
    const row = q.store({ cmd: 'x' })
    const { callbacks, calls } = recordingCallbacks()
    assert.equal(q.execute(row, undefined, callbacks), undefined)
    assert.deepEqual(calls, [['_default', undefined, 1]])
    const { throwsCode } = require('./helpers')
    throwsCode(() => q.execute(null, {}, callbacks), TypeError, 'ERR_INVALID_ARG')
    q.cycleThrough(undefined, () => {})
    q.close()
  })

  test('queue.execute runs a row directly', () => {
    const q = open()
    const row = q.store({ cmd: 'x', data: { n: 2 } })
    assert.equal(q.execute(row, { x: (d) => d.n + 1 }, eventCallbacks.void), 3)
    q.close()
  })
})

describe('eventCallbacks', () => {
  test('has stub, void, error and done as in EventLite', () => {
    for (const name of ['stub', 'void', 'error']) {
      assert.equal(typeof eventCallbacks[name]._error, 'function', name)
      assert.equal(typeof eventCallbacks[name]._default, 'function', name)
    }
    assert.equal(typeof eventCallbacks.done, 'function')
    assert.equal(eventCallbacks.done(), undefined)
  })

  test('void swallows, error logs only errors, stub logs both', () => {
    const logged = []
    const { log, error } = console
    console.log = (...args) => logged.push(['log', ...args])
    console.error = (...args) => logged.push(['error', ...args])
    try {
      const row = { id: 1, cmd: 'c', data: {} }
      const errObj = { msg: 'failed' }
      eventCallbacks.void._default('r', row)
      eventCallbacks.void._error(errObj)
      assert.equal(logged.length, 0)
      eventCallbacks.error._default('r', row)
      eventCallbacks.error._error(errObj)
      assert.equal(logged.length, 1)
      eventCallbacks.stub._default('r', row)
      eventCallbacks.stub._error(errObj)
      assert.equal(logged.length, 3)
    } finally {
      console.log = log
      console.error = error
    }
  })
})

describe('cycleThrough', () => {
  test('replays every event in id order through the model, then calls doneCB', () => {
    const q = open()
    q.storeBulk(Array.from({ length: 2345 }, (_, i) => ({ cmd: 'add', data: { n: i } })))
    const ids = []
    let total = 0
    const model = { _queries: {}, add(data, meta) { ids.push(meta.id); total += data.n } }
    let done = 0
    q.cycleThrough(model, () => { done++ })
    assert.equal(done, 1)
    assert.equal(ids.length, 2345)
    assert.ok(ids.every((id, i) => id === i + 1))
    assert.equal(total, (2344 * 2345) / 2)
    q.close()
  })

  test('start and stop bound the replay: id >= start and id < stop', () => {
    const q = open()
    q.storeBulk(Array.from({ length: 20 }, () => ({ cmd: 'x' })))
    const ids = []
    const model = { x(_d, meta) { ids.push(meta.id) } }
    q.cycleThrough(model, undefined, eventCallbacks.void, { start: 5, stop: 9 })
    assert.deepEqual(ids, [5, 6, 7, 8])
    ids.length = 0
    q.cycleThrough(model, undefined, undefined, { start: 18 })
    assert.deepEqual(ids, [18, 19, 20])
    q.close()
  })

  test('whileCB receives each result and errors, and replay goes on after an error', () => {
    const q = open()
    q.storeBulk([{ cmd: 'ok' }, { cmd: 'bad' }, { cmd: 'ok' }])
    const { callbacks, calls } = recordingCallbacks()
    const model = { ok: () => 'fine', bad() { throw new Error('nope') } }
    q.cycleThrough(model, () => {}, callbacks)
    assert.deepEqual(calls.map(([name]) => name), ['_default', '_error', '_default'])
    q.close()
  })

  test('replaying rebuilds the same state the live run built', () => {
    const q = open()
    const makeModel = () => {
      const state = { balance: 0 }
      return { state, _queries: {}, deposit(d) { state.balance += d.amount }, withdraw(d) { state.balance -= d.amount } }
    }
    const live = makeModel()
    q.store({ cmd: 'deposit', data: { amount: 100 } }, live)
    q.storeBulk([{ cmd: 'withdraw', data: { amount: 30 } }, { cmd: 'deposit', data: { amount: 5 } }], live)
    const replayed = makeModel()
    q.cycleThrough(replayed, () => {})
    assert.deepEqual(replayed.state, live.state)
    assert.equal(replayed.state.balance, 75)
    q.close()
  })
})
