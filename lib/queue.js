'use strict'
// The EventQueue that initQueue returns. Storage lives in the native core; this class shapes
// arguments, parses the JSON text the core returns, and runs the user's models and callbacks.
const { NativeQueue, rowById, cachedIdHit } = require('./native')
const { closedError, coded, describe, dateTime, eventError } = require('./errors')
const { readEvent, lacksCmd, toRecord, timestamp, isChecked, CORRELATION, CAUSATION } = require('./event')
const { execute, eventCallbacks } = require('./execute')
const {
  canReport, storeInput, reportMissingCmd, bulkInput, withContext, storeResult, bulkResults, checkedOutcome, checkedStoreResult,
  checkedBulkResults,
} = require('./write')
const { copyRow, copyRows } = require('./copy')
const { pageOptions, readPage } = require('./page')
const { toRows, oneRow, makeRow, endedEarly, firstPiece, appendPieces, rowsOf, rowsOfSets } = require('./rows')
const { Streams, streamOptions } = require('./stream')
const { exportRange, exportLines, importRows, backupTo } = require('./transfer')
const { metricsText } = require('./prometheus')
const { readWait, pendingPayload } = require('./pending')
const { Consumers, nativeOperations } = require('./consumer')

/** The native queue, for the command line's tools; not part of the API. */
const NATIVE = Symbol('eventlite-native.native')

/** Rows per read while replaying: bounds memory whatever the size of the log. */
const REPLAY_BATCH = 1000

/** What a write of a pending event returns when it was no longer ready: nothing was stored. */
const NOT_READY = Symbol('not ready')

/**
 * Wakes a queue's following streams when another writer of this process appended: the writer
 * thread of an async queue on the same file (lib/sqlite-backend.js).
 */
const WAKE_STREAMS = Symbol('wakeStreams')

/** The consumer operations of a queue, for the async queue's reads through it. */
const CONSUMER_OPERATIONS = Symbol('consumerOperations')

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

/** cycleThrough's `{ start = 0, stop = null }`: the ids `from <= id < until` (`until` null: no end). */
function cycleRange({ start = 0, stop = null } = {}) {
  if (!Number.isSafeInteger(start)) throw argError(`cycleThrough: start must be an integer id, got ${describe(start)}`)
  if (stop !== null && stop !== undefined && !Number.isSafeInteger(stop)) {
    throw argError(`cycleThrough: stop must be an integer id or null, got ${describe(stop)}`)
  }
  return { from: start, until: typeof stop === 'number' ? stop : null }
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
  const time = typeof value === 'number' ? value : dateTime(value)
  if (time === undefined || Number.isNaN(time)) {
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
  /** The correlation id the core gave an event that inherited its parent's. */
  #correlationOf = (id) => this.#native.correlationId(id)
  /** The consumer operations on this queue's file, for its consumers and an async queue's reads. */
  #consumerOps = nativeOperations(() => this.#db, this.#streams)
  #consumers = new Consumers(this.#consumerOps)

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

  store(event, model, callbacks) {
    return this.#write(event, model, callbacks, null)
  }

  /**
   * `store`, and the store of ready pending event `pendingId` (not null), which is marked
   * executed in the same transaction: that one returns NOT_READY, storing nothing, when it was
   * no longer ready. As in EventLite, `_model` and `_cb` stand in for a model and callbacks
   * not given.
   */
  #write(event, model, callbacks, pendingId) {
    const db = this.#db
    if (!model) model = this._model
    if (!callbacks) callbacks = this._cb
    let input
    try {
      input = storeInput(event, callbacks, this.#datetime)
    } catch (err) {
      db.recordFailedWrite()
      throw err
    }
    if (input.records === undefined) {
      db.recordFailedWrite()
      reportMissingCmd(input.fields, callbacks)
      return undefined
    }
    if (isChecked(input.records[0])) {
      const stored = pendingId === null ? db.appendChecked(input.payload, false) : db.appendPendingChecked(pendingId, input.payload)
      if (stored === null) return NOT_READY
      const outcome = checkedOutcome(stored, false)
      this.#streams.wake()
      return checkedStoreResult(outcome, input.records, this.#correlationOf, model, callbacks)
    }
    const id = pendingId === null ? db.append(input.payload) : db.appendPending(pendingId, input.payload)
    if (id === null) return NOT_READY
    this.#streams.wake()
    return storeResult(input.records, id, this.#correlationOf, model, callbacks)
  }

  storeBulk(events, model, callbacks) {
    const db = this.#db
    if (!model) model = this._model
    if (!callbacks) callbacks = this._cb
    let input
    try {
      input = bulkInput(events, this.#datetime)
    } catch (err) {
      db.recordFailedWrite()
      throw err
    }
    if (input.records.some(isChecked)) {
      const outcome = checkedOutcome(db.appendChecked(input.payload, true), true)
      this.#streams.wake()
      return checkedBulkResults(outcome, input.records, this.#correlationOf, model, callbacks)
    }
    const firstId = db.appendBatch(input.payload)
    this.#streams.wake()
    return bulkResults(input.records, firstId, this.#correlationOf, model, callbacks)
  }

  getStreamVersion(correlationId) {
    const db = this.#db
    return db.streamVersion(pageText('getStreamVersion', 'correlationId', correlationId, true))
  }

  consume(name, options) {
    return this.#consumers.open(name, options)
  }

  getConsumers() {
    return JSON.parse(this.#db.consumers())
  }

  resetConsumer(name, position = 0) {
    this.#consumers.reset(name, position)
  }

  execute(row, model, callbacks) {
    return execute(row, model, callbacks)
  }

  storeWithContext(event, context, model, callbacks) {
    let merged
    try {
      merged = withContext(event, context)
    } catch (err) {
      this.#db.recordFailedWrite()
      throw err
    }
    return this.store(merged, model, callbacks)
  }

  /**
   * Stores the event once its `waitFor` is satisfied: until then it is a pending event. Without
   * `waitFor`, it is `store`.
   */
  storeWhen(event, model, callbacks) {
    const db = this.#db
    const wait = readWait(event)
    if (wait === null) return this.store(event, model, callbacks)
    const fields = readEvent(event, undefined)
    if (lacksCmd(fields)) throw eventError(Error, 'storeWhen(event): cmd is missing; nothing was stored')
    // Validated as store validates; its datetime is the pending event's created_at.
    const record = toRecord(fields, undefined, this.#datetime)
    const causation = record[CAUSATION]
    const correlationId = record[CORRELATION] ?? (causation === null ? null : db.correlationId(causation))
    const pendingEventId = db.storeWhen(pendingPayload(record, correlationId, wait))
    return { pendingEventId, status: 'pending' }
  }

  checkAllPendingEvents() {
    return JSON.parse(this.#db.checkPending())
  }

  /**
   * Stores each ready event (oldest first) through `store`, marking it executed in the same
   * transaction. One that cannot be stored stays ready and is reported to `callbacks._error`
   * (or, with none, logged as EventLite logs it).
   */
  executeReadyEvents(model, callbacks) {
    const db = this.#db
    if (!model) model = this._model
    if (!callbacks) callbacks = this._cb
    const executed = []
    for (const pendingEvent of JSON.parse(db.readyPending())) {
      let result
      try {
        const event = JSON.parse(pendingEvent.event_data)
        if (lacksCmd(readEvent(event, undefined))) throw eventError(Error, 'its event has no cmd')
        result = this.#write(event, model, callbacks, pendingEvent.id)
      } catch (error) {
        const message = `Failed to execute pending event ${pendingEvent.id}:`
        if (canReport(callbacks)) callbacks._error({ msg: `${message} ${error && error.message}`, error, pendingEvent })
        else console.error(message, error)
        continue
      }
      if (result !== NOT_READY) executed.push({ pendingEvent, result })
    }
    return executed
  }

  /** Marks expired the pending events whose `expires_at` is before now (the datetime option's clock). */
  expirePendingEvents() {
    const db = this.#db
    return JSON.parse(db.expirePending(timestamp(this.#datetime)))
  }

  cancelPendingEvent(id) {
    const db = this.#db
    const key = toId(id)
    return key === null ? false : db.cancelPending(key)
  }

  /** The pending rows (status `pending`) of a correlation id, oldest first. */
  getPendingEventsByCorrelation(correlationId) {
    const db = this.#db
    return typeof correlationId === 'string' ? JSON.parse(db.pendingByCorrelation(correlationId)) : []
  }

  cycleThrough(model, doneCB, whileCB = eventCallbacks.void, range) {
    const db = this.#db
    const { from: start, until: stop } = cycleRange(range)
    // Only the events stored before the replay starts: a model that stores events while it
    // replays would otherwise keep giving it more, and a replay of a log it grows never ends.
    const newest = db.newestId()
    const end = newest === null ? start : newest + 1
    const until = stop === null ? end : Math.min(stop, end)
    let from = start
    for (;;) {
      const parts = db.range(from, until, REPLAY_BATCH)
      const rows = rowsOfSets(parts)
      for (const row of rows) execute(row, model, whileCB)
      if (rows.length < REPLAY_BATCH && !endedEarly(parts)) break
      from = rows[rows.length - 1].id + 1
    }
    if (typeof doneCB === 'function') doneCB()
  }

  retrieveByID(id) {
    const db = this.#db
    const key = toId(id)
    if (key === null) return null
    try {
      return rowById(db, key, makeRow)
    } catch (err) {
      // data or metadata that is not JSON: the read throws what every read of the row throws.
      if (err instanceof SyntaxError) db.checkRow(key)
      throw err
    }
  }

  getLastRow() {
    return parseRow(this.#db.last())
  }

  getTransaction(correlationId) {
    const db = this.#db
    const key = toCorrelationId(correlationId, 'getTransaction')
    return key === null ? [] : rowsOf(db.byCorrelation(key))
  }

  getChildEvents(id) {
    const db = this.#db
    const key = toId(id)
    return key === null ? [] : rowsOf(db.children(key))
  }

  getEventLineage(id) {
    const db = this.#db
    const key = toId(id)
    const text = key === null ? null : db.lineage(key)
    if (text === null || text === undefined) return null
    // One flat array of rows: the event, its parent (a row of nulls when it has none), its children.
    const rows = rowsOf(text)
    return { event: rows[0], parent: rows[1].id === null ? null : rows[1], children: rows.slice(2) }
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
   * `[values, slot]`, in pieces or not. The row or rows `build` makes of the values become the
   * slot's template and a copy is returned; slot -1 means the cache is disabled and nothing is
   * kept.
   */
  #miss(found, build, copy) {
    if (found === null) return null
    const [values, slot] = JSON.parse(firstPiece(found))
    const value = appendPieces(build(values), found)
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

  [NATIVE]() {
    return this.#db
  }

  [WAKE_STREAMS]() {
    this.#streams.wake()
  }

  /** The consumer operations on this queue's file (lib/consumer.js `nativeOperations`), for an async queue's reads. */
  [CONSUMER_OPERATIONS]() {
    return this.#consumerOps
  }

  /** Copies the live database into `destination` with SQLite's online backup. */
  async backup(destination, options) {
    return backupTo(this.#db, destination, options)
  }

  /** The events with `from <= id <= to` as JSONL lines, in id order. */
  exportEvents(options) {
    if (this.#closed) throw closedError()
    return exportLines((range) => this.streamEvents(range), exportRange(options))
  }

  /** Appends the rows of an export; resolves to how many. */
  async importEvents(source, options) {
    const db = this.#db
    try {
      return await importRows(db, source, options)
    } finally {
      this.#streams.wake()
    }
  }

  checkpoint() {
    return JSON.parse(this.#db.checkpoint())
  }

  optimize() {
    this.#db.optimize()
  }

  vacuum() {
    this.#db.vacuum()
  }

  integrityCheck() {
    return this.#db.integrityCheck()
  }

  metricsText() {
    return metricsText(this.getMetrics(), this.getCacheStats())
  }

  #reset() {
    this.#db.reset()
    this.#templates.length = 0
    this.#streams.wake()
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

module.exports = { EventQueue, NATIVE, WAKE_STREAMS, CONSUMER_OPERATIONS, REPLAY_BATCH, cycleRange, toId, toCorrelationId, parseRow, pageId, pageText, pageTime }
