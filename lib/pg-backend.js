'use strict'
// The PostgreSQL backend of the async queue (`openQueue({ url })`, see src/pg/). Every read is
// a Promise of the native pool's (src/lib.rs `NativePg`), which never blocks the JavaScript
// thread; writes go to the writer thread (lib/writer-backend.js), whose backend commits each
// group in one transaction on the same pool (src/pg/write.rs).
const { NativeWriter, pgOpen } = require('./native')
const { coded } = require('./errors')
const { toId, toCorrelationId, parseRow, pageId, pageText, pageTime } = require('./queue')
const { pageOptions, readPageAsync } = require('./page')
const { Streams, streamOptions } = require('./stream')
const { rowsOf } = require('./rows')
const { PgCache } = require('./pg-cache')
const { WriterBackend } = require('./writer-backend')

/** How an async native call's error arrives: its stable code leads the message (src/lib.rs `to_js_async`). */
const CODED = /^([A-Z][A-Z0-9_]*): ([\s\S]*)$/
/** How a PostgreSQL error's message ends when the server sent a SQLSTATE (src/error.rs). */
const SQLSTATE = / \(SQLSTATE ([0-9A-Z]{5})\)$/

/** The error of a native Promise, its code (and `pgCode`) where JavaScript expects them. */
function fromNative(err) {
  const parts = err instanceof Error ? CODED.exec(err.message) : null
  if (parts === null) return err
  const [, code, message] = parts
  const state = SQLSTATE.exec(message)
  return coded(Error, code, message, state === null ? undefined : { pgCode: state[1] })
}

/** A native Promise, rejecting with `fromNative`'s error. */
const native = (promise) => promise.catch((err) => Promise.reject(fromNative(err)))

/**
 * How long a following stream waits before it reads again unwoken: the server wakes it on every
 * commit (LISTEN, src/pg/listen.rs), so this only bounds the delay of a lost notification.
 */
const FALLBACK_POLL_MS = 1000

/** A stream's native reader, its reads' errors coded as the other reads' are. */
const nativeReader = (reader) => ({
  next: () => native(reader.next()),
  position: () => reader.position(),
  close: () => reader.close(),
})

/** The reads, with the synchronous queue's argument rules (lib/queue.js), each a Promise. */
class PgReader {
  #native
  #cache
  #streams = new Streams({ pollMs: FALLBACK_POLL_MS })
  /** The NativePgListener, started by the first reader that follows. */
  #listener = null

  constructor(pg, cache) {
    this.#native = pg
    this.#cache = new PgCache(cache)
  }

  /** Wakes the following readers: the server notified a commit, or this queue committed. */
  wake() {
    this.#streams.wake()
  }

  /** Starts listening for commits, once: only a queue with followers keeps a connection for it. */
  #listen() {
    this.#listener ??= this.#native.listen(() => this.wake())
  }

  async retrieveByID(id) {
    const key = toId(id)
    return key === null ? null : parseRow(await native(this.#native.byId(key)))
  }

  async getLastRow() {
    return parseRow(await native(this.#native.last()))
  }

  async getTransaction(correlationId) {
    const key = toCorrelationId(correlationId, 'getTransaction')
    return key === null ? [] : rowsOf(await native(this.#native.byCorrelation(key)))
  }

  async getChildEvents(id) {
    const key = toId(id)
    return key === null ? [] : rowsOf(await native(this.#native.children(key)))
  }

  async getEventLineage(id) {
    const key = toId(id)
    const text = key === null ? null : await native(this.#native.lineage(key))
    if (text === null) return null
    // One flat array of rows: the event, its parent (a row of nulls when it has none), its children.
    const rows = rowsOf(text)
    return { event: rows[0], parent: rows[1].id === null ? null : rows[1], children: rows.slice(2) }
  }

  async getByCorrelationIdPaginated(correlationId, options) {
    const key = pageText('getByCorrelationIdPaginated', 'correlationId', correlationId, true)
    return readPageAsync(native(this.#native.pageByCorrelation(key, pageOptions(options))))
  }

  async getChildEventsPaginated(eventId, options) {
    const key = pageId('getChildEventsPaginated', eventId)
    return readPageAsync(native(this.#native.pageOfChildren(key, pageOptions(options))))
  }

  async getEventsByUserPaginated(user, options) {
    const key = pageText('getEventsByUserPaginated', 'user', user)
    return readPageAsync(native(this.#native.pageByUser(key, pageOptions(options))))
  }

  async getEventsByCmdPaginated(cmd, options) {
    const key = pageText('getEventsByCmdPaginated', 'cmd', cmd)
    return readPageAsync(native(this.#native.pageByCmd(key, pageOptions(options))))
  }

  async getEventsInTimeRangePaginated(startTime, endTime, options) {
    const start = pageTime('getEventsInTimeRangePaginated', 'startTime', startTime)
    const end = pageTime('getEventsInTimeRangePaginated', 'endTime', endTime)
    return readPageAsync(native(this.#native.pageInTimeRange(start, end, pageOptions(options))))
  }

  /** An async iterable of row batches (lib/stream.js), read a batch ahead; a bad option throws. */
  streamEvents(options) {
    const o = streamOptions(options)
    if (o.follow) this.#listen()
    return this.#streams.open(() => nativeReader(this.#native.stream(o.native)), o)
  }

  async getStreamVersion(correlationId) {
    return native(this.#native.streamVersion(pageText('getStreamVersion', 'correlationId', correlationId, true)))
  }

  /** A consumer's reads (lib/consumer.js): its stored position, and a stream state on its events. */
  consumerReads() {
    return {
      position: (name, member) => native(this.#native.consumerPosition(name, member)),
      attach: (options, signal) => {
        this.#listen()
        return this.#streams.attach(() => nativeReader(this.#native.stream(options)), signal)
      },
    }
  }

  async getConsumers() {
    return JSON.parse(await native(this.#native.consumers()))
  }

  async retrieveByIDCached(id) {
    const key = toId(id)
    return key === null ? null : this.#cache.byId(key, () => this.retrieveByID(key))
  }

  async getTransactionCached(correlationId) {
    const key = toCorrelationId(correlationId, 'getTransactionCached')
    if (key === null) return []
    return this.#cache.transaction(key, () => native(this.#native.transactionMark(key)), () => this.getTransaction(key))
  }

  clearCache() {
    this.#cache.clear()
  }

  getCacheStats() {
    return this.#cache.stats()
  }

  getIndexes() {
    return native(this.#native.indexes())
  }

  close() {
    this.#cache.clear()
    this.#streams.close()
    this.#listener?.close()
    this.#native.close()
  }
}

/**
 * The methods that work on a SQLite file and have no counterpart on a server, each with what
 * to use instead: on PostgreSQL they reject (exportEvents: its first step) with
 * ERR_NOT_SUPPORTED.
 */
const SQLITE_FILE_ONLY = {
  backup: 'back the server up with its own tools (pg_dump, pg_basebackup, continuous archiving)',
  exportEvents: 'read the events with streamEvents, or copy the table with pg_dump or COPY',
  importEvents: 'store the events with storeBulk, or load the table with COPY',
  checkpoint: 'the server checkpoints by itself (CHECKPOINT, for a superuser)',
  optimize: 'autovacuum keeps the planner statistics (ANALYZE, by hand)',
  vacuum: 'autovacuum reclaims space (VACUUM, by hand)',
  integrityCheck: 'the server checks itself (data checksums; the amcheck extension)',
}

for (const [method, instead] of Object.entries(SQLITE_FILE_ONLY)) {
  PgReader.prototype[method] = function sqliteFileOnly() {
    throw coded(Error, 'ERR_NOT_SUPPORTED', `${method}() works on a SQLite file, not on PostgreSQL: ${instead}`)
  }
}

class PgBackend extends WriterBackend {
  reader
  consumerReads

  /** `pg`: the NativePg that `openPostgres` resolved to. */
  constructor(pg, settings, replies) {
    let writer
    try {
      writer = NativeWriter.postgres(pg, (text) => replies.settle(text))
    } catch (err) {
      pg.close()
      throw err
    }
    const reader = new PgReader(pg, settings.cache)
    super(writer, replies, {
      correlationOf: (id) => pg.correlationId(id),
      // Followers learn of new events from the server (LISTEN), whichever process wrote them;
      // this queue's own wake them without the round trip.
      appended: () => reader.wake(),
    })
    this.reader = reader
    this.consumerReads = reader.consumerReads()
  }
}

/** Connects and creates the schema's tables when missing: the NativePg of a queue. */
const openPostgres = (settings) => native(pgOpen(settings.open))

module.exports = { PgBackend, openPostgres, fromNative }
