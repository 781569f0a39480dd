'use strict'
// Turning the events callers pass into the batch payload the native core stores, and the
// stored rows back into the objects `store`/`storeBulk` return. The payload is one JSON text
// per call, an array of tuples [cmd, data, user, ip, version, correlationId, causationId,
// metadata, datetime] (see src/event.rs): one boundary crossing however many events. An event
// with `expectedVersion` or `idempotencyKey` adds both to its tuple (null where absent), and
// its call goes through the native `appendChecked`. A datetime of null repeats the one of the
// event before it (see `bulkInput` in lib/write.js).
const { randomUUID } = require('node:crypto')
const { coded, eventError, describe, reason } = require('./errors')
const { rowBuilder } = require('./rows')
const { idempotencyKeyMaxLength } = require('./native')

const CMD = 0
const DATA = 1
const USER = 2
const IP = 3
const VERSION = 4
const CORRELATION = 5
const CAUSATION = 6
const METADATA = 7
const DATETIME = 8
/** Present only on an event with stream conditions (see `toRecord`). */
const EXPECTED_VERSION = 9
const IDEMPOTENCY_KEY = 10
/** The length of a tuple without stream conditions. */
const PLAIN = DATETIME + 1
const MAX_KEY_LENGTH = idempotencyKeyMaxLength()

/**
 * Where an event came from, for error messages: `at` is its index in a `storeBulk` batch, or
 * undefined for `store`. Built only when an error is thrown.
 */
const where = (at) => (at === undefined ? 'store(event)' : `storeBulk(events)[${at}]`)
const invalid = (Ctor, at, message) => eventError(Ctor, `${where(at)}: ${message}`, at === undefined ? undefined : { index: at })

function checkText(value, field, at, nullable) {
  if (value === null && nullable) return
  if (typeof value !== 'string') {
    throw invalid(TypeError, at, `${field} must be a string${nullable ? ' or null' : ''}, got ${value === null ? 'null' : typeof value}`)
  }
  if (!value.isWellFormed()) {
    throw invalid(TypeError, at, `${field} contains a lone surrogate, which SQLite text cannot hold`)
  }
}

function checkJsonable(value, field, at) {
  const type = typeof value
  if (type === 'function' || type === 'symbol' || type === 'bigint') {
    throw invalid(TypeError, at, `${field} must be JSON data, got a ${type}`)
  }
}

/**
 * The event's fields with their defaults, each read exactly once: a getter that throws, or a
 * proxy, makes the event invalid rather than the call fail with the caller's own error.
 */
function readEvent(event, at) {
  if (event === null || typeof event !== 'object' || Array.isArray(event)) {
    throw invalid(TypeError, at, `an event must be an object, got ${event === null ? 'null' : Array.isArray(event) ? 'an array' : typeof event}`)
  }
  try {
    const {
      cmd, data = {}, user = '', ip = '', version = 1, correlationId, causationId, metadata = {}, expectedVersion, idempotencyKey,
    } = event
    return { cmd, data, user, ip, version, correlationId, causationId, metadata, expectedVersion, idempotencyKey }
  } catch (cause) {
    throw Object.assign(invalid(TypeError, at, `reading the event threw: ${reason(cause)}`), { cause })
  }
}

/**
 * The events of a `storeBulk` call as a plain array, each read exactly once: a getter that
 * throws, or a proxy (even a revoked one), makes the batch invalid rather than the call fail
 * with the caller's own error.
 */
function readBatch(events) {
  let isArray, copy, at
  try {
    isArray = Array.isArray(events)
    if (isArray) {
      copy = new Array(events.length)
      for (at = 0; at < copy.length; at++) copy[at] = events[at]
    }
  } catch (cause) {
    const which = at === undefined ? 'events' : `events[${at}]`
    throw Object.assign(eventError(TypeError, `storeBulk(events): reading ${which} threw: ${reason(cause)}`, at === undefined ? undefined : { index: at }), { cause })
  }
  if (!isArray) throw eventError(TypeError, `storeBulk(events): events must be an array, got ${events === null ? 'null' : typeof events}`)
  if (copy.length === 0) throw eventError(TypeError, 'storeBulk(events): events must not be empty')
  return copy
}

/** True when `store` must report the event through `callbacks._error` instead of storing it. */
const lacksCmd = (fields) => fields.cmd === undefined || fields.cmd === null || fields.cmd === ''

/** The datetime option's value for one event, which must be an integer. */
function timestamp(now) {
  let datetime
  try {
    datetime = now()
  } catch (cause) {
    throw Object.assign(eventError(TypeError, `the datetime option threw: ${reason(cause)}`), { cause })
  }
  if (!Number.isSafeInteger(datetime)) {
    throw eventError(TypeError, `the datetime option returned ${describe(datetime)}; it must return an integer (such as Date.now())`)
  }
  return datetime
}

/**
 * Validates the fields of one event (from `readEvent`) and returns its payload tuple. `at` is
 * its index in a batch (see `where`); `now` is the datetime option, called once for the event.
 */
function toRecord(fields, at, now) {
  const { cmd, data, user, ip, version, correlationId, causationId, metadata, expectedVersion, idempotencyKey } = fields
  if (lacksCmd(fields)) throw invalid(Error, at, 'cmd is missing')
  checkText(cmd, 'cmd', at, false)
  checkText(user, 'user', at, true)
  checkText(ip, 'ip', at, true)
  checkJsonable(data, 'data', at)
  checkJsonable(metadata, 'metadata', at)
  if (correlationId !== undefined && correlationId !== null) checkText(correlationId, 'correlationId', at, false)
  if (!Number.isSafeInteger(version) || version < 1) {
    throw invalid(TypeError, at, `version must be a positive integer, got ${describe(version)}`)
  }
  if (causationId !== undefined && causationId !== null && !Number.isSafeInteger(causationId)) {
    throw invalid(TypeError, at, `causationId must be an integer event id, got ${describe(causationId)}`)
  }
  const hasCorrelation = typeof correlationId === 'string' && correlationId !== ''
  const hasCausation = causationId !== undefined && causationId !== null
  const expects = expectedVersion !== undefined && expectedVersion !== null
  const keyed = idempotencyKey !== undefined && idempotencyKey !== null
  if (expects) {
    if (!Number.isSafeInteger(expectedVersion) || expectedVersion < 0) {
      throw invalid(TypeError, at, `expectedVersion must be an integer >= 0, got ${describe(expectedVersion)}`)
    }
    // A new random stream would make any expected version meaningless.
    if (!hasCorrelation && !hasCausation) throw invalid(TypeError, at, 'expectedVersion needs a correlationId (or a causationId to inherit one from)')
  }
  if (keyed) {
    checkText(idempotencyKey, 'idempotencyKey', at, false)
    if (idempotencyKey.length === 0 || idempotencyKey.length > MAX_KEY_LENGTH) {
      throw invalid(RangeError, at, `idempotencyKey must be 1 to ${MAX_KEY_LENGTH} characters long, got ${idempotencyKey.length}`)
    }
  }
  // Neither id given: the event starts a new transaction. Only a causation id: the core
  // looks the parent up and inherits its correlation id inside the write transaction.
  const correlation = hasCorrelation ? correlationId : hasCausation ? null : randomUUID()
  const record = [cmd, data, user, ip, version, correlation, hasCausation ? causationId : null, metadata, timestamp(now)]
  if (expects || keyed) {
    record[EXPECTED_VERSION] = expects ? expectedVersion : null
    record[IDEMPOTENCY_KEY] = keyed ? idempotencyKey : null
  }
  return record
}

/** Whether a record carries stream conditions, which only the native appendChecked and the async queue's writer honour. */
const isChecked = (record) => record.length > PLAIN

/**
 * The error of an expected version that did not hold; `conflict` as src/version.rs sends it.
 * `batch` says whether the call was a storeBulk, whose errors carry the event's index.
 */
function conflictError(conflict, batch) {
  const { correlationId, expectedVersion, actualVersion, index } = conflict
  const message = `${where(batch ? index : undefined)}: stream ${JSON.stringify(correlationId)} is at version ${actualVersion}, not the expected ${expectedVersion}; nothing was stored`
  return coded(Error, 'ERR_VERSION_CONFLICT', message, { correlationId, expectedVersion, actualVersion, ...(batch ? { index } : {}) })
}

/**
 * The payload text for validated records. JSON.stringify throws on a cycle or a BigInt deep
 * inside `data`/`metadata`; only then are the records stringified one by one to name the
 * event at fault. `batch` says whether the records came from `storeBulk`.
 */
function toPayload(records, batch) {
  try {
    return JSON.stringify(records)
  } catch (cause) {
    records.forEach((record, i) => {
      for (const [field, column] of [['data', DATA], ['metadata', METADATA]]) {
        try {
          JSON.stringify(record[column])
        } catch (err) {
          throw Object.assign(invalid(TypeError, batch ? i : undefined, `${field} cannot be stored as JSON: ${err.message}`), { cause: err })
        }
      }
    })
    throw eventError(TypeError, `the events cannot be stored as JSON: ${cause.message}`, { cause })
  }
}

/** Where each column of a stored row comes from: the record sent, the id it got, its correlation id. */
const ROW_SOURCES = {
  id: 'id',
  version: `record[${VERSION}]`,
  datetime: 'datetime',
  user: `record[${USER}]`,
  ip: `record[${IP}]`,
  cmd: `record[${CMD}]`,
  data: `record[${DATA}]`,
  correlation_id: 'correlationId',
  causation_id: `record[${CAUSATION}]`,
  metadata: `record[${METADATA}]`,
}

/**
 * The stored row, built from what was sent and the id it got: nothing is read back. The
 * datetime comes apart, as the record may send it as a repeat of the one before.
 */
const toRow = rowBuilder(['record', 'id', 'correlationId', 'datetime'], (column) => ROW_SOURCES[column])

module.exports = {
  readEvent, readBatch, lacksCmd, toRecord, toPayload, toRow, timestamp, isChecked, conflictError,
  CMD, DATA, USER, IP, VERSION, CORRELATION, CAUSATION, METADATA, DATETIME, EXPECTED_VERSION, IDEMPOTENCY_KEY,
}
