'use strict'
// What the synchronous queue (lib/queue.js) and the async one (lib/async-queue.js) share of a
// write: the caller's arguments turned into the payload the core stores, validated before
// anything is sent, and the stored records turned back into the rows and results the caller
// gets, with the model run on each.
const { coded, sender, reason } = require('./errors')
const { readEvent, lacksCmd, toRecord, toPayload, toRow, CORRELATION } = require('./event')
const { execute } = require('./execute')

/**
 * `store(event)`'s record and payload: `{ records: [record], payload }`. An event without a cmd
 * is reported to `callbacks._error`, as EventLite does, and gives `null`: nothing to store.
 * @throws TypeError with code ERR_INVALID_EVENT for an invalid event.
 */
function storeInput(event, callbacks, now) {
  const fields = readEvent(event, undefined)
  if (lacksCmd(fields)) {
    const { user, ip, cmd, data } = fields
    if (callbacks && typeof callbacks._error === 'function') {
      callbacks._error({ msg: `${sender(user, ip)} sent an event with no cmd; nothing was stored`, priority: 2, user, ip, cmd, data })
    }
    return null
  }
  const record = toRecord(fields, undefined, now)
  return { records: [record], payload: toPayload([record], false) }
}

/**
 * `storeBulk(events)`'s records and payload.
 * @throws an Error with code ERR_INVALID_EVENT (and `index`) for the first invalid event.
 */
function bulkInput(events, now) {
  if (!Array.isArray(events)) throw coded(TypeError, 'ERR_INVALID_EVENT', `storeBulk(events): events must be an array, got ${events === null ? 'null' : typeof events}`)
  if (events.length === 0) throw coded(TypeError, 'ERR_INVALID_EVENT', 'storeBulk(events): events must not be empty')
  const records = new Array(events.length)
  for (let i = 0; i < events.length; i++) records[i] = toRecord(readEvent(events[i], i), i, now)
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
 * The row of a record stored as event `id`. `correlationOf(id)` reads the correlation id the
 * core gave an event that inherited its parent's.
 */
const storedRow = (record, id, correlationOf) => toRow(record, id, record[CORRELATION] ?? correlationOf(id))

/** `store`'s result: what the model returned for the stored row, or the row without a model. */
function storeResult(records, id, correlationOf, model, callbacks) {
  const row = storedRow(records[0], id, correlationOf)
  return model === undefined || model === null ? row : execute(row, model, callbacks)
}

/** `storeBulk`'s results, for records stored with consecutive ids from `firstId`: `[{ row, result }]`. */
function bulkResults(records, firstId, correlationOf, model, callbacks) {
  const results = new Array(records.length)
  for (let i = 0; i < records.length; i++) results[i] = { row: storedRow(records[i], firstId + i, correlationOf), result: null }
  if (model !== undefined && model !== null) {
    for (const entry of results) entry.result = execute(entry.row, model, callbacks)
  }
  return results
}

module.exports = { storeInput, bulkInput, withContext, storeResult, bulkResults }
