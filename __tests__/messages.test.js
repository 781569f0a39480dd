'use strict'
// Error messages read as sentences whatever the caller left empty: no blank where an empty
// user, ip, cmd, option name or error message would have gone, and a Date named as a Date.
const assert = require('node:assert/strict')
const { describe, test, throwsCode } = require('./helpers')
const { initQueue } = require('..')

/** A message with no hole: no doubled or dangling space, and nothing missing after a colon. */
function assertNoBlank(message) {
  assert.equal(typeof message, 'string')
  assert.doesNotMatch(message, /\s\s|^\s|\s$|:\s*(;|$)| at (?:[;:]|$)/, `a blank in ${JSON.stringify(message)}`)
}

/** The `msg` of every `callbacks._error` call while `fn(callbacks)` runs. */
function reported(fn) {
  const messages = []
  fn({ _error: (errObj) => messages.push(errObj.msg), _default() {} })
  return messages
}

describe('error messages', () => {
  test("an event with no cmd is reported with EventLite's fixed message, whatever the user or ip", () => {
    const q = initQueue({ dbName: ':memory:' })
    const messages = reported((callbacks) => {
      q.store({ data: {} }, null, callbacks)
      q.store({ user: 'ann', data: {} }, null, callbacks)
      q.store({ ip: '10.0.0.1', cmd: '' }, null, callbacks)
    })
    q.close()
    assert.deepEqual(messages, ['No command given; aborting', 'No command given; aborting', 'No command given; aborting'])
    messages.forEach(assertNoBlank)
  })

  test('a model that throws is reported with what it threw, even with no message', () => {
    const q = initQueue({ dbName: ':memory:' })
    const throwing = (value) => ({ fail() { throw value } })
    const messages = reported((callbacks) => {
      q.store({ cmd: 'fail' }, throwing(new Error('')), callbacks)
      q.store({ cmd: 'fail' }, throwing(new RangeError('out of range')), callbacks)
      q.store({ cmd: 'fail', user: 'ann' }, throwing('a plain string'), callbacks)
      q.store({ cmd: 'fail' }, throwing(undefined), callbacks)
      q.store({ cmd: 'fail' }, throwing(''), callbacks)
      q.execute({ id: 1, cmd: '', data: {} }, { _default() { throw new Error('no cmd here') } }, callbacks)
    })
    q.close()
    assert.equal(messages.length, 6)
    messages.forEach(assertNoBlank)
    assert.match(messages[0], /initiated fail that led to an error: Error with an empty message$/)
    assert.match(messages[1], /: out of range$/)
    assert.match(messages[2], /^ann initiated fail .*: a plain string$/)
    assert.match(messages[3], /: undefined$/)
    assert.match(messages[4], /: the string ""$/)
    assert.match(messages[5], /initiated an event without a cmd that led to an error: no cmd here$/)
  })

  test('an invalid Date given as a time bound is called an invalid Date', () => {
    const q = initQueue({ dbName: ':memory:' })
    try {
      const err = throwsCode(() => q.getEventsInTimeRangePaginated(new Date('not a date'), Date.now()), TypeError, 'ERR_INVALID_ARG')
      assert.match(err.message, /startTime .* got an invalid Date$/)
      const end = throwsCode(() => q.getEventsInTimeRangePaginated(0, new Date(NaN)), TypeError, 'ERR_INVALID_ARG')
      assert.match(end.message, /endTime .* got an invalid Date$/)
      // Something that only looks like a Date is refused the same way, not with a raw TypeError.
      const proxy = throwsCode(() => q.getEventsInTimeRangePaginated(new Proxy(new Date(), {}), 1), TypeError, 'ERR_INVALID_ARG')
      assert.match(proxy.message, /got an object$/)
      assert.equal(q.getEventsInTimeRangePaginated(new Date(0), new Date(8.64e15)).events.length, 0)
    } finally {
      q.close()
    }
  })

  test('a valid Date where an integer is expected is named with its time', () => {
    const q = initQueue({ dbName: ':memory:', datetime: () => new Date(0) })
    try {
      const err = throwsCode(() => q.store({ cmd: 'x' }), TypeError, 'ERR_INVALID_EVENT')
      assert.match(err.message, /returned the Date 1970-01-01T00:00:00\.000Z;/)
    } finally {
      q.close()
    }
  })

  test('an option with an empty name, and getters or clocks that throw without a message, leave no blank', () => {
    const top = throwsCode(() => initQueue({ dbName: ':memory:', '': 1 }), TypeError, 'ERR_INVALID_OPTION')
    const nested = throwsCode(() => initQueue({ dbName: ':memory:', cache: { '': 1 } }), TypeError, 'ERR_INVALID_OPTION')
    const getter = throwsCode(() => initQueue({ get dbName() { throw new Error('') } }), TypeError, 'ERR_INVALID_OPTION')
    const q = initQueue({ dbName: ':memory:', datetime: () => { throw new TypeError('') } })
    const clock = throwsCode(() => q.store({ cmd: 'x' }), TypeError, 'ERR_INVALID_EVENT')
    const event = throwsCode(() => q.store({ get cmd() { throw 'nope' } }), TypeError, 'ERR_INVALID_EVENT')
    const context = throwsCode(() => q.storeWithContext({ cmd: 'x' }, { get correlationId() { throw new Error('') } }), TypeError, 'ERR_INVALID_EVENT')
    q.close()
    for (const err of [top, nested, getter, clock, event, context]) assertNoBlank(err.message)
    assert.match(top.message, /unknown option '' \(an empty name\)/)
    assert.match(nested.message, /unknown option cache\.'' \(an empty name\)/)
    assert.match(clock.message, /threw: TypeError with an empty message$/)
    assert.match(event.message, /threw: nope$/)
  })
})
