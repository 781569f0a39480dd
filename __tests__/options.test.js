'use strict'
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { describe, test, tempDir, tempDb, openRaw, throwsCode, holdWriteLock } = require('./helpers')
const { initQueue } = require('..')

describe('initQueue options', () => {
  test('defaults open data/events.sqlite relative to the working directory', () => {
    const dir = tempDir()
    const cwd = process.cwd()
    process.chdir(dir)
    try {
      const q = initQueue()
      q.store({ cmd: 'hello' })
      q.close()
      assert.ok(fs.existsSync(path.join(dir, 'data', 'events.sqlite')))
    } finally {
      process.chdir(cwd)
    }
  })

  test('missing parent folders of dbName are created', () => {
    const file = path.join(tempDir(), 'a', 'b', 'c', 'events.sqlite')
    const q = initQueue({ dbName: file })
    q.close()
    assert.ok(fs.existsSync(file))
  })

  test(':memory: is private to each queue', () => {
    const a = initQueue({ dbName: ':memory:' })
    const b = initQueue({ dbName: ':memory:' })
    a.store({ cmd: 'only-in-a' })
    assert.equal(a.getLastRow().cmd, 'only-in-a')
    assert.equal(b.getLastRow(), null)
    a.close()
    b.close()
  })

  test('WAL true (default) puts the file in WAL mode, false in the rollback journal', () => {
    const walFile = tempDb()
    initQueue({ dbName: walFile }).close()
    const raw = openRaw(walFile)
    assert.equal(raw.get('PRAGMA journal_mode').journal_mode, 'wal')
    raw.close()

    const deleteFile = tempDb()
    initQueue({ dbName: deleteFile, WAL: false }).close()
    const raw2 = openRaw(deleteFile)
    assert.equal(raw2.get('PRAGMA journal_mode').journal_mode, 'delete')
    raw2.close()
  })

  test('every synchronous mode opens, in either case', () => {
    for (const mode of ['OFF', 'NORMAL', 'FULL', 'EXTRA', 'normal']) {
      const q = initQueue({ dbName: tempDb(), synchronous: mode })
      q.store({ cmd: 'x' })
      q.close()
    }
  })

  test('unknown options are a TypeError naming them', () => {
    const err = throwsCode(() => initQueue({ dbName: ':memory:', walMode: true }), TypeError, 'ERR_INVALID_OPTION')
    assert.match(err.message, /walMode/)
    const nested = throwsCode(() => initQueue({ dbName: ':memory:', cache: { size: 3 } }), TypeError, 'ERR_INVALID_OPTION')
    assert.match(nested.message, /cache\.size/)
    const index = throwsCode(() => initQueue({ dbName: ':memory:', indexes: { colour: true } }), TypeError, 'ERR_INVALID_OPTION')
    assert.match(index.message, /indexes\.colour/)
  })

  test('init and hash are accepted and ignored', () => {
    const q = initQueue({ dbName: ':memory:', init: { anything: 1 }, hash: 'whatever' })
    assert.equal(q.store({ cmd: 'x' }).id, 1)
    q.close()
  })

  test('wrong types are TypeErrors and out-of-range values RangeErrors, naming the option', () => {
    const cases = [
      [{ dbName: 42 }, TypeError, /dbName/],
      [{ dbName: '' }, RangeError, /dbName/],
      [{ dbName: 'a\0b' }, RangeError, /dbName/],
      [{ WAL: 'yes' }, TypeError, /WAL/],
      [{ synchronous: 2 }, TypeError, /synchronous/],
      [{ synchronous: 'SOMETIMES' }, RangeError, /synchronous/],
      [{ busyTimeout: '5000' }, TypeError, /busyTimeout/],
      [{ busyTimeout: -1 }, RangeError, /busyTimeout/],
      [{ busyTimeout: 1.5 }, RangeError, /busyTimeout/],
      [{ busyTimeout: 2 ** 40 }, RangeError, /busyTimeout/],
      [{ indexes: [] }, TypeError, /indexes/],
      [{ indexes: { cmd: 1 } }, TypeError, /indexes\.cmd/],
      [{ cache: true }, TypeError, /cache/],
      [{ cache: { enabled: 'no' } }, TypeError, /cache\.enabled/],
      [{ cache: { maxSize: 0 } }, RangeError, /cache\.maxSize/],
      [{ cache: { ttl: 0 } }, RangeError, /cache\.ttl/],
      [{ cache: { ttl: Infinity } }, RangeError, /cache\.ttl/],
      [{ datetime: 12 }, TypeError, /datetime/],
      [{ reset: 'true' }, TypeError, /reset/],
      [{ risky: 1 }, TypeError, /risky/],
    ]
    for (const [options, Ctor, pattern] of cases) {
      const err = throwsCode(() => initQueue({ dbName: ':memory:', ...options }), Ctor, 'ERR_INVALID_OPTION')
      assert.match(err.message, pattern, JSON.stringify(options))
    }
    throwsCode(() => initQueue(null), TypeError, 'ERR_INVALID_OPTION')
    throwsCode(() => initQueue('events.sqlite'), TypeError, 'ERR_INVALID_OPTION')
  })

  test('busyTimeout makes a writer wait for another process, and 0 fails at once with SQLITE_BUSY', async () => {
    const file = tempDb()
    initQueue({ dbName: file }).close()
    // The other process lets go after 300 ms by its own clock, while this thread is blocked
    // in store() waiting for the lock.
    const release = await holdWriteLock(file, { forMs: 300 })
    const impatient = initQueue({ dbName: file, busyTimeout: 0 })
    throwsCode(() => impatient.store({ cmd: 'x' }), Error, 'SQLITE_BUSY')
    throwsCode(() => impatient.storeBulk([{ cmd: 'x' }, { cmd: 'y' }]), Error, 'SQLITE_BUSY')
    const patient = initQueue({ dbName: file, busyTimeout: 10000 })
    assert.equal(patient.store({ cmd: 'y' }).id, 1, 'the failed writes stored nothing')
    await release()
    impatient.close()
    patient.close()
  })

  test('datetime is called once per stored event, in order, storeBulk included', () => {
    let clock = 1000
    const q = initQueue({ dbName: ':memory:', datetime: () => clock++ })
    q.store({ cmd: 'a' })
    q.storeBulk([{ cmd: 'b' }, { cmd: 'c' }, { cmd: 'd' }])
    assert.deepEqual([1, 2, 3, 4].map((id) => q.retrieveByID(id).datetime), [1000, 1001, 1002, 1003])
    assert.equal(clock, 1004)
    q.close()
  })

  test('a clock that repeats a millisecond within a batch gives each event its own reading', () => {
    const times = [3, 3, 4, 4, 4, 3, 0, 0, -2, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER]
    const clock = times.values()
    const q = initQueue({ dbName: ':memory:', datetime: () => clock.next().value })
    const rows = q.storeBulk(times.map((_, i) => ({ cmd: `e${i}` }))).map((r) => r.row)
    assert.deepEqual(rows.map((row) => row.datetime), times)
    assert.deepEqual(rows.map((row) => q.retrieveByID(row.id).datetime), times)
    q.close()
  })

  test('a datetime that does not return an integer is refused and stores nothing', () => {
    const q = initQueue({ dbName: ':memory:', datetime: () => 'now' })
    const err = throwsCode(() => q.store({ cmd: 'a' }), TypeError, 'ERR_INVALID_EVENT')
    assert.match(err.message, /datetime/)
    q.close()
  })

  test('reset: true drops and recreates the event table on open', () => {
    const file = tempDb()
    const q = initQueue({ dbName: file })
    q.store({ cmd: 'a' })
    q.close()
    const again = initQueue({ dbName: file, reset: true })
    assert.equal(again.getLastRow(), null)
    assert.equal(again.store({ cmd: 'b' }).id, 1)
    again.close()
  })
})

describe('indexes', () => {
  const ALL = ['correlation_id', 'causation_id', 'cmd', 'user', 'datetime', 'version', 'correlation_cmd', 'user_datetime']

  test('by default only the two core indexes exist', () => {
    const q = initQueue({ dbName: tempDb() })
    assert.deepEqual(q.getIndexes(), ['idx_causation_id', 'idx_correlation_id'])
    q.close()
  })

  test('every key creates its named index on the right columns', () => {
    const file = tempDb()
    const q = initQueue({ dbName: file, indexes: Object.fromEntries(ALL.map((k) => [k, true])) })
    assert.deepEqual(q.getIndexes(), [
      'idx_causation_id', 'idx_cmd', 'idx_composite_correlation_cmd', 'idx_composite_user_datetime',
      'idx_correlation_id', 'idx_datetime', 'idx_user', 'idx_version',
    ])
    q.close()
    const raw = openRaw(file)
    const columns = (name) => raw.all(`PRAGMA index_info('${name}')`).map((r) => r.name)
    assert.deepEqual(columns('idx_composite_correlation_cmd'), ['correlation_id', 'cmd'])
    assert.deepEqual(columns('idx_composite_user_datetime'), ['user', 'datetime'])
    assert.deepEqual(columns('idx_version'), ['version'])
    raw.close()
  })

  test('an explicit false drops an index; a key left out keeps a default-false index', () => {
    const file = tempDb()
    initQueue({ dbName: file, indexes: { cmd: true, user: true } }).close()
    const kept = initQueue({ dbName: file })
    assert.deepEqual(kept.getIndexes(), ['idx_causation_id', 'idx_cmd', 'idx_correlation_id', 'idx_user'])
    kept.close()
    const dropped = initQueue({ dbName: file, indexes: { cmd: false, correlation_id: false } })
    assert.deepEqual(dropped.getIndexes(), ['idx_causation_id', 'idx_user'])
    dropped.close()
    const restored = initQueue({ dbName: file })
    assert.deepEqual(restored.getIndexes(), ['idx_causation_id', 'idx_correlation_id', 'idx_user'])
    restored.close()
  })

  test('indexes other than the eight are not listed', () => {
    const file = tempDb()
    initQueue({ dbName: file }).close()
    const raw = openRaw(file)
    raw.exec('CREATE INDEX my_own ON queue(ip)')
    raw.close()
    const q = initQueue({ dbName: file })
    assert.deepEqual(q.getIndexes(), ['idx_causation_id', 'idx_correlation_id'])
    q.close()
  })
})
