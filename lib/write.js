'use strict'
// What the synchronous queue (lib/queue.js) and the async one (lib/async-queue.js) share of a
// write: the caller's arguments turned into the payload the core stores, validated before
// anything is sent, and the stored records turned back into the rows and results the caller
// gets, with the model run on each.
const { coded, eventError, reason } = require('./errors')
const { readEvent, readBatch, lacksCmd, toRecord, toPayload, toRow, conflictError, CORRELATION, DATETIME } = require('./event')
const { execute } = require('./execute')
const { oneRow } = require('./rows')

/** No duplicates, no rows: what an append with conditions that stored every event reports. */
const NONE = Object.freeze([])

/** Whether `callbacks` can be told of a problem. */
const canReport = (callbacks) => Boolean(callbacks) && typeof callbacks._error === 'function'

/**
 * `store(event)`'s record and payload: `{ records: [record], payload }`; or `{ fields }` for an
 * event without a cmd, which stores nothing and is reported (`reportMissingCmd`).
 * @throws TypeError with code ERR_INVALID_EVENT for an invalid event, and for one without a
 * cmd when there are no callbacks to report it to.
 */
function storeInput(event, callbacks, now) {
  const fields = readEvent(event, undefined)
  if (!lacksCmd(fields)) {
    const record = toRecord(fields, undefined, now)
    return { records: [record], payload: toPayload([record], false) }
  }
  if (!canReport(callbacks)) {
    // EventLite would call `_error` of callbacks that are not there; an event must never be
    // dropped with nobody told.
    throw eventError(TypeError, 'store(event): cmd is missing and there are no callbacks to report it to; nothing was stored')
  }
  return { fields }
}

/** Tells `callbacks._error` of an event without a cmd (`storeInput`'s `fields`), as EventLite does. */
function reportMissingCmd({ user, ip, cmd, data }, callbacks) {
  callbacks._error({ msg: 'No command given; aborting', priority: 2, user, ip, cmd, data })
}

/**
 * `storeBulk(events)`'s records and payload. A record stamped in the same millisecond as the
 * one before it sends its datetime as null, which the core reads as that repeat (see
 * src/event.rs): most events of a batch share their millisecond, and a 13-digit number
 * costs `JSON.stringify` far more than `null`. `bulkResults` puts the datetimes back.
 * @throws an Error with code ERR_INVALID_EVENT (and `index`) for the first invalid event.
 */
function bulkInput(events, now) {
  const given = readBatch(events)
  const records = new Array(given.length)
  let previous = null
  for (let i = 0; i < given.length; i++) {
    const record = toRecord(readEvent(given[i], i), i, now)
    if (record[DATETIME] === previous) record[DATETIME] = null
    else previous = record[DATETIME]
    records[i] = record
  }
  return { records, payload: toPayload(records, true) }
}

/**
 * `storeWithContext`'s event: the context's ids win over the event's, `parentEventId` is a
 * synonym of `causationId`, metadata objects are merged. Anything but an object is returned
 * as it is, for `store` to refuse.
 * @throws TypeError with code ERR_INVALID_EVENT when reading the event or the context throws.
 */
function withContext(event, context = {}) {
  if (event === null || typeof event !== 'object') return event
  try {
    const ctx = context ?? {}
    return {
      ...event,
      correlationId: ctx.correlationId || event.correlationId,
      causationId: ctx.causationId || ctx.parentEventId || event.causationId,
      metadata: { ...event.metadata, ...ctx.metadata },
    }
  } catch (cause) {
    throw Object.assign(coded(TypeError, 'ERR_INVALID_EVENT', `storeWithContext: reading the event or context threw: ${reason(cause)}`), { cause })
  }
}

/**
 * The row of a record stored as event `id` at `datetime`. `correlationOf(id)` reads the
 * correlation id the core gave an event that inherited its parent's.
 */
const storedRow = (record, id, correlationOf, datetime) => toRow(record, id, record[CORRELATION] ?? correlationOf(id), datetime)

/** `store`'s result: what the model returned for the stored row, or the row without a model. */
function storeResult(records, id, correlationOf, model, callbacks) {
  const row = storedRow(records[0], id, correlationOf, records[0][DATETIME])
  return model ? execute(row, model, callbacks) : row
}

/**
 * `storeBulk`'s results, for records stored with consecutive ids from `firstId`:
 * `[{ row, result }]`. The events of `repeats` (index → the row stored the first time), repeats
 * of an idempotency key, were not stored: they are `{ row, result: null, duplicate: true }` and
 * run nothing.
 */
function bulkResults(records, firstId, correlationOf, model, callbacks, repeats = null) {
  const results = new Array(records.length)
  let id = firstId
  let datetime = null
  for (let i = 0; i < records.length; i++) {
    // Null: the same datetime as the record before (see `bulkInput`).
    datetime = records[i][DATETIME] ?? datetime
    const first = repeats === null ? undefined : repeats.get(i)
    results[i] = first === undefined ? { row: storedRow(records[i], id++, correlationOf, datetime), result: null } : { row: first, result: null, duplicate: true }
  }
  if (model) {
    for (const entry of results) if (entry.duplicate !== true) entry.result = execute(entry.row, model, callbacks)
  }
  return results
}

/**
 * What an append with stream conditions did, from the core's reply (`appendChecked`'s, see
 * src/lib.rs, or the writer thread's, see src/writer.rs): the first id, or
 * `{ firstId, count, duplicates, rows }` (as JSON text or parsed), or `{ conflict }`. Returns
 * `{ firstId, duplicates, rows }`.
 * @throws Error with code ERR_VERSION_CONFLICT and the conflict's fields. `batch` says whether
 * the call was a storeBulk, whose errors carry the event's index.
 */
function checkedOutcome(stored, batch) {
  if (typeof stored === 'number') return { firstId: stored, duplicates: NONE, rows: NONE }
  const outcome = typeof stored === 'string' ? JSON.parse(stored) : stored
  if (outcome.conflict) throw conflictError(outcome.conflict, batch)
  return outcome
}

/** `storeResult` for a call with stream conditions: a repeat of an idempotency key gives the row stored the first time, and runs nothing. */
function checkedStoreResult(outcome, records, correlationOf, model, callbacks) {
  if (outcome.duplicates.length > 0) return oneRow(outcome.rows[0])
  return storeResult(records, outcome.firstId, correlationOf, model, callbacks)
}

/** `bulkResults` for a call with stream conditions: its repeats of idempotency keys are duplicates. */
function checkedBulkResults(outcome, records, correlationOf, model, callbacks) {
  const { firstId, duplicates, rows } = outcome
  const repeats = duplicates.length === 0 ? null : new Map(duplicates.map(([index], k) => [index, oneRow(rows[k])]))
  return bulkResults(records, firstId, correlationOf, model, callbacks, repeats)
}

module.exports = {
  canReport, storeInput, reportMissingCmd, bulkInput, withContext, storeResult, bulkResults,
  checkedOutcome, checkedStoreResult, checkedBulkResults,
}
