'use strict'
// Validation of openQueue's options for PostgreSQL (`{ url }`), before anything reaches the
// native core: as lib/options.js does for SQLite, a wrong type is a TypeError and a value out of
// range a RangeError, both with code ERR_INVALID_OPTION. The defaults and limits come from the
// core (src/pg/config.rs).
const { optionError, describe } = require('./errors')
const { pgDefaults } = require('./native')
const { readOptions, checkInteger, readIndexes, readCache, readDatetime } = require('./options')

const PG = Object.freeze(pgDefaults())
const OPTION_KEYS = ['url', 'schema', 'poolSize', 'connectTimeout', 'indexes', 'cache', 'datetime']
/** SQLite's options, which mean nothing on a server: refused by name rather than ignored. */
const SQLITE_ONLY = ['dbName', 'WAL', 'synchronous', 'busyTimeout', 'reset', 'risky']
/** The longest connect timeout, in milliseconds: what the core's 32-bit field holds. */
const MAX_CONNECT_TIMEOUT = 2 ** 32 - 1

/** Whether `options` asks for PostgreSQL: it has a `url`. Never throws (readOptions reports a bad object). */
function isPostgres(options) {
  try {
    return options !== null && typeof options === 'object' && options.url !== undefined
  } catch {
    return false
  }
}

/** Returns the native open options and the settings the JavaScript layer keeps. */
function resolvePgOptions(given) {
  const options = readOptions(given, [...OPTION_KEYS, ...SQLITE_ONLY], '')
  for (const key of SQLITE_ONLY) {
    if (options[key] !== undefined) {
      throw optionError(TypeError, `${key} means nothing on PostgreSQL (it is an option of the SQLite file); remove it, or open the file with dbName instead of url`)
    }
  }
  const { url } = options
  if (typeof url !== 'string') throw optionError(TypeError, `url must be a string, got ${describe(url)}`)
  if (url === '') throw optionError(RangeError, 'url must be a PostgreSQL connection URL (postgres://user:pass@host:port/db), got an empty string')

  const schema = options.schema === undefined ? PG.schema : options.schema
  if (typeof schema !== 'string') throw optionError(TypeError, `schema must be a string, got ${describe(schema)}`)
  const bytes = Buffer.byteLength(schema)
  if (bytes === 0 || bytes > PG.maxSchemaLength || schema.includes('\0')) {
    throw optionError(RangeError, `schema must be a name of 1 to ${PG.maxSchemaLength} bytes without NUL characters, got ${describe(schema)}`)
  }

  const poolSize = options.poolSize === undefined ? PG.poolSize : checkInteger(options.poolSize, 'poolSize', 1, PG.maxPoolSize)
  const connectTimeout = options.connectTimeout === undefined ? PG.connectTimeout : checkInteger(options.connectTimeout, 'connectTimeout', 1, MAX_CONNECT_TIMEOUT)

  return {
    open: { url, schema, poolSize, connectTimeout, indexes: readIndexes(options.indexes) },
    cache: readCache(options.cache),
    datetime: readDatetime(options.datetime),
  }
}

module.exports = { isPostgres, resolvePgOptions }
