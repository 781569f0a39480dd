'use strict'
// The competitor: the same queue work written by hand on the raw SQLite driver of the runtime,
// better-sqlite3 on Node and bun:sqlite on Bun, the way a competent user writes it: statements
// prepared once and reused, one transaction per batch, JSON.stringify for data/metadata on the
// way in and JSON.parse on the way out. Its methods have the names and arguments of the
// EventQueue methods the workload calls, so every figure is one loop that runs on both sides.
const { randomUUID } = require('node:crypto')

const isBun = typeof Bun !== 'undefined'

/** The two drivers share the calls used here (prepare, run/get/all, transaction, exec, close). */
function openDatabase(file) {
  if (isBun) {
    const { Database } = require('bun:sqlite')
    return new Database(file)
  }
  const Database = require('better-sqlite3')
  return new Database(file)
}

/** The driver of the raw side and the SQLite it bundles, for the notes of the results. */
function driverName() {
  const db = openDatabase(':memory:')
  const { v } = db.prepare('SELECT sqlite_version() AS v').get()
  db.close()
  const driver = isBun ? 'bun:sqlite' : `better-sqlite3 ${require('better-sqlite3/package.json').version}`
  return `${driver} (SQLite ${v})`
}

/** The `queue` table exactly as docs/api.md lays it out, with the 2 default indexes. */
const SCHEMA = `
  CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    version INTEGER DEFAULT 1,
    datetime INTEGER NOT NULL,
    user TEXT,
    ip TEXT,
    cmd TEXT NOT NULL,
    data TEXT,
    correlation_id TEXT,
    causation_id INTEGER,
    metadata TEXT
  );
  CREATE INDEX IF NOT EXISTS idx_correlation_id ON queue(correlation_id);
  CREATE INDEX IF NOT EXISTS idx_causation_id ON queue(causation_id);`

const COLUMNS = 'id, version, datetime, user, ip, cmd, data, correlation_id, causation_id, metadata'

const parseJson = (text) => (text === null ? null : JSON.parse(text))

/** A row as the queue returns it: `data` and `metadata` parsed. */
function parseRow(row) {
  row.data = parseJson(row.data)
  row.metadata = parseJson(row.metadata)
  return row
}

/** The row an event becomes, with the queue's defaults, before the database gives it an id. */
function newRow(event) {
  return {
    id: 0,
    version: event.version ?? 1,
    datetime: Date.now(),
    user: event.user ?? '',
    ip: event.ip ?? '',
    cmd: event.cmd,
    data: event.data ?? {},
    correlation_id: event.correlationId ?? randomUUID(),
    causation_id: event.causationId ?? null,
    metadata: event.metadata ?? {},
  }
}

class RawQueue {
  #db
  #insert
  #byId
  #page
  #count
  #after
  #all
  #insertAll

  constructor(file) {
    const db = openDatabase(file)
    db.exec('PRAGMA journal_mode = WAL')
    db.exec('PRAGMA synchronous = NORMAL')
    db.exec(SCHEMA)
    this.#db = db
    this.#insert = db.prepare('INSERT INTO queue (version, datetime, user, ip, cmd, data, correlation_id, causation_id, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
    this.#byId = db.prepare(`SELECT ${COLUMNS} FROM queue WHERE id = ?`)
    this.#page = db.prepare(`SELECT ${COLUMNS} FROM queue WHERE correlation_id = ? ORDER BY id LIMIT ? OFFSET ?`)
    this.#count = db.prepare('SELECT COUNT(*) AS n FROM queue WHERE correlation_id = ?')
    this.#after = db.prepare(`SELECT ${COLUMNS} FROM queue WHERE id > ? ORDER BY id LIMIT ?`)
    this.#all = db.prepare(`SELECT ${COLUMNS} FROM queue ORDER BY id`)
    this.#insertAll = db.transaction((events) => events.map((event) => this.#insertRow(event)))
  }

  /** Inserts one event and returns its row; the caller's transaction, if any, holds it. */
  #insertRow(event) {
    const row = newRow(event)
    const { lastInsertRowid } = this.#insert.run(row.version, row.datetime, row.user, row.ip, row.cmd,
      JSON.stringify(row.data), row.correlation_id, row.causation_id, JSON.stringify(row.metadata))
    row.id = Number(lastInsertRowid)
    return row
  }

  /** Stores one event in its own commit, then runs it through the model's handler. */
  store(event, model) {
    const row = this.#insertRow(event)
    return model[row.cmd](row.data, row)
  }

  /** Stores the events in one transaction, then runs each row through the model after the commit, as the queue does. */
  storeBulk(events, model) {
    const rows = this.#insertAll(events)
    return rows.map((row) => ({ row, result: model[row.cmd](row.data, row) }))
  }

  retrieveByID(id) {
    const row = this.#byId.get(id)
    return row ? parseRow(row) : null
  }

  /** The raw side has no cache: the benchmark compares the cached read with this plain one. */
  retrieveByIDCached(id) {
    return this.retrieveByID(id)
  }

  getByCorrelationIdPaginated(correlationId, { limit = 100, offset = 0 } = {}) {
    const events = this.#page.all(correlationId, limit, offset).map(parseRow)
    const totalCount = this.#count.get(correlationId).n
    const hasMore = offset + events.length < totalCount
    return {
      events,
      totalCount,
      hasMore,
      nextOffset: hasMore ? offset + limit : null,
      nextCursor: hasMore ? String(events[events.length - 1].id) : null,
    }
  }

  /** Every event in id order, read by keyset in batches of `batchSize`. */
  async * streamEvents({ batchSize = 1000 } = {}) {
    let lastId = 0
    for (;;) {
      const rows = this.#after.all(lastId, batchSize)
      if (rows.length === 0) return
      yield rows.map(parseRow)
      if (rows.length < batchSize) return
      lastId = rows[rows.length - 1].id
    }
  }

  /** Every event in id order through the model, as a hand-written replay loop does. */
  cycleThrough(model) {
    for (const row of this.#all.iterate()) {
      parseRow(row)
      model[row.cmd](row.data, row)
    }
  }

  close() {
    // bun:sqlite closes a connection only once its statements are finalized: until then the
    // file keeps its WAL, and the benchmark's copies of a fixture would differ by whether the
    // garbage collector had finalized them yet. better-sqlite3's close finalizes them itself.
    if (isBun) for (const statement of [this.#insert, this.#byId, this.#page, this.#count, this.#after, this.#all]) statement.finalize()
    this.#db.close()
  }
}

/**
 * The raw side of the async figures: the same queue behind a plain async wrapper, as one
 * writes it over a synchronous driver, each store its own commit.
 */
class RawAsyncQueue {
  #raw

  constructor(file) {
    this.#raw = new RawQueue(file)
  }

  async store(event, model) {
    return this.#raw.store(event, model)
  }

  async cycleThrough(model, doneCB) {
    this.#raw.cycleThrough(model)
    if (doneCB) doneCB()
  }

  close() {
    this.#raw.close()
  }
}

module.exports = { RawQueue, RawAsyncQueue, driverName, newRow, parseRow }
