'use strict'
// The EventQueue that initQueue returns. Storage lives in the native core; this class shapes
// arguments, parses the JSON text the core returns, and runs the user's models and callbacks.
const { NativeQueue } = require('./native')
const { closedError, coded } = require('./errors')
const { lacksCmd, toRecord, toPayload, toRow, CORRELATION } = require('./event')
const { execute, eventCallbacks } = require('./execute')

/** Rows per read while replaying: bounds memory whatever the size of the log. */
const REPLAY_BATCH = 1000

const parse = (text) => (text === null || text === undefined ? null : JSON.parse(text))

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

class EventQueue {
  #native
  #datetime
  #closed = false

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
    if (lacksCmd(event)) {
      const { user = '', ip = '', cmd, data = {} } = event
      if (callbacks && typeof callbacks._error === 'function') {
        callbacks._error({ msg: `${user} at ${ip} sent an event with no cmd; nothing was stored`, priority: 2, user, ip, cmd, data })
      }
      return undefined
    }
    const record = toRecord(event, undefined, this.#datetime)
    const id = db.append(toPayload([record], false))
    const row = toRow(record, id, record[CORRELATION] ?? db.correlationId(id))
    if (model === undefined || model === null) return row
    return execute(row, model, callbacks)
  }

  storeBulk(events, model, callbacks = eventCallbacks.void) {
    const db = this.#db
    if (!Array.isArray(events)) throw coded(TypeError, 'ERR_INVALID_EVENT', `storeBulk(events): events must be an array, got ${events === null ? 'null' : typeof events}`)
    if (events.length === 0) throw coded(TypeError, 'ERR_INVALID_EVENT', 'storeBulk(events): events must not be empty')
    const records = new Array(events.length)
    for (let i = 0; i < events.length; i++) records[i] = toRecord(events[i], i, this.#datetime)
    const firstId = db.append(toPayload(records, true))
    const results = new Array(records.length)
    for (let i = 0; i < records.length; i++) {
      const id = firstId + i
      results[i] = { row: toRow(records[i], id, records[i][CORRELATION] ?? db.correlationId(id)), result: null }
    }
    if (model !== undefined && model !== null) {
      for (const entry of results) entry.result = execute(entry.row, model, callbacks)
    }
    return results
  }

  execute(row, model, callbacks) {
    return execute(row, model, callbacks)
  }

  storeWithContext(event, context = {}, model, callbacks) {
    if (event === null || typeof event !== 'object') return this.store(event, model, callbacks)
    const ctx = context ?? {}
    return this.store({
      ...event,
      correlationId: ctx.correlationId || event.correlationId,
      causationId: ctx.causationId || ctx.parentEventId || event.causationId,
      metadata: { ...event.metadata, ...ctx.metadata },
    }, model, callbacks)
  }

  cycleThrough(model, doneCB, whileCB = eventCallbacks.void, { start = 0, stop = null } = {}) {
    const db = this.#db
    if (!Number.isSafeInteger(start)) throw argError(`cycleThrough: start must be an integer id, got ${String(start)}`)
    if (stop !== null && stop !== undefined && !Number.isSafeInteger(stop)) {
      throw argError(`cycleThrough: stop must be an integer id or null, got ${String(stop)}`)
    }
    const until = typeof stop === 'number' ? stop : null
    let from = start
    for (;;) {
      const rows = JSON.parse(db.range(from, until, REPLAY_BATCH))
      for (const row of rows) execute(row, model, whileCB)
      if (rows.length < REPLAY_BATCH) break
      from = rows[rows.length - 1].id + 1
    }
    if (typeof doneCB === 'function') doneCB()
  }

  retrieveByID(id) {
    const db = this.#db
    const key = toId(id)
    return key === null ? null : parse(db.byId(key))
  }

  getLastRow() {
    return parse(this.#db.last())
  }

  getTransaction(correlationId) {
    const db = this.#db
    if (correlationId === undefined || correlationId === null) return []
    if (typeof correlationId !== 'string' && typeof correlationId !== 'number') {
      throw argError(`getTransaction: correlationId must be a string, got ${typeof correlationId}`)
    }
    return JSON.parse(db.byCorrelation(String(correlationId)))
  }

  getChildEvents(id) {
    const db = this.#db
    const key = toId(id)
    return key === null ? [] : JSON.parse(db.children(key))
  }

  getEventLineage(id) {
    const db = this.#db
    const key = toId(id)
    return key === null ? null : parse(db.lineage(key))
  }

  getIndexes() {
    return this.#db.indexes()
  }

  #reset() {
    this.#db.reset()
  }

  close() {
    if (this.#closed) return
    this.#closed = true
    this.#native.close()
  }
}

module.exports = { EventQueue }
