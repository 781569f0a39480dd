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
    default: {
      const time = dateTime(value)
      if (time === undefined) return 'an object'
      return Number.isNaN(time) ? 'an invalid Date' : `the Date ${new Date(time).toISOString()}`
    }
  }
}

/** The time of a real Date, undefined for anything else (a proxy or a look-alike included). */
function dateTime(value) {
  try {
    return Date.prototype.getTime.call(value)
  } catch {
    return undefined
  }
}

/** A string as it is, anything else described: for messages that quote the caller's fields. */
const shown = (value) => (typeof value === 'string' ? value : describe(value))

/** A field that was given: neither absent nor empty. */
const given = (value) => value !== undefined && value !== null && value !== ''

/**
 * Who sent an event, for messages: the user and the ip when given, without a blank where one
 * was left empty (both default to '').
 */
function sender(user, ip) {
  const who = given(user) ? shown(user) : 'an unnamed user'
  return given(ip) ? `${who} at ${shown(ip)}` : who
}

/**
 * Why a caller's function failed, for messages: the message of what it threw, or what it
 * threw when that has no message. Never throws, whatever was thrown.
 */
function reason(thrown) {
  try {
    if (typeof thrown === 'string' && thrown !== '') return thrown
    if (thrown !== null && typeof thrown === 'object') {
      const { message, name } = thrown
      if (typeof message === 'string' && message !== '') return message
      if (typeof name === 'string' && name !== '') return `${name} with an empty message`
    }
  } catch {
    // A getter that throws: the value is described as any other.
  }
  return describe(thrown)
}

module.exports = { coded, describe, dateTime, shown, given, sender, reason, optionError, eventError, closedError }
