'use strict'
// The EventQueue that initQueue returns. Storage lives in the native core; this class shapes
// arguments, parses the JSON text the core returns, and runs the user's models and callbacks.
const { NativeQueue, byId, cachedIdHit } = require('./native')
const { closedError, coded, describe, shown } = require('./errors')
const { readEvent, lacksCmd, toRecord, toPayload, toRow, isChecked, conflictError, CORRELATION } = require('./event')
const { execute, eventCallbacks } = require('./execute')
const { copyRow, copyRows } = require('./copy')
const { pageOptions, readPage } = require('./page')
const { toRows, oneRow } = require('./rows')
const { Streams, streamOptions } = require('./stream')
const { Consumers, resetConsumer } = require('./consumer')

/** No duplicates, no rows: what an append with conditions that stored every event reports. */
const NONE = Object.freeze([])

/** Rows per read while replaying: bounds memory whatever the size of the log. */
const REPLAY_BATCH = 1000

/** The row of a read that returns one row's values as JSON text, or null. */
const parseRow = (text) => (text === null || text === undefined ? null : oneRow(JSON.parse(text)))

/**
 * An event id as EventLite accepts it: an integer, or a string of digits (SQLite compares
 * those as numbers). Anything else can match no event, so the read answers "none" (null).
 */
function toId(id) {
  if (typeof id === 'number') return Number.isSafeInteger(id) ? id : null
  if (typeof id === 'string' && /^-?\d{1,15}$/.test(id)) return Number(id)
  if (typeof id === 'bigint' && id >= Number.MIN_SAFE_INTEGER && id <= Number.MAX_SAFE_INTEGER) return Number(id)
  return null
}

function argError(message) {
  return coded(TypeError, 'ERR_INVALID_ARG', message)
}

/** The key argument of a paginated read: an id as `toId` accepts it. */
function pageId(method, id) {
  const key = toId(id)
  if (key === null) throw argError(`${method}: eventId must be an integer event id, got ${describe(id)}`)
  return key
}

/** A text key argument of a read: a string (for a correlation id, a number too, as SQLite compares it). */
function pageText(method, name, value, numberToo = false) {
  if (typeof value === 'string') return value
  if (numberToo && typeof value === 'number') return String(value)
  throw argError(`${method}: ${name} must be a string, got ${describe(value)}`)
}

/** A correlation id as the transaction reads take it, or null when none was given (no events). */
const toCorrelationId = (correlationId, method) =>
  correlationId === undefined || correlationId === null ? null : pageText(method, 'correlationId', correlationId, true)

/** A bound of getEventsInTimeRangePaginated: a number of milliseconds, or a Date. */
function pageTime(method, name, value) {
  const time = value instanceof Date ? value.getTime() : value
  if (typeof time !== 'number' || Number.isNaN(time)) {
    throw argError(`${method}: ${name} must be a number (a datetime as stored) or a valid Date, got ${describe(value)}`)
  }
  return time
}

class EventQueue {
  #native
  #datetime
  #closed = false
  /**
   * The query cache's parsed rows and transactions, by the slot the native cache gave each
   * (see src/cache.rs). Never more than cache.maxSize of them; a template whose entry left
   * the cache is unreachable, and overwritten when its slot is handed out again.
   */
  #templates = []
  #streams = new Streams()
  #consumers = new Consumers()

  constructor(settings) {
    this.#native = new NativeQueue(settings.open)
    this.#datetime = settings.datetime
    if (settings.risky) {
      // EventLite adds reset() only to queues opened with risky: true.
      Object.defineProperty(this, 'reset', { value: () => this.#reset(), enumerable: false })
    }
  }

  /** The native queue, after checking this one is still open. */
  get #db() {
    if (this.#closed) throw closedError()
    return this.#native
  }

  store(event, model, callbacks = eventCallbacks.void) {
    const db = this.#db
    let record, payload
    try {
      const fields = readEvent(event, undefined)
      if (lacksCmd(fields)) {
        db.recordFailedWrite()
        const { user, ip, cmd, data } = fields
        if (callbacks && typeof callbacks._error === 'function') {
          callbacks._error({ msg: `${shown(user)} at ${shown(ip)} sent an event with no cmd; nothing was stored`, priority: 2, user, ip, cmd, data })
        }
        return undefined
      }
      record = toRecord(fields, undefined, this.#datetime)
      payload = toPayload([record], false)
    } catch (err) {
      db.recordFailedWrite()
      throw err
    }
    let id
    if (isChecked(record)) {
      const outcome = this.#appendChecked(db, payload, false)
      // A repeat of an idempotency key: the row stored the first time, and nothing runs.
      if (outcome.duplicates.length > 0) return oneRow(outcome.rows[0])
      id = outcome.firstId
    } else {
      id = db.append(payload)
    }
    this.#streams.wake()
    const row = toRow(record, id, record[CORRELATION] ?? db.correlationId(id))
    if (model === undefined || model === null) return row
    return execute(row, model, callbacks)
  }

  storeBulk(events, model, callbacks = eventCallbacks.void) {
    const db = this.#db
    let records, payload
    try {
      if (!Array.isArray(events)) throw coded(TypeError, 'ERR_INVALID_EVENT', `storeBulk(events): events must be an array, got ${events === null ? 'null' : typeof events}`)
      if (events.length === 0) throw coded(TypeError, 'ERR_INVALID_EVENT', 'storeBulk(events): events must not be empty')
      records = new Array(events.length)
      for (let i = 0; i < events.length; i++) records[i] = toRecord(readEvent(events[i], i), i, this.#datetime)
      payload = toPayload(records, true)
    } catch (err) {
      db.recordFailedWrite()
      throw err
    }
    let firstId
    let repeats = null
    if (records.some(isChecked)) {
      const outcome = this.#appendChecked(db, payload, true)
      firstId = outcome.firstId
      if (outcome.duplicates.length > 0) repeats = new Map(outcome.duplicates.map(([index], k) => [index, outcome.rows[k]]))
    } else {
      firstId = db.appendBatch(payload)
    }
    this.#streams.wake()
    const results = new Array(records.length)
    let id = firstId
    for (let i = 0; i < records.length; i++) {
      if (repeats !== null && repeats.has(i)) {
        results[i] = { row: oneRow(repeats.get(i)), result: null, duplicate: true }
        continue
      }
      results[i] = { row: toRow(records[i], id, records[i][CORRELATION] ?? db.correlationId(id)), result: null }
      id++
    }
    if (model !== undefined && model !== null) {
      for (const entry of results) if (entry.duplicate !== true) entry.result = execute(entry.row, model, callbacks)
    }
    return results
  }

  /**
   * Stores a payload with stream conditions: `{ firstId, duplicates, rows }` (see
   * src/store.rs), or throws ERR_VERSION_CONFLICT with the conflict's fields.
   */
  #appendChecked(db, payload, batch) {
    const stored = db.appendChecked(payload, batch)
    if (typeof stored === 'number') return { firstId: stored, duplicates: NONE, rows: NONE }
    const outcome = JSON.parse(stored)
    if (outcome.conflict) throw conflictError(outcome.conflict, batch)
    return outcome
  }

  getStreamVersion(correlationId) {
    const db = this.#db
    return db.streamVersion(pageText('getStreamVersion', 'correlationId', correlationId, true))
  }

  consume(name, options) {
    return this.#consumers.open(() => this.#db, this.#streams, name, options)
  }

  getConsumers() {
    return JSON.parse(this.#db.consumers())
  }

  resetConsumer(name, position = 0) {
    resetConsumer(this.#db, name, position)
  }

  execute(row, model, callbacks) {
    return execute(row, model, callbacks)
  }

  storeWithContext(event, context = {}, model, callbacks) {
    if (event === null || typeof event !== 'object') return this.store(event, model, callbacks)
    let merged
    try {
      const ctx = context ?? {}
      merged = {
        ...event,
        correlationId: ctx.correlationId || event.correlationId,
        causationId: ctx.causationId || ctx.parentEventId || event.causationId,
        metadata: { ...event.metadata, ...ctx.metadata },
      }
    } catch (cause) {
      this.#db.recordFailedWrite()
      throw Object.assign(coded(TypeError, 'ERR_INVALID_EVENT', `storeWithContext: reading the event or context threw: ${cause && cause.message}`), { cause })
    }
    return this.store(merged, model, callbacks)
  }

  cycleThrough(model, doneCB, whileCB = eventCallbacks.void, { start = 0, stop = null } = {}) {
    const db = this.#db
    if (!Number.isSafeInteger(start)) throw argError(`cycleThrough: start must be an integer id, got ${describe(start)}`)
    if (stop !== null && stop !== undefined && !Number.isSafeInteger(stop)) {
      throw argError(`cycleThrough: stop must be an integer id or null, got ${describe(stop)}`)
    }
    const until = typeof stop === 'number' ? stop : null
    let from = start
    for (;;) {
      const rows = toRows(JSON.parse(db.range(from, until, REPLAY_BATCH)))
      for (const row of rows) execute(row, model, whileCB)
      if (rows.length < REPLAY_BATCH) break
      from = rows[rows.length - 1].id + 1
    }
    if (typeof doneCB === 'function') doneCB()
  }

  retrieveByID(id) {
    const db = this.#db
    const key = toId(id)
    return key === null ? null : parseRow(byId(db, key))
  }

  getLastRow() {
    return parseRow(this.#db.last())
  }

  getTransaction(correlationId) {
    const db = this.#db
    const key = toCorrelationId(correlationId, 'getTransaction')
    return key === null ? [] : toRows(JSON.parse(db.byCorrelation(key)))
  }

  getChildEvents(id) {
    const db = this.#db
    const key = toId(id)
    return key === null ? [] : toRows(JSON.parse(db.children(key)))
  }

  getEventLineage(id) {
    const db = this.#db
    const key = toId(id)
    const text = key === null ? null : db.lineage(key)
    if (text === null || text === undefined) return null
    const [event, parent, children] = JSON.parse(text)
    return { event: oneRow(event), parent: oneRow(parent), children: toRows(children) }
  }

  getByCorrelationIdPaginated(correlationId, options) {
    const db = this.#db
    const key = pageText('getByCorrelationIdPaginated', 'correlationId', correlationId, true)
    const opts = pageOptions(options)
    return readPage(() => db.pageByCorrelation(key, opts))
  }

  getChildEventsPaginated(eventId, options) {
    const db = this.#db
    const key = pageId('getChildEventsPaginated', eventId)
    const opts = pageOptions(options)
    return readPage(() => db.pageOfChildren(key, opts))
  }

  getEventsByUserPaginated(user, options) {
    const db = this.#db
    const key = pageText('getEventsByUserPaginated', 'user', user)
    const opts = pageOptions(options)
    return readPage(() => db.pageByUser(key, opts))
  }

  getEventsByCmdPaginated(cmd, options) {
    const db = this.#db
    const key = pageText('getEventsByCmdPaginated', 'cmd', cmd)
    const opts = pageOptions(options)
    return readPage(() => db.pageByCmd(key, opts))
  }

  getEventsInTimeRangePaginated(startTime, endTime, options) {
    const db = this.#db
    const start = pageTime('getEventsInTimeRangePaginated', 'startTime', startTime)
    const end = pageTime('getEventsInTimeRangePaginated', 'endTime', endTime)
    const opts = pageOptions(options)
    return readPage(() => db.pageInTimeRange(start, end, opts))
  }

  streamEvents(options) {
    const db = this.#db
    const o = streamOptions(options)
    return this.#streams.open(() => db.stream(o.native), o)
  }

  retrieveByIDCached(id) {
    const db = this.#db
    const key = toId(id)
    if (key === null) return null
    const slot = cachedIdHit(db, key)
    return slot >= 0 ? copyRow(this.#templates[slot]) : this.#miss(db.cachedById(key), oneRow, copyRow)
  }

  getTransactionCached(correlationId) {
    const db = this.#db
    const key = toCorrelationId(correlationId, 'getTransactionCached')
    if (key === null) return []
    const found = db.cachedTransaction(key)
    return typeof found === 'number' ? copyRows(this.#templates[found]) : this.#miss(found, toRows, copyRows)
  }

  /**
   * A cached read that went to SQLite: `found` is null (no such event) or the text
   * `[values, slot]`. The row or rows `build` makes of the values become the slot's template
   * and a copy is returned; slot -1 means the cache is disabled and nothing is kept.
   */
  #miss(found, build, copy) {
    if (found === null) return null
    let pair
    try {
      pair = JSON.parse(found)
    } catch (err) {
      // A row whose stored JSON does not parse (written by another program) throws as the
      // uncached read does; its slot must not keep serving the template of another key.
      this.clearCache()
      throw err
    }
    const value = build(pair[0])
    const slot = pair[1]
    if (slot < 0) return value
    this.#templates[slot] = value
    return copy(value)
  }

  clearCache() {
    this.#db.clearCache()
    this.#templates.length = 0
  }

  getCacheStats() {
    return JSON.parse(this.#db.cacheStats())
  }

  getMetrics() {
    return JSON.parse(this.#db.metrics())
  }

  getIndexes() {
    return this.#db.indexes()
  }

  #reset() {
    this.#db.reset()
    this.#templates.length = 0
  }

  close() {
    if (this.#closed) return
    this.#consumers.close()
    this.#closed = true
    this.#streams.close()
    this.#native.close()
    this.#templates.length = 0
  }
}

module.exports = { EventQueue }
