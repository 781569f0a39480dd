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

module.exports = { describe, test, after, tempDir, tempDb, recordingModel, recordingCallbacks }
