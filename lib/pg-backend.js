'use strict'
// The PostgreSQL backend of the async queue (`openQueue({ url })`, see src/pg/). Every read is
// a Promise of the native pool's (src/lib.rs `NativePg`), which never blocks the JavaScript
// thread; writes go to the writer thread (lib/writer-backend.js), whose backend commits each
// group in one transaction on the same pool (src/pg/write.rs).
const { NativeWriter, pgOpen } = require('./native')
const { coded } = require('./errors')
const { toId, toCorrelationId, parseRow } = require('./queue')
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

/** The reads, with the synchronous queue's argument rules (lib/queue.js), each a Promise. */
class PgReader {
  #native
  #cache

  constructor(pg, cache) {
    this.#native = pg
    this.#cache = new PgCache(cache)
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

  /** `pg`: the NativePg that `openPostgres` resolved to. */
  constructor(pg, settings, replies) {
    let writer
    try {
      writer = NativeWriter.postgres(pg, (text) => replies.settle(text))
    } catch (err) {
      pg.close()
      throw err
    }
    super(writer, replies, {
      correlationOf: (id) => pg.correlationId(id),
      // Followers learn of new events from the server (LISTEN), whichever process wrote them.
      appended: () => {},
    })
    this.reader = new PgReader(pg, settings.cache)
  }
}

/** Connects and creates the schema's tables when missing: the NativePg of a queue. */
const openPostgres = (settings) => native(pgOpen(settings.open))

module.exports = { PgBackend, openPostgres, fromNative }
