'use strict'
// Shared by every suite. The suites run under `node --test` and under `bun test`: the test
// functions come from whichever runner is present; assertions come from node:assert on both.
const assert = require('node:assert/strict')
const { spawn, spawnSync } = require('node:child_process')
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
 * the way EventLite Sourcing does. Only while no queue of this process has the file open:
 * two SQLite libraries in one process do not see each other's locks (see sqlElsewhere).
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

/** Asserts that `promise` rejects with an error of class `Ctor` with `code`, and returns the error. */
async function rejectsCode(promise, Ctor, code) {
  assert.ok(promise instanceof Promise, 'a Promise, not a synchronous throw')
  let caught
  await promise.then(() => assert.fail(`expected ${Ctor.name} ${code}, the Promise resolved`), (err) => { caught = err })
  assert.ok(caught instanceof Ctor, `expected ${Ctor.name} ${code}, got ${caught && caught.name}: ${caught && caught.message}`)
  assert.equal(caught.code, code, caught.message)
  return caught
}

/**
 * The program `sqlElsewhere` and `holdWriteLock` run: SQL through the runtime's own SQLite
 * driver (better-sqlite3 on Node, bun:sqlite on Bun), in a process of its own. Another process
 * because two SQLite libraries in one process, the driver's and this package's, do not see
 * each other's locks: a test doing that would race, or delete the other's WAL on close.
 */
const SQL_CHILD = `
const file = process.env.SQL_FILE
const db = typeof Bun !== 'undefined' ? new (require('bun:sqlite').Database)(file) : new (require('better-sqlite3'))(file)
db.exec(process.env.SQL_TEXT)
if (process.env.SQL_HOLD) {
  const letGo = () => { db.exec('ROLLBACK'); db.close(); process.exit(0) }
  process.stdout.write('ready\\n')
  process.stdin.on('end', letGo)
  process.stdin.resume()
  if (process.env.SQL_HOLD !== 'stdin') setTimeout(letGo, Number(process.env.SQL_HOLD))
} else {
  db.close()
}
`

/** `hold`: '' to run and exit, 'stdin' to hold until stdin ends, or a number of ms. */
function sqlChild(file, sql, hold) {
  const env = { ...process.env, SQL_FILE: file, SQL_TEXT: sql, SQL_HOLD: String(hold) }
  return { args: ['-e', SQL_CHILD], options: { cwd: path.join(__dirname, '..'), env } }
}

/** Runs SQL on a database file from another process, as another program would. */
function sqlElsewhere(file, sql) {
  const { args, options } = sqlChild(file, sql, '')
  const run = spawnSync(process.execPath, args, { ...options, encoding: 'utf8' })
  if (run.status !== 0) throw new Error(`SQL in another process failed: ${run.stderr}`)
}

/**
 * Takes the write lock of a database file in another process (BEGIN IMMEDIATE) and holds it
 * until the returned `release()` resolves, or for `forMs` milliseconds of its own clock (for a
 * test whose own thread is blocked waiting for the lock meanwhile).
 */
function holdWriteLock(file, { forMs } = {}) {
  return holdLock(file, 'BEGIN IMMEDIATE', forMs)
}

/**
 * Holds a read transaction on a database file in another process until the returned
 * `release()` resolves: with the rollback journal, a SHARED lock, which lets a writer begin
 * but not commit.
 */
function holdReadLock(file) {
  return holdLock(file, 'BEGIN; SELECT COUNT(*) FROM queue')
}

/** Runs `sql` (which opens a transaction) in another process and holds it; see holdWriteLock. */
function holdLock(file, sql, forMs) {
  const { args, options } = sqlChild(file, sql, forMs === undefined ? 'stdin' : forMs)
  const child = spawn(process.execPath, args, { ...options, stdio: ['pipe', 'pipe', 'inherit'] })
  const exited = new Promise((resolve) => child.on('exit', resolve))
  const release = () => {
    child.stdin.end()
    return exited
  }
  return new Promise((resolve, reject) => {
    child.stdout.once('data', () => resolve(release))
    exited.then((code) => reject(new Error(`the lock holder exited with ${code}`)))
  })
}

/**
 * Starts a fixture that prints each thing it acknowledged as a line "ack <firstId> <lastId>
 * <batchKey> <size>" (see fixtures/append-loop.js); `acks` fills as they arrive. `line(text)`
 * settles once the child has printed `text` on a line of its own, and rejects if it exits
 * first; `exited` settles with `{ code, signal, stderr }` once the child has exited and its
 * output is all read.
 */
function startAcking(script, args, { stdin = 'ignore' } = {}) {
  const child = spawn(process.execPath, [script, ...args], { stdio: [stdin, 'pipe', 'pipe'] })
  const acks = []
  const printed = new Set()
  const waiting = []
  let pending = ''
  let stderr = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (chunk) => {
    pending += chunk
    const lines = pending.split('\n')
    pending = lines.pop()
    for (const text of lines) {
      if (text.startsWith('ack ')) {
        const [, first, last, key, size] = text.split(' ')
        acks.push({ first: Number(first), last: Number(last), key, size: Number(size) })
      } else {
        printed.add(text)
        for (const w of waiting) if (w.text === text) w.resolve()
      }
    }
  })
  child.stderr.on('data', (chunk) => { stderr += chunk })
  const exited = new Promise((resolve) => child.once('close', (code, signal) => resolve({ code, signal, stderr })))
  const line = (text) => new Promise((resolve, reject) => {
    if (printed.has(text)) return resolve()
    waiting.push({ text, resolve })
    exited.then(({ code, signal }) => reject(new Error(`the child ended (${signal ?? code}) before "${text}": ${stderr}`)))
  })
  return { child, acks, exited, line }
}

/** Every row of a file the fixtures wrote, as `{ id, writer, batch, size, at }`, and its integrity check. */
function storedEvents(file) {
  const raw = openRaw(file)
  const rows = raw.all('SELECT id, data FROM queue ORDER BY id').map((r) => ({ id: r.id, ...JSON.parse(r.data) }))
  const integrity = raw.get('PRAGMA integrity_check').integrity_check
  raw.close()
  return { rows, integrity }
}

/** Checks that every batch in the file is whole: all its events, consecutive ids, in order. */
function assertBatchesWhole(rows) {
  const batches = new Map()
  for (const row of rows) {
    if (!batches.has(row.batch)) batches.set(row.batch, [])
    batches.get(row.batch).push(row)
  }
  for (const [key, members] of batches) {
    assert.equal(members.length, members[0].size, `batch ${key} is whole`)
    members.forEach((row, at) => {
      assert.equal(row.at, at, `batch ${key} in order`)
      assert.equal(row.id, members[0].id + at, `batch ${key} has consecutive ids`)
    })
  }
  return batches
}

/** Checks that the file's rows hold every acknowledged batch, whole, under the ids acknowledged. */
function assertAcknowledged(rows, acks) {
  const batches = assertBatchesWhole(rows)
  for (const ack of acks) {
    const batch = batches.get(ack.key)
    assert.ok(batch, `acknowledged batch ${ack.key} is in the file`)
    assert.deepEqual([batch[0].id, batch.at(-1).id, batch.length], [ack.first, ack.last, ack.size])
  }
  return batches
}

module.exports = {
  describe, test, after, tempDir, tempDb, recordingModel, recordingCallbacks, openRaw, throwsCode, rejectsCode, sqlElsewhere,
  holdWriteLock, holdReadLock, startAcking, storedEvents, assertBatchesWhole, assertAcknowledged,
}
