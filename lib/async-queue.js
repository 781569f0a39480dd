'use strict'
// The AsyncEventQueue that openQueue resolves to: the synchronous queue's API (lib/queue.js)
// with every method returning a Promise, over a backend (lib/sqlite-backend.js).
//
// A backend has a `reader`, an object with the synchronous queue's read methods (returning
// values or Promises), and a writer: `write(payload, batch)`, `metrics()` and `close()` submit
// requests, and the writer answers them in the order they were submitted, a group at a time,
// through `Replies.settle` (src/writer.rs: each group of writes is one commit). Writes are
// validated and shaped here as the synchronous queue does it (lib/write.js); their Promises
// wait in `Replies` and are settled, with the models and callbacks run, when the group's
// commit is done.
const { closedError, coded } = require('./errors')
const { execute, eventCallbacks } = require('./execute')
const { resolveOptions } = require('./options')
const { REPLAY_BATCH, cycleRange } = require('./queue')
const { SqliteBackend } = require('./sqlite-backend')
const { PgBackend, openPostgres } = require('./pg-backend')
const { isPostgres, resolvePgOptions } = require('./pg-options')
const { metricsText } = require('./prometheus')
const { oneRow } = require('./rows')
const { storeInput, reportMissingCmd, bulkInput, withContext, storeResult, bulkResults } = require('./write')
const { conflictError } = require('./event')

/** A reply of the writer that reports a failure: `{ error: code, message, ...fields }`. */
const isFailure = (reply) => reply !== null && typeof reply === 'object' && typeof reply.error === 'string'

/**
 * The error of a failed reply; `batch` says whether the call was a storeBulk. A version conflict
 * is worded as the synchronous queue words it, from its fields.
 */
function failure({ error, message, ...fields }, batch) {
  if (error === 'ERR_VERSION_CONFLICT') return conflictError(fields, batch)
  return coded(Error, error, message, fields)
}

/**
 * The events of a call that repeated idempotency keys (the writer's reply `{ firstId, count,
 * duplicates: [[index, id]], rows }`, src/store.rs `Checked`): index → the row stored the first time.
 */
const repeatsOf = ({ duplicates, rows }) => new Map(duplicates.map(([index], k) => [index, oneRow(rows[k])]))

/** Resolves once the event loop has turned: timers, I/O and immediates have had their go. */
const nextTurn = () => new Promise((resolve) => setImmediate(resolve))

/** An async iterable whose first step rejects with `err`: a stream that cannot start. */
async function* failing(err) {
  throw err
}

/**
 * The requests a backend's writer has not answered yet, in the order they were submitted, each
 * as `{ resolve, reject, settle }` where `settle(reply)` makes the call's result of its reply.
 * Its `settle(text)` is the writer's replies function: it must reach nothing that holds the
 * writer (see lib/sqlite-backend.js), and must never throw, as there is nobody to catch.
 */
class Replies {
  #due = []
  /** From the backend: `correlationOf(id)`, `appended()` after a group, `idle()` when none is due. */
  #hooks = null

  attach(hooks) {
    this.#hooks = hooks
  }

  get correlationOf() {
    return this.#hooks.correlationOf
  }

  get idle() {
    return this.#due.length === 0
  }

  add(request) {
    this.#due.push(request)
  }

  /** Rejects the last `count` requests, which never reached the writer. */
  abandon(count, err) {
    for (const request of this.#due.splice(-count)) request.reject(err)
    this.release()
  }

  /** Lets the writer go when no reply is due any more. */
  release() {
    if (this.#due.length === 0) this.#hooks.idle()
  }

  /**
   * A group's replies (a JSON array, one per request in order): each call is settled in turn,
   * its model and callbacks run first, so Promises resolve and models run in id order.
   */
  settle(text) {
    let replies
    try {
      replies = JSON.parse(text)
    } catch (err) {
      replies = [] // the writer only sends JSON; were it not so, the calls would wait forever
      this.#due.splice(0).forEach((request) => request.reject(err))
    }
    const group = this.#due.splice(0, replies.length)
    for (let i = 0; i < group.length; i++) {
      const request = group[i]
      const reply = replies[i]
      if (isFailure(reply)) {
        request.reject(failure(reply, request.batch === true))
        continue
      }
      try {
        request.resolve(request.settle(reply))
      } catch (err) {
        // A callbacks._error that throws (execute catches everything else): the event is stored.
        request.reject(err)
      }
    }
    this.release()
    this.#hooks.appended()
  }
}

class AsyncEventQueue {
  #backend
  #replies
  #datetime
  /** The Promise of close(), once it was called. */
  #closed = null
  /** Writes refused before reaching the writer (invalid events): `errorsTotal` counts them too. */
  #refused = 0

  /** `openBackend(replies)` opens the backend whose writer answers through `replies`. */
  constructor(settings, openBackend) {
    this.#replies = new Replies()
    this.#backend = openBackend(this.#replies)
    this.#datetime = settings.datetime
  }

  /**
   * Submits a request to the writer (`submit(backend)`); the Promise settles with
   * `settle(reply)` when the writer answers.
   */
  #request(submit, settle, batch = false) {
    if (this.#closed) return Promise.reject(closedError())
    // Held before the submit: closing the writer lets go of what holding needs.
    const first = this.#replies.idle
    if (first) this.#backend.busy()
    return new Promise((resolve, reject) => {
      try {
        submit(this.#backend)
      } catch (err) {
        if (first) this.#replies.release()
        throw err
      }
      this.#replies.add({ resolve, reject, settle, batch })
    })
  }

  /** A read on the backend's reader, its result (or its throw) as a Promise. */
  #read(read) {
    if (this.#closed) return Promise.reject(closedError())
    try {
      return Promise.resolve(read(this.#backend.reader))
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /** An invalid write: counted, and nothing is sent. */
  #refuse(err) {
    this.#refused++
    return Promise.reject(err)
  }

  /** As the synchronous queue's: `_model` and `_cb` stand in for a model and callbacks not given. */
  store(event, model, callbacks) {
    if (this.#closed) return Promise.reject(closedError())
    if (!model) model = this._model
    if (!callbacks) callbacks = this._cb
    let input
    try {
      input = storeInput(event, callbacks, this.#datetime)
    } catch (err) {
      return this.#refuse(err)
    }
    if (input.records === undefined) {
      this.#refused++
      try {
        reportMissingCmd(input.fields, callbacks)
      } catch (err) {
        return Promise.reject(err)
      }
      return Promise.resolve(undefined)
    }
    const correlationOf = this.#replies.correlationOf
    return this.#request(
      (backend) => backend.write(input.payload, false),
      // A repeat of an idempotency key replies with the row stored the first time, and nothing runs.
      (stored) => (typeof stored === 'number' ? storeResult(input.records, stored, correlationOf, model, callbacks) : oneRow(stored.rows[0])),
    )
  }

  storeBulk(events, model, callbacks) {
    if (this.#closed) return Promise.reject(closedError())
    if (!model) model = this._model
    if (!callbacks) callbacks = this._cb
    let input
    try {
      input = bulkInput(events, this.#datetime)
    } catch (err) {
      return this.#refuse(err)
    }
    const correlationOf = this.#replies.correlationOf
    return this.#request(
      (backend) => backend.write(input.payload, true),
      (stored) => typeof stored === 'number'
        ? bulkResults(input.records, stored, correlationOf, model, callbacks)
        : bulkResults(input.records, stored.firstId, correlationOf, model, callbacks, repeatsOf(stored)),
      true,
    )
  }

  storeWithContext(event, context, model, callbacks) {
    if (this.#closed) return Promise.reject(closedError())
    let merged
    try {
      merged = withContext(event, context)
    } catch (err) {
      return this.#refuse(err)
    }
    return this.store(merged, model, callbacks)
  }

  /** Synchronous, as it runs user code only. */
  execute(row, model, callbacks) {
    return execute(row, model, callbacks)
  }

  /**
   * Replays through the stream reader: each batch is read on the thread pool while the one
   * before runs through the model, and the event loop turns between batches, so a replay of
   * any length blocks it for one batch at most.
   */
  cycleThrough(model, doneCB, whileCB = eventCallbacks.void, range) {
    return this.#read(async (reader) => {
      const { from, until } = cycleRange(range)
      const startId = Math.max(0, from)
      // Only the events stored before the replay starts, as the synchronous queue replays: a
      // model that stores an event for each one it handles would otherwise never finish.
      const newest = (await reader.getLastRow())?.id ?? 0
      const endId = until === null ? newest : Math.min(until - 1, newest)
      if (endId >= startId) {
        const batches = reader.streamEvents({ batchSize: REPLAY_BATCH, startId, endId })
        for await (const rows of batches) {
          for (const row of rows) execute(row, model, whileCB)
          // Awaiting the next batch is not enough on Bun, which settles a finished read
          // without letting timers, immediates or I/O run: yield to the event loop explicitly.
          await nextTurn()
        }
        // The stream also ends when the queue closes: that replay did not finish.
        if (this.#closed) throw closedError()
      }
      if (typeof doneCB === 'function') doneCB()
    })
  }

  retrieveByID(id) {
    return this.#read((reader) => reader.retrieveByID(id))
  }

  getLastRow() {
    return this.#read((reader) => reader.getLastRow())
  }

  getTransaction(correlationId) {
    return this.#read((reader) => reader.getTransaction(correlationId))
  }

  getChildEvents(id) {
    return this.#read((reader) => reader.getChildEvents(id))
  }

  getEventLineage(id) {
    return this.#read((reader) => reader.getEventLineage(id))
  }

  getByCorrelationIdPaginated(correlationId, options) {
    return this.#read((reader) => reader.getByCorrelationIdPaginated(correlationId, options))
  }

  getChildEventsPaginated(eventId, options) {
    return this.#read((reader) => reader.getChildEventsPaginated(eventId, options))
  }

  getEventsByUserPaginated(user, options) {
    return this.#read((reader) => reader.getEventsByUserPaginated(user, options))
  }

  getEventsByCmdPaginated(cmd, options) {
    return this.#read((reader) => reader.getEventsByCmdPaginated(cmd, options))
  }

  getEventsInTimeRangePaginated(startTime, endTime, options) {
    return this.#read((reader) => reader.getEventsInTimeRangePaginated(startTime, endTime, options))
  }

  /** An async iterable of row batches; a bad option or a closed queue rejects its first step. */
  streamEvents(options) {
    if (this.#closed) return failing(closedError())
    try {
      return this.#backend.reader.streamEvents(options)
    } catch (err) {
      return failing(err)
    }
  }

  retrieveByIDCached(id) {
    return this.#read((reader) => reader.retrieveByIDCached(id))
  }

  getTransactionCached(correlationId) {
    return this.#read((reader) => reader.getTransactionCached(correlationId))
  }

  clearCache() {
    return this.#read((reader) => reader.clearCache())
  }

  getCacheStats() {
    return this.#read((reader) => reader.getCacheStats())
  }

  /** The writer's metrics, read between two of its commits, with `commitsTotal`. */
  getMetrics() {
    return this.#request(
      (backend) => backend.metrics(),
      (metrics) => {
        metrics.errorsTotal += this.#refused
        return metrics
      },
    )
  }

  getIndexes() {
    return this.#read((reader) => reader.getIndexes())
  }

  // Backup, export and import, and maintenance: the synchronous queue's, through the reader's
  // connection. A backup and an export read on the thread pool a step at a time; an import
  // commits a batch of 1,000 at a time on this thread, between which the event loop turns.

  backup(destination, options) {
    return this.#read((reader) => reader.backup(destination, options))
  }

  /** JSONL lines; a bad option or a closed queue rejects its first step. */
  exportEvents(options) {
    if (this.#closed) return failing(closedError())
    try {
      return this.#backend.reader.exportEvents(options)
    } catch (err) {
      return failing(err)
    }
  }

  importEvents(source, options) {
    return this.#read((reader) => reader.importEvents(source, options))
  }

  checkpoint() {
    return this.#read((reader) => reader.checkpoint())
  }

  optimize() {
    return this.#read((reader) => reader.optimize())
  }

  vacuum() {
    return this.#read((reader) => reader.vacuum())
  }

  integrityCheck() {
    return this.#read((reader) => reader.integrityCheck())
  }

  /** `getMetrics()` (the writer's, with `commitsTotal`) and `getCacheStats()`, for Prometheus. */
  async metricsText() {
    const [metrics, cache] = await Promise.all([this.getMetrics(), this.getCacheStats()])
    return metricsText(metrics, cache)
  }

  // Integration points for expected versions, idempotent appends and consumers, once the
  // synchronous queue has them:
  // - getStreamVersion(correlationId): a read, `this.#read((reader) => reader.getStreamVersion(correlationId))`.
  // - consume(name, options) and getConsumers(): reads through the reader, as streamEvents;
  //   a consumer's commit() and resetConsumer(name, position) write, so they go to the
  //   writer thread as requests of their own (src/writer.rs `Request`), never on this thread.
  // - expectedVersion and idempotencyKey travel in the payload; a conflict comes back as a
  //   failed reply (src/writer.rs `Replies::error`), a duplicate as a reply `settle` turns
  //   into the first row.

  // Until the integration above lands, the reader's own: PostgreSQL's commit on the pool
  // (src/pg/consumer.rs), SQLite's through the synchronous queue.

  getStreamVersion(correlationId) {
    return this.#read((reader) => reader.getStreamVersion(correlationId))
  }

  /** Resolves to the consumer, an async iterable of row batches. */
  consume(name, options) {
    return this.#read((reader) => reader.consume(name, options))
  }

  getConsumers() {
    return this.#read((reader) => reader.getConsumers())
  }

  resetConsumer(name, position) {
    return this.#read((reader) => reader.resetConsumer(name, position))
  }

  /**
   * Resolves once the writes issued before it are committed (and settled) and the file is
   * closed; every later call rejects with ERR_QUEUE_CLOSED. Idempotent.
   */
  close() {
    if (this.#closed) return this.#closed
    const closing = this.#request((backend) => backend.close(), () => undefined)
    this.#closed = closing.then(() => this.#backend.reader.close())
    return this.#closed
  }
}

/**
 * Opens (creating if needed) an async event queue: on PostgreSQL when `options.url` is given
 * (docs/postgres.md), on the SQLite file otherwise (docs/async.md).
 */
async function openQueue(options) {
  if (isPostgres(options)) {
    const settings = resolvePgOptions(options)
    const pg = await openPostgres(settings)
    return new AsyncEventQueue(settings, (replies) => new PgBackend(pg, settings, replies))
  }
  const settings = resolveOptions(options)
  return new AsyncEventQueue(settings, (replies) => new SqliteBackend(settings, replies))
}

module.exports = { AsyncEventQueue, openQueue }
