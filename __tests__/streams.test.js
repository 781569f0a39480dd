'use strict'
// Streams: expected versions (optimistic concurrency) and idempotent appends, on store,
// storeBulk and storeWithContext; getStreamVersion, also while another program appends; and
// retries after a writer died between its commit and its acknowledgement.
const assert = require('node:assert/strict')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { describe, test, after, tempDb, openRaw, throwsCode, sqlElsewhere, recordingModel, recordingCallbacks } = require('./helpers')
const { initQueue } = require('..')

const KEYED_WRITER = path.join(__dirname, 'fixtures', 'keyed-writer.js')
const RACER = path.join(__dirname, 'fixtures', 'version-racer.js')

function open(options = {}) {
  const q = initQueue({ dbName: tempDb(), ...options })
  after(() => q.close())
  return q
}

const count = (q) => q.getMetrics().eventCount

/** Runs a fixture in a process of this runtime; resolves with how it ended and what it printed. */
function run(script, args, { onLine, input } = {}) {
  const child = spawn(process.execPath, [script, ...args.map(String)], { stdio: ['pipe', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  let pending = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (chunk) => {
    stdout += chunk
    pending += chunk
    const lines = pending.split('\n')
    pending = lines.pop()
    if (onLine) lines.forEach((line) => onLine(line, child))
  })
  child.stderr.on('data', (chunk) => { stderr += chunk })
  if (input !== undefined) child.stdin.end(input)
  // 'close', not 'exit': by then everything the child printed has been read.
  const exited = new Promise((resolve) => child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr })))
  return { child, exited }
}

/** The "ack <i> <id> <duplicate>" lines of a keyed writer, as objects. */
const acks = (stdout) => stdout.split('\n').filter((l) => l.startsWith('ack ')).map((l) => {
  const [, i, id, duplicate] = l.split(' ')
  return { i: Number(i), id: Number(id), duplicate: duplicate === 'true' }
})

describe('expectedVersion', () => {
  test('an append happens only at the expected version; a conflict throws with the versions and stores nothing', () => {
    const q = open()
    assert.equal(q.getStreamVersion('order-1'), 0, 'a stream never written is at version 0')
    const row = q.store({ cmd: 'opened', correlationId: 'order-1', expectedVersion: 0 })
    assert.equal(row.id, 1)
    q.store({ cmd: 'paid', correlationId: 'order-1', expectedVersion: 1 })
    assert.equal(q.getStreamVersion('order-1'), 2)
    const err = throwsCode(() => q.store({ cmd: 'paid', correlationId: 'order-1', expectedVersion: 1 }), Error, 'ERR_VERSION_CONFLICT')
    assert.equal(err.correlationId, 'order-1')
    assert.equal(err.expectedVersion, 1)
    assert.equal(err.actualVersion, 2)
    assert.equal('index' in err, false, 'store has no index')
    assert.match(err.message, /version 2, not the expected 1/)
    assert.equal(count(q), 2)
    assert.equal(q.getMetrics().errorsTotal, 1)
  })

  test('a conflict runs no model; an append at the expected version runs it as store does', () => {
    const q = open()
    const { model, calls } = recordingModel()
    assert.equal(q.store({ cmd: 'x', correlationId: 's', expectedVersion: 0 }, model), 'default')
    throwsCode(() => q.store({ cmd: 'x', correlationId: 's', expectedVersion: 0 }, model), Error, 'ERR_VERSION_CONFLICT')
    assert.deepEqual(calls.map((c) => c[0]), ['_default', '_done'])
  })

  test('in storeBulk, earlier events of the batch count, and a conflict stores none of it', () => {
    const q = open()
    q.store({ cmd: 'a', correlationId: 's' })
    const rows = q.storeBulk([
      { cmd: 'b', correlationId: 's', expectedVersion: 1 },
      { cmd: 'c', correlationId: 't', expectedVersion: 0 },
      { cmd: 'd', correlationId: 's' },
      { cmd: 'e', correlationId: 's', expectedVersion: 3 },
    ])
    assert.deepEqual(rows.map((r) => r.row.id), [2, 3, 4, 5])
    assert.deepEqual(rows.map((r) => Object.keys(r)), Array(4).fill(['row', 'result']))
    const err = throwsCode(() => q.storeBulk([
      { cmd: 'f', correlationId: 't' },
      { cmd: 'g', correlationId: 's', expectedVersion: 4 },
      { cmd: 'h', correlationId: 't', expectedVersion: 1 },
    ]), Error, 'ERR_VERSION_CONFLICT')
    assert.deepEqual(
      { index: err.index, correlationId: err.correlationId, expectedVersion: err.expectedVersion, actualVersion: err.actualVersion },
      { index: 2, correlationId: 't', expectedVersion: 1, actualVersion: 2 },
    )
    assert.match(err.message, /^storeBulk\(events\)\[2\]/)
    assert.equal(count(q), 5)
    assert.deepEqual([q.getStreamVersion('s'), q.getStreamVersion('t')], [4, 1])
  })

  test('storeWhen: a pending event is checked when it is executed, and a repeat of its key stores nothing', () => {
    const q = open()
    const waitFor = { all: [{ pattern: 'paid', correlationId: 'o-1' }] }
    q.store({ cmd: 'opened', correlationId: 'o-1' })
    // Expects the stream at 2 when it runs: the 'paid' that releases it makes it so.
    q.storeWhen({ cmd: 'ship', correlationId: 'o-1', expectedVersion: 2, idempotencyKey: 'ship-o-1', waitFor })
    // Expects 1, which no longer holds once 'paid' is stored: a conflict, reported, left ready.
    const stale = q.storeWhen({ cmd: 'late', correlationId: 'o-1', expectedVersion: 1, waitFor })
    q.store({ cmd: 'paid', correlationId: 'o-1' })
    const { callbacks, calls } = recordingCallbacks()
    const done = q.executeReadyEvents(undefined, callbacks)
    assert.deepEqual(done.map((d) => d.pendingEvent.event_data.includes('"ship"')), [true])
    assert.deepEqual(q.getTransaction('o-1').map((r) => r.cmd), ['opened', 'paid', 'ship'])
    const errors = calls.filter(([kind]) => kind === '_error')
    assert.equal(errors.length, 1)
    assert.equal(errors[0][1].error.code, 'ERR_VERSION_CONFLICT')
    assert.deepEqual(q.checkAllPendingEvents().map((r) => r.id), [stale.pendingEventId])
    // The same key again, pending: executed, it stores nothing and answers with the first row.
    q.storeWhen({ cmd: 'ship', correlationId: 'o-1', idempotencyKey: 'ship-o-1', waitFor })
    const again = q.executeReadyEvents().filter((d) => d.pendingEvent.event_data.includes('"ship"'))
    assert.equal(again.length, 1)
    assert.equal(again[0].result.cmd, 'ship')
    assert.equal(q.getStreamVersion('o-1'), 3)
  })

  test('storeWithContext checks against the context\'s stream', () => {
    const q = open()
    q.storeWithContext({ cmd: 'a', expectedVersion: 0 }, { correlationId: 'ctx' })
    const err = throwsCode(() => q.storeWithContext({ cmd: 'b', correlationId: 'other', expectedVersion: 0 }, { correlationId: 'ctx' }), Error, 'ERR_VERSION_CONFLICT')
    assert.equal(err.correlationId, 'ctx')
    assert.equal(q.getStreamVersion('other'), 0)
  })

  test('a stream inherited through causationId is checked; without any correlation id it is ERR_INVALID_EVENT', () => {
    const q = open()
    const parent = q.store({ cmd: 'a', correlationId: 'fam' })
    assert.equal(q.store({ cmd: 'b', causationId: parent.id, expectedVersion: 1 }).correlation_id, 'fam')
    throwsCode(() => q.store({ cmd: 'c', causationId: parent.id, expectedVersion: 1 }), Error, 'ERR_VERSION_CONFLICT')
    throwsCode(() => q.store({ cmd: 'd', expectedVersion: 0 }), TypeError, 'ERR_INVALID_EVENT')
    throwsCode(() => q.store({ cmd: 'd', causationId: 999, expectedVersion: 0 }), Error, 'ERR_INVALID_EVENT')
    const err = throwsCode(() => q.storeBulk([{ cmd: 'e', correlationId: 'fam' }, { cmd: 'f', causationId: 999, expectedVersion: 0 }]), Error, 'ERR_INVALID_EVENT')
    assert.match(err.message, /event 1/)
    assert.equal(count(q), 2)
  })

  test('expectedVersion must be an integer >= 0', () => {
    const q = open()
    for (const bad of [-1, 1.5, '1', NaN, true, {}]) {
      const err = throwsCode(() => q.store({ cmd: 'x', correlationId: 's', expectedVersion: bad }), TypeError, 'ERR_INVALID_EVENT')
      assert.match(err.message, /expectedVersion/)
    }
    const err = throwsCode(() => q.storeBulk([{ cmd: 'x', correlationId: 's' }, { cmd: 'y', correlationId: 's', expectedVersion: -2 }]), TypeError, 'ERR_INVALID_EVENT')
    assert.equal(err.index, 1)
    assert.equal(q.store({ cmd: 'x', correlationId: 's', expectedVersion: null }).id, 1, 'null means none, like undefined')
    assert.equal(count(q), 1)
  })

  test('getStreamVersion takes a correlation id', () => {
    const q = open()
    q.store({ cmd: 'x', correlationId: '42' })
    assert.equal(q.getStreamVersion(42), 1, 'a number, as SQLite compares it')
    for (const bad of [undefined, null, {}, ['a']]) throwsCode(() => q.getStreamVersion(bad), TypeError, 'ERR_INVALID_ARG')
  })

  test('two processes racing on one stream never both append at the same version', async () => {
    const file = tempDb()
    initQueue({ dbName: file }).close()
    const racers = ['a', 'b'].map((name) => {
      let ready
      const isReady = new Promise((resolve) => { ready = resolve })
      const racer = run(RACER, [file, name, 60], { onLine: (line) => line === 'ready' && ready() })
      return { ...racer, isReady }
    })
    await Promise.all(racers.map((r) => r.isReady))
    for (const racer of racers) racer.child.stdin.end('go\n')
    const results = await Promise.all(racers.map((r) => r.exited))
    for (const result of results) assert.equal(result.code, 0, result.stderr)
    const q = initQueue({ dbName: file })
    after(() => q.close())
    const steps = q.getTransaction('order')
    assert.equal(steps.length, 120)
    // Each event expected the version before it: every version was claimed exactly once.
    assert.deepEqual(steps.map((row) => row.data.version), steps.map((_, i) => i))
    // And each was decided on exactly the history it expected: no append was based on stale state.
    assert.deepEqual(steps.map((row) => row.data.seen), steps.map((_, i) => i))
    assert.deepEqual(['a', 'b'].map((w) => steps.filter((row) => row.data.writer === w).length), [60, 60])
  })
})

describe('getStreamVersion beside EventLite', () => {
  const EVENTLITE_INSERT = "INSERT INTO queue (version, datetime, user, ip, cmd, data, correlation_id, causation_id, metadata) VALUES (1, 0, '', '', 'legacy', '{}', 'shared', NULL, '{}')"

  test('stays right while another program appends, deletes and resets, and the queue table is untouched', () => {
    const file = tempDb()
    const q = initQueue({ dbName: file })
    after(() => q.close())
    q.storeBulk(Array.from({ length: 5 }, () => ({ cmd: 'own', correlationId: 'shared' })))
    sqlElsewhere(file, Array(3).fill(EVENTLITE_INSERT).join(';'))
    assert.equal(q.getStreamVersion('shared'), 8)
    // Hundreds at once: the versions fold them in, and stay exact.
    sqlElsewhere(file, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 700) ${EVENTLITE_INSERT.replace(' VALUES (', ' SELECT ').replace(/\)$/, ' FROM n')}`)
    assert.equal(q.getStreamVersion('shared'), 708)
    q.store({ cmd: 'own', correlationId: 'shared', expectedVersion: 708 })
    sqlElsewhere(file, 'DELETE FROM queue WHERE id <= 10')
    assert.equal(q.getStreamVersion('shared'), 699)
    // EventLite's reset: the table dropped and made again; ids start at 1.
    sqlElsewhere(file, `DROP TABLE queue; CREATE TABLE queue (id INTEGER PRIMARY KEY AUTOINCREMENT, version INTEGER DEFAULT 1, datetime INTEGER NOT NULL, user TEXT, ip TEXT, cmd TEXT NOT NULL, data TEXT, correlation_id TEXT, causation_id INTEGER, metadata TEXT); ${EVENTLITE_INSERT}`)
    assert.equal(q.getStreamVersion('shared'), 1)
    assert.equal(q.store({ cmd: 'own', correlationId: 'shared', expectedVersion: 1 }).id, 2)
  })

  test('the queue table keeps EventLite\'s layout, and nothing runs on its inserts', () => {
    const file = tempDb()
    const q = initQueue({ dbName: file })
    q.store({ cmd: 'x', correlationId: 'c', expectedVersion: 0, idempotencyKey: 'k' })
    q.close()
    const raw = openRaw(file)
    assert.match(raw.get("SELECT sql FROM sqlite_master WHERE name = 'queue'").sql, /^CREATE TABLE queue \(\s*id INTEGER PRIMARY KEY AUTOINCREMENT,/)
    const triggers = raw.all("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'queue'")
    assert.deepEqual(triggers.map((t) => t.name).sort(), ['eventlite_stream_versions_delete', 'eventlite_stream_versions_update'])
    for (const t of triggers) assert.doesNotMatch(t.sql, /AFTER INSERT/)
    raw.exec(EVENTLITE_INSERT)
    assert.equal(raw.get('SELECT COUNT(*) AS n FROM queue').n, 2)
    raw.close()
  })
})

describe('idempotencyKey', () => {
  test('a repeated key stores nothing, runs nothing, and returns the row stored the first time', () => {
    const q = open({ datetime: (() => { let t = 0; return () => ++t })() })
    const { model, calls } = recordingModel()
    const { callbacks, calls: callbackCalls } = recordingCallbacks()
    const first = q.store({ cmd: 'pay', data: { amount: 5 }, correlationId: 'acct', idempotencyKey: 'req-1' })
    const again = q.store({ cmd: 'pay', data: { amount: 999 }, correlationId: 'acct', idempotencyKey: 'req-1' }, model, callbacks)
    assert.deepEqual(again, q.retrieveByID(first.id))
    assert.deepEqual(again.data, { amount: 5 })
    assert.deepEqual([calls, callbackCalls], [[], []])
    assert.equal(count(q), 1)
    assert.equal(q.getMetrics().writesTotal, 1)
    assert.equal(q.store({ cmd: 'pay', data: { amount: 1 }, correlationId: 'acct', idempotencyKey: 'req-2' }, model), 'default')
    assert.equal(count(q), 2)
  })

  test('storeBulk marks repeats, from the file or from the batch itself, and stores the rest', () => {
    const q = open()
    q.store({ cmd: 'a', correlationId: 'c', idempotencyKey: 'k1' })
    const { model, calls } = recordingModel()
    const results = q.storeBulk([
      { cmd: 'b', correlationId: 'c', idempotencyKey: 'k2' },
      { cmd: 'a2', correlationId: 'c', idempotencyKey: 'k1' },
      { cmd: 'c', correlationId: 'c' },
      { cmd: 'b2', correlationId: 'c', idempotencyKey: 'k2' },
      { cmd: 'd', correlationId: 'c', idempotencyKey: 'k3' },
    ], model)
    assert.deepEqual(results.map((r) => [r.row.id, r.row.cmd, r.duplicate === true]), [
      [2, 'b', false], [1, 'a', true], [3, 'c', false], [2, 'b', true], [4, 'd', false],
    ])
    assert.deepEqual(results.map((r) => r.result), ['default', null, 'default', null, 'default'])
    assert.deepEqual(calls.filter((c) => c[0] === '_done').map((c) => c[1]), [2, 3, 4])
    assert.deepEqual(results[1], { row: q.retrieveByID(1), result: null, duplicate: true })
    assert.equal(count(q), 4)
  })

  test('a retry with its expected version is a repeat, not a conflict', () => {
    const q = open()
    const event = { cmd: 'open', correlationId: 'acct', expectedVersion: 0, idempotencyKey: 'open-acct' }
    const first = q.store(event)
    assert.deepEqual(q.store(event), first)
    assert.equal(q.getStreamVersion('acct'), 1)
  })

  test('a batch refused by a conflict remembers none of its keys', () => {
    const q = open()
    q.store({ cmd: 'a', correlationId: 's' })
    throwsCode(() => q.storeBulk([{ cmd: 'b', correlationId: 's', idempotencyKey: 'kb' }, { cmd: 'c', correlationId: 's', expectedVersion: 0 }]), Error, 'ERR_VERSION_CONFLICT')
    assert.equal(q.store({ cmd: 'b', correlationId: 's', idempotencyKey: 'kb' }).id, 2)
  })

  test('keys are strings of 1 to 256 characters', () => {
    const q = open()
    q.store({ cmd: 'x', idempotencyKey: 'é'.repeat(256) })
    throwsCode(() => q.store({ cmd: 'x', idempotencyKey: 'x'.repeat(257) }), RangeError, 'ERR_INVALID_EVENT')
    throwsCode(() => q.store({ cmd: 'x', idempotencyKey: '' }), RangeError, 'ERR_INVALID_EVENT')
    throwsCode(() => q.store({ cmd: 'x', idempotencyKey: 7 }), TypeError, 'ERR_INVALID_EVENT')
    throwsCode(() => q.store({ cmd: 'x', idempotencyKey: '\ud800' }), TypeError, 'ERR_INVALID_EVENT')
    const err = throwsCode(() => q.storeBulk([{ cmd: 'y' }, { cmd: 'x', idempotencyKey: {} }]), TypeError, 'ERR_INVALID_EVENT')
    assert.equal(err.index, 1)
    assert.equal(count(q), 1)
  })

  test('reset forgets keys and versions', () => {
    const q = open({ risky: true })
    q.store({ cmd: 'x', correlationId: 's', idempotencyKey: 'k' })
    q.reset()
    assert.equal(q.getStreamVersion('s'), 0)
    const again = q.store({ cmd: 'x', correlationId: 's', idempotencyKey: 'k', expectedVersion: 0 })
    assert.equal(again.id, 1)
    assert.equal(count(q), 1)
  })

  test('keys live in a table of their own', () => {
    const file = tempDb()
    const q = initQueue({ dbName: file })
    q.store({ cmd: 'x', idempotencyKey: 'k' })
    q.close()
    const raw = openRaw(file)
    assert.deepEqual(raw.all('SELECT key, event_id FROM eventlite_idempotency_keys'), [{ key: 'k', event_id: 1 }])
    raw.close()
  })
})

describe('retries after a crash between commit and acknowledgement', () => {
  test('a writer killed after its commit, before its acknowledgement, is retried: the event is stored once', async () => {
    const file = tempDb()
    const died = await run(KEYED_WRITER, [file, 0, 2, 1]).exited
    assert.equal(died.signal, 'SIGKILL', died.stderr)
    assert.deepEqual(acks(died.stdout).map((a) => a.i), [0], 'event 1 was committed, never acknowledged')
    const retried = await run(KEYED_WRITER, [file, 0, 2, -1]).exited
    assert.equal(retried.code, 0, retried.stderr)
    const q = initQueue({ dbName: file })
    after(() => q.close())
    assert.deepEqual(q.getTransaction('account').map((r) => r.data.i), [0, 1])
    assert.deepEqual(acks(retried.stdout), [{ i: 0, id: 1, duplicate: false }, { i: 1, id: 2, duplicate: true }])
  })

  test('a writer killed from outside at any point, then retried from the start, stores each event once', async () => {
    const file = tempDb()
    const total = 120
    // Killed once it has acknowledged 37 events: wherever it is by then (writing, committing,
    // between the two), the retry of all 120 must leave each exactly once.
    const first = run(KEYED_WRITER, [file, 0, total, -1], {
      onLine: (line, child) => { if (line.startsWith('ack 36 ')) child.kill('SIGKILL') },
    })
    const died = await first.exited
    assert.equal(died.signal, 'SIGKILL', died.stderr)
    const before = acks(died.stdout)
    const retried = await run(KEYED_WRITER, [file, 0, total, -1]).exited
    assert.equal(retried.code, 0, retried.stderr)
    const q = initQueue({ dbName: file })
    after(() => q.close())
    const stored = q.getTransaction('account')
    assert.deepEqual(stored.map((r) => r.data.i), Array.from({ length: total }, (_, i) => i))
    assert.deepEqual(stored.map((r) => r.id), Array.from({ length: total }, (_, i) => i + 1))
    const ids = new Map(acks(retried.stdout).map((a) => [a.i, a.id]))
    assert.ok(before.length >= 37)
    for (const ack of before) assert.equal(ids.get(ack.i), ack.id, `event ${ack.i} keeps the id first acknowledged`)
  })
})
