'use strict'
// Errors thrown by the JavaScript layer carry the same stable `code` property as those thrown
// by the native core, so callers branch on one field whichever side caught the problem.

function coded(Ctor, code, message, extra) {
  const err = new Ctor(message)
  err.code = code
  if (extra) Object.assign(err, extra)
  return err
}

const optionError = (Ctor, message) => coded(Ctor, 'ERR_INVALID_OPTION', message)
const eventError = (Ctor, message, extra) => coded(Ctor, 'ERR_INVALID_EVENT', message, extra)
const closedError = () => coded(Error, 'ERR_QUEUE_CLOSED', 'the queue is closed; open a new one with initQueue()')

/**
 * A value as an error message shows it. Never throws, whatever the value: String() does, on a
 * symbol inside an array, or an object whose toString throws.
 */
function describe(value) {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  switch (typeof value) {
    case 'string': return `the string ${JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value)}`
    case 'number': case 'boolean': case 'undefined': return String(value)
    case 'bigint': return `${value}n`
    case 'symbol': return value.toString()
    case 'function': return 'a function'
    default: return 'an object'
  }
}

/** A string as it is, anything else described: for messages that quote the caller's fields. */
const shown = (value) => (typeof value === 'string' ? value : describe(value))

module.exports = { coded, describe, shown, optionError, eventError, closedError }
