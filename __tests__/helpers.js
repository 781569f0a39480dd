'use strict'
// Shared by every suite. The suites run under `node --test` and under `bun test`: the test
// functions come from whichever runner is present; assertions come from node:assert on both.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const runner = typeof Bun !== 'undefined' ? require('bun:test') : require('node:test')
const { describe, test } = runner
const after = runner.after ?? runner.afterAll

/** A fresh folder under the system temp dir, removed when the suite ends. */
function tempDir() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'eventlite-test-'))
  after(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** A path for a new database file in a fresh temp folder. */
function tempDb(name = 'events.sqlite') {
  return path.join(tempDir(), name)
}

/** A model that records every call, for asserting what execute() did. */
function recordingModel(extra = {}) {
  const calls = []
  const model = {
    _queries: {},
    _migrations: {},
    _default(data, meta) { calls.push(['_default', data, meta]); return 'default' },
    _done(row, result) { calls.push(['_done', row.id, result]) },
    _error(errObj) { calls.push(['_error', errObj]) },
    ...extra,
  }
  return { model, calls }
}

/** Callbacks that record what they are called with. */
function recordingCallbacks(extra = {}) {
  const calls = []
  const callbacks = {
    _default(result, row) { calls.push(['_default', result, row.id]) },
    _error(errObj) { calls.push(['_error', errObj]) },
    ...extra,
  }
  return { callbacks, calls }
}

/**
 * The runtime's own SQLite driver on a file (bun:sqlite under Bun, better-sqlite3 under
 * Node), for checking what is on disk independently of this package, and for writing files
 * the way EventLite Sourcing does.
 */
function openRaw(file) {
  if (typeof Bun !== 'undefined') {
    const { Database } = require('bun:sqlite')
    const db = new Database(file)
    return {
      all: (sql, ...params) => db.query(sql).all(...params),
      get: (sql, ...params) => db.query(sql).get(...params),
      run: (sql, ...params) => db.query(sql).run(...params),
      exec: (sql) => db.exec(sql),
      close: () => db.close(),
    }
  }
  const Database = require('better-sqlite3')
  const db = new Database(file)
  return {
    all: (sql, ...params) => db.prepare(sql).all(...params),
    get: (sql, ...params) => db.prepare(sql).get(...params),
    run: (sql, ...params) => db.prepare(sql).run(...params),
    exec: (sql) => db.exec(sql),
    close: () => db.close(),
  }
}

/** Asserts that `fn` throws an error of class `Ctor` with `code`, and returns it. */
function throwsCode(fn, Ctor, code) {
  let caught
  try {
    fn()
  } catch (err) {
    caught = err
  }
  if (!caught) throw new Error(`expected ${Ctor.name} ${code}, nothing was thrown`)
  if (!(caught instanceof Ctor)) throw new Error(`expected ${Ctor.name} ${code}, got ${caught.name}: ${caught.message}`)
  if (caught.code !== code) throw new Error(`expected code ${code}, got ${caught.code}: ${caught.message}`)
  return caught
}

module.exports = { describe, test, after, tempDir, tempDb, recordingModel, recordingCallbacks, openRaw, throwsCode }
