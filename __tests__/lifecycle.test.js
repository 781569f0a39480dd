'use strict'
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { describe, test, tempDb, throwsCode } = require('./helpers')
const { initQueue } = require('..')

/** Forces a full garbage collection on either runtime. */
function collectGarbage() {
  if (typeof Bun !== 'undefined') return Bun.gc(true)
  require('node:v8').setFlagsFromString('--expose-gc')
  require('node:vm').runInNewContext('gc')()
}

/** How many of this process's file descriptors point at `file`. */
function openDescriptors(file) {
  const real = fs.realpathSync(file)
  let n = 0
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`) === real) n++
    } catch {
      // The descriptor closed while we looked.
    }
  }
  return n
}

const CALLS = {
  store: (q) => q.store({ cmd: 'x' }),
  storeBulk: (q) => q.storeBulk([{ cmd: 'x' }]),
  storeWithContext: (q) => q.storeWithContext({ cmd: 'x' }, {}),
  cycleThrough: (q) => q.cycleThrough({}, () => {}),
  retrieveByID: (q) => q.retrieveByID(1),
  getLastRow: (q) => q.getLastRow(),
  getTransaction: (q) => q.getTransaction('c'),
  getChildEvents: (q) => q.getChildEvents(1),
  getEventLineage: (q) => q.getEventLineage(1),
  getIndexes: (q) => q.getIndexes(),
  reset: (q) => q.reset(),
}

describe('lifecycle', () => {
  test('close is idempotent and every later call throws ERR_QUEUE_CLOSED', () => {
    const q = initQueue({ dbName: tempDb(), risky: true })
    q.store({ cmd: 'x' })
    q.close()
    q.close()
    for (const [name, call] of Object.entries(CALLS)) {
      const err = throwsCode(() => call(q), Error, 'ERR_QUEUE_CLOSED')
      assert.match(err.message, /closed/, name)
    }
    // Even an invalid call reports the closed queue first.
    throwsCode(() => q.store(null), Error, 'ERR_QUEUE_CLOSED')
  })

  test('close releases the file and checkpoints the WAL away', () => {
    const file = tempDb()
    const q = initQueue({ dbName: file })
    q.store({ cmd: 'x' })
    assert.ok(openDescriptors(file) > 0)
    q.close()
    assert.equal(openDescriptors(file), 0)
    assert.equal(fs.existsSync(`${file}-wal`), false)
    const again = initQueue({ dbName: file })
    assert.equal(again.getLastRow().cmd, 'x')
    again.close()
  })

  test('close right after heavy writes waits for the background checkpoint and releases the file', () => {
    // Each round fills the WAL past the mark (1,000 pages) where a background thread starts
    // checkpointing, then closes at once, while that checkpoint is likely still running.
    const big = 'x'.repeat(3500) // a page per event
    for (let round = 0; round < 3; round++) {
      const file = tempDb()
      const q = initQueue({ dbName: file })
      for (let b = 0; b < 3; b++) q.storeBulk(Array.from({ length: 500 }, (_, i) => ({ cmd: 'x', data: { big, i } })))
      q.close()
      assert.equal(openDescriptors(file), 0, `round ${round}: a descriptor outlived close()`)
      assert.equal(fs.existsSync(`${file}-wal`), false, `round ${round}: the WAL outlived close()`)
      const again = initQueue({ dbName: file })
      assert.equal(again.getLastRow().id, 1500)
      again.close()
    }
  })

  test('a queue dropped without close() releases its file when garbage-collected', async () => {
    const file = tempDb()
    ;(() => {
      const q = initQueue({ dbName: file })
      q.store({ cmd: 'forgotten' })
    })()
    for (let i = 0; i < 50 && openDescriptors(file) > 0; i++) {
      collectGarbage()
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    assert.equal(openDescriptors(file), 0)
    const q = initQueue({ dbName: file })
    assert.equal(q.getLastRow().cmd, 'forgotten', 'the event was committed')
    q.close()
  })

  test('reset exists only with risky: true, and empties the log', () => {
    const plain = initQueue({ dbName: tempDb() })
    assert.equal(plain.reset, undefined)
    plain.close()
    const q = initQueue({ dbName: tempDb(), risky: true })
    q.storeBulk([{ cmd: 'a' }, { cmd: 'b' }])
    q.reset()
    assert.equal(q.getLastRow(), null)
    assert.equal(q.store({ cmd: 'c' }).id, 1)
    assert.deepEqual(q.getIndexes(), ['idx_causation_id', 'idx_correlation_id'])
    q.close()
  })

  test('two queues on one file see each other\'s events', () => {
    const file = tempDb()
    const a = initQueue({ dbName: file })
    const b = initQueue({ dbName: file })
    a.store({ cmd: 'from-a' })
    b.store({ cmd: 'from-b' })
    assert.deepEqual([a.getLastRow().cmd, b.retrieveByID(1).cmd], ['from-b', 'from-a'])
    a.close()
    b.close()
  })
})

describe('errors from files', () => {
  test('a file that is not SQLite throws SQLITE_NOTADB and is left untouched', () => {
    const file = tempDb('notes.txt')
    const text = 'just some text, not a database\n'.repeat(200)
    fs.writeFileSync(file, text)
    throwsCode(() => initQueue({ dbName: file }), Error, 'SQLITE_NOTADB')
    assert.equal(fs.readFileSync(file, 'utf8'), text)
  })

  test('a folder that cannot be created throws SQLITE_CANTOPEN', () => {
    const blocker = tempDb('a-file')
    fs.writeFileSync(blocker, 'x')
    throwsCode(() => initQueue({ dbName: path.join(blocker, 'sub', 'events.sqlite') }), Error, 'SQLITE_CANTOPEN')
  })

  for (const journal of ['wal', 'delete']) {
    test(`a read-only file reads, and refuses writes with SQLITE_READONLY (${journal} journal)`, () => {
      const { spawnSync } = require('node:child_process')
      const file = tempDb()
      const q = initQueue({ dbName: file, WAL: journal === 'wal' })
      q.store({ cmd: 'kept' })
      q.close()
      // Root writes whatever the file mode says, so as root the reader runs as nobody.
      // The folder stays writable: SQLite needs its -shm file there to read a WAL database.
      const asRoot = process.getuid() === 0
      fs.chmodSync(file, 0o444)
      fs.chmodSync(path.dirname(file), 0o1777)
      const run = spawnSync(process.execPath, [path.join(__dirname, 'fixtures', 'read-only-reader.js'), file, journal], {
        encoding: 'utf8', ...(asRoot ? { uid: 65534, gid: 65534 } : {}),
      })
      assert.equal(run.status, 0, run.stderr)
      assert.deepEqual(JSON.parse(run.stdout), {
        open: { ok: true },
        last: { ok: true, value: 'kept' },
        store: { ok: false, code: 'SQLITE_READONLY' },
        storeBulk: { ok: false, code: 'SQLITE_READONLY' },
        page: { ok: true, value: 1 },
        count: { ok: true, value: 1 },
      })
    })
  }

  test('a queue table with other columns is refused, not corrupted', () => {
    const file = tempDb()
    const { openRaw } = require('./helpers')
    const raw = openRaw(file)
    raw.exec('CREATE TABLE queue (id INTEGER PRIMARY KEY, payload TEXT)')
    raw.run('INSERT INTO queue (payload) VALUES (?)', 'keep me')
    raw.close()
    const err = throwsCode(() => initQueue({ dbName: file }), Error, 'ERR_SCHEMA_MISMATCH')
    assert.match(err.message, /cmd/)
    const check = openRaw(file)
    assert.deepEqual(check.all('SELECT payload FROM queue'), [{ payload: 'keep me' }])
    check.close()
  })
})
