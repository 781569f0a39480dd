'use strict'
// Validation of initQueue's options, before anything reaches the native core: a wrong type is
// a TypeError, a value out of range a RangeError, both naming the option, with code
// ERR_INVALID_OPTION.
const { optionError, describe, reason } = require('./errors')
const { indexKeys } = require('./native')
const { defaults: DEFAULTS, synchronous: SYNCHRONOUS, maxCacheSize, maxBusyTimeout } = require('./constants')

const INDEX_KEYS = indexKeys()
const OPTION_KEYS = [
  'dbName', 'WAL', 'synchronous', 'busyTimeout', 'indexes', 'cache', 'datetime', 'reset', 'risky',
  'init', 'hash',
]
const CACHE_KEYS = Object.keys(DEFAULTS.cache)

const isPlainObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v)

/**
 * A plain copy of an options object, each of its own keys checked against `allowed` and read
 * once. `prefix` names the object in messages ('' for the top level, 'cache.' for a nested
 * one). A getter that throws, or a proxy, is a bad option rather than an escape of the
 * caller's own error.
 */
function readOptions(value, allowed, prefix) {
  const name = prefix ? prefix.slice(0, -1) : 'options'
  if (!isPlainObject(value)) throw optionError(TypeError, `${name} must be an object, got ${describe(value)}`)
  let copy
  try {
    copy = { ...value }
  } catch (cause) {
    throw Object.assign(optionError(TypeError, `reading ${name} threw: ${reason(cause)}`), { cause })
  }
  for (const key of Object.keys(copy)) {
    if (!allowed.includes(key)) {
      throw optionError(TypeError, `unknown option ${key === '' ? `${prefix}'' (an empty name)` : prefix + key}; known: ${allowed.join(', ')}`)
    }
  }
  return copy
}

function checkBoolean(value, name) {
  if (typeof value !== 'boolean') throw optionError(TypeError, `${name} must be a boolean, got ${describe(value)}`)
  return value
}

function checkInteger(value, name, min, max) {
  if (typeof value !== 'number') throw optionError(TypeError, `${name} must be a number, got ${describe(value)}`)
  if (!Number.isInteger(value) || value < min || value > max) {
    throw optionError(RangeError, `${name} must be an integer from ${min} to ${max}, got ${value}`)
  }
  return value
}

/** Returns the native open options and the settings the JavaScript layer keeps. */
function resolveOptions(given) {
  const options = given === undefined ? {} : readOptions(given, OPTION_KEYS, '')

  const dbName = options.dbName === undefined ? DEFAULTS.dbName : options.dbName
  if (typeof dbName !== 'string') throw optionError(TypeError, `dbName must be a string, got ${describe(dbName)}`)
  if (dbName === '' || dbName.includes('\0')) {
    throw optionError(RangeError, 'dbName must be a non-empty path without NUL characters')
  }

  const wal = options.WAL === undefined ? DEFAULTS.wal : checkBoolean(options.WAL, 'WAL')

  let synchronous = null
  if (options.synchronous !== undefined) {
    if (typeof options.synchronous !== 'string') {
      throw optionError(TypeError, `synchronous must be a string, got ${describe(options.synchronous)}`)
    }
    synchronous = options.synchronous.toUpperCase()
    if (!SYNCHRONOUS.includes(synchronous)) {
      throw optionError(RangeError, `synchronous must be one of ${SYNCHRONOUS.join(', ')}, got ${JSON.stringify(options.synchronous)}`)
    }
  }

  const busyTimeout = options.busyTimeout === undefined ? DEFAULTS.busyTimeout : checkInteger(options.busyTimeout, 'busyTimeout', 0, maxBusyTimeout)

  const indexes = {}
  if (options.indexes !== undefined) {
    for (const [key, value] of Object.entries(readOptions(options.indexes, INDEX_KEYS, 'indexes.'))) {
      if (value !== undefined) indexes[key] = checkBoolean(value, `indexes.${key}`)
    }
  }

  const cache = { ...DEFAULTS.cache }
  if (options.cache !== undefined) {
    const given = readOptions(options.cache, CACHE_KEYS, 'cache.')
    if (given.enabled !== undefined) cache.enabled = checkBoolean(given.enabled, 'cache.enabled')
    if (given.maxSize !== undefined) cache.maxSize = checkInteger(given.maxSize, 'cache.maxSize', 1, maxCacheSize)
    if (given.ttl !== undefined) cache.ttl = checkInteger(given.ttl, 'cache.ttl', 1, Number.MAX_SAFE_INTEGER)
  }

  const datetime = options.datetime === undefined ? Date.now : options.datetime
  if (typeof datetime !== 'function') throw optionError(TypeError, `datetime must be a function returning a number, got ${describe(datetime)}`)

  const reset = options.reset === undefined ? DEFAULTS.reset : checkBoolean(options.reset, 'reset')
  const risky = options.risky === undefined ? false : checkBoolean(options.risky, 'risky')

  return {
    open: { dbName, wal, synchronous: synchronous ?? undefined, busyTimeout, indexes, reset, cache },
    datetime,
    risky,
  }
}

module.exports = { resolveOptions, INDEX_KEYS, readOptions, checkBoolean, checkInteger }
