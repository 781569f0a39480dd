'use strict'
// Reliability: what a program lets go of is released, replays and cursors stay inside what
// they were asked for, files that vanish or cannot be written are reported, and every error
// carries a code.
const assert = require('node:assert/strict')
const { spawn, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const { describe, test, after, tempDb, holdWriteLock } = require('./helpers')
const { initQueue } = require('..')

const FIXTURES = path.join(__dirname, 'fixtures')

function open(options = {}) {
  const q = initQueue({ dbName: tempDb(), ...options })
  after(() => q.close())
  return q
}

/** Runs a fixture in a child process of this runtime with a soft limit of `files` descriptors; returns its JSON output. */
function runLimited(files, fixture, args, runtimeFlags = []) {
  const command = [process.execPath, ...runtimeFlags, path.join(FIXTURES, fixture), ...args]
  const run = spawnSync('bash', ['-c', `ulimit -n ${files} && exec "$@"`, 'bash', ...command], { encoding: 'utf8' })
  assert.equal(run.status, 0, `${fixture} exited with ${run.status}: ${run.stdout} ${run.stderr}`)
  return JSON.parse(run.stdout)
}

describe('dropped streams', () => {
  test('a stream read once and dropped unfinished is released when collected; close() still ends open ones', async () => {
    // Held by the queue, each such stream kept its connection: under `ulimit -n 256` the
    // 117th stream (and every initQueue) failed with SQLITE_CANTOPEN.
    const gcFlag = typeof Bun !== 'undefined' ? [] : ['--expose-gc']
    const { most } = runLimited(256, 'dropped-streams.js', [tempDb(), '2000'], gcFlag)
    assert.ok(most < 128, `at most ${most} descriptors were open at once`)

    const q = open()
    q.storeBulk([{ cmd: 'a' }, { cmd: 'b' }])
    const held = q.streamEvents({ batchSize: 1, follow: true })[Symbol.asyncIterator]()
    assert.equal((await held.next()).value[0].cmd, 'a')
    q.close()
    assert.deepEqual(await held.next(), { value: undefined, done: true })
  })
})

describe('errors from the caller\'s own objects carry a code', () => {
  test('storeBulk: an element getter, a length getter or a revoked proxy that throws is ERR_INVALID_EVENT; nothing is stored', () => {
    const q = open()
    const boom = () => { throw new Error('boom') }
    const getter = [{ cmd: 'a' }, { cmd: 'b' }]
    Object.defineProperty(getter, 1, { get: boom })
    const length = new Proxy([{ cmd: 'a' }], { get: (target, key) => (key === 'length' ? boom() : target[key]) })
    const { proxy: revoked, revoke } = Proxy.revocable([{ cmd: 'a' }], {})
    revoke()
    for (const [events, index] of [[getter, 1], [length, undefined], [revoked, undefined]]) {
      let caught
      try {
        q.storeBulk(events)
      } catch (err) {
        caught = err
      }
      assert.ok(caught instanceof TypeError, `${caught}`)
      assert.equal(caught.code, 'ERR_INVALID_EVENT')
      assert.equal(caught.index, index)
    }
    assert.equal(q.getLastRow(), null)
    assert.equal(q.getMetrics().errorsTotal, 3)
  })

  test('streamEvents: a signal whose addEventListener throws, or that lacks removeEventListener, is ERR_INVALID_OPTION', async () => {
    const q = open()
    q.store({ cmd: 'a' })
    const unlistenable = { aborted: false, addEventListener() {} }
    assert.throws(() => q.streamEvents({ signal: unlistenable }), { name: 'TypeError', code: 'ERR_INVALID_OPTION' })
    const throwing = { aborted: false, addEventListener() { throw new Error('no') }, removeEventListener() {} }
    await assert.rejects(async () => {
      for await (const batch of q.streamEvents({ signal: throwing })) assert.fail(`yielded ${batch.length} rows`)
    }, { name: 'TypeError', code: 'ERR_INVALID_OPTION' })
    const abortedGetter = { get aborted() { throw new Error('no') }, addEventListener() {}, removeEventListener() {} }
    assert.throws(() => q.streamEvents({ signal: abortedGetter }), { name: 'TypeError', code: 'ERR_INVALID_OPTION' })
    // A signal whose removeEventListener throws still ends its stream cleanly.
    const sticky = { aborted: false, addEventListener() {}, removeEventListener() { throw new Error('no') } }
    const rows = []
    for await (const batch of q.streamEvents({ signal: sticky })) rows.push(...batch)
    assert.deepEqual(rows.map((r) => r.cmd), ['a'])
  })
})

describe('cycleThrough', () => {
  test('replays the events that existed when it started, even when the model stores an event for each one', () => {
    const q = open()
    const existing = 2500
    q.storeBulk(Array.from({ length: existing }, (_, i) => ({ cmd: 'seen', data: { i } })))
    const handled = []
    // Stops storing once it has handled twice the log, so that a replay that chases its own
    // events fails the assertion below instead of running forever.
    const model = {
      seen(data, meta) {
        handled.push(meta.id)
        if (handled.length <= 2 * existing) q.store({ cmd: 'echo', data: { of: meta.id } })
      },
      echo(data, meta) {
        handled.push(meta.id)
      },
    }
    let done = 0
    q.cycleThrough(model, () => done++)
    assert.equal(done, 1)
    assert.deepEqual(handled, Array.from({ length: existing }, (_, i) => i + 1))
    assert.equal(q.getLastRow().id, 2 * existing)

    // stop and start still bound it, inside what existed.
    const bounded = []
    q.cycleThrough({ _default: (data, meta) => bounded.push(meta.id) }, null, undefined, { start: 4990, stop: 6000 })
    assert.deepEqual(bounded, Array.from({ length: 11 }, (_, i) => 4990 + i))
  })
})

describe('cursors', () => {
  test('an edited cursor cannot leave its query, and every number in it is range-checked', () => {
    let clock = 0
    const q = open({ datetime: () => (clock += 1000) })
    q.storeBulk(Array.from({ length: 100 }, (_, i) => ({ cmd: 'tick', data: { i } }))) // datetimes 1,000..100,000
    const first = q.getEventsInTimeRangePaginated(10000, 20000, { limit: 3 })
    assert.deepEqual(first.events.map((e) => e.datetime), [20000, 19000, 18000])
    const [fingerprint, passed, datetime, id] = first.nextCursor.split('_')
    const edited = (parts) => [fingerprint, passed, datetime, id].map((part, i) => parts[i] ?? part).join('_')
    const refused = (cursor) => assert.throws(
      () => q.getEventsInTimeRangePaginated(10000, 20000, { limit: 3, cursor }),
      (err) => err instanceof RangeError && err.code === 'ERR_INVALID_OPTION',
      cursor,
    )
    // Past the range's end (this returned the events at 100,000), or before its start.
    refused(edited({ 2: '100001', 3: '101' }))
    refused(edited({ 2: '9999' }))
    refused(edited({ 2: 'NaN' }))
    // A count that made nextOffset wrap to -9.2e18, or leave the safe integers.
    refused(edited({ 1: '9223372036854775800' }))
    refused(edited({ 1: String(Number.MAX_SAFE_INTEGER) }))
    refused(edited({ 3: '9007199254740993' }))
    // Inside the range an edited cursor is a narrower page of the same query.
    const narrowed = q.getEventsInTimeRangePaginated(10000, 20000, { limit: 3, cursor: edited({ 2: '15000', 3: '15' }) })
    assert.deepEqual(narrowed.events.map((e) => e.datetime), [14000, 13000, 12000])
    assert.ok(Number.isSafeInteger(narrowed.nextOffset) && narrowed.nextOffset > 0)
  })
})

describe('read-only files', () => {
  for (const journal of ['wal', 'delete']) {
    test(`reset or an index change on a read-only file throws SQLITE_READONLY (${journal} journal); a matching index option opens`, () => {
      const file = tempDb()
      const q = initQueue({ dbName: file, WAL: journal === 'wal' })
      q.store({ cmd: 'kept' })
      q.close()
      // As in lifecycle.test.js: root writes whatever the file mode says, so as root the
      // reader runs as nobody; the folder stays writable for SQLite's -shm file.
      fs.chmodSync(file, 0o444)
      fs.chmodSync(path.dirname(file), 0o1777)
      const asUser = process.getuid() === 0 ? { uid: 65534, gid: 65534 } : {}
      const openWith = (options) => {
        const run = spawnSync(process.execPath, [path.join(FIXTURES, 'read-only-reader.js'), file, journal, JSON.stringify(options)], {
          encoding: 'utf8', ...asUser,
        })
        assert.equal(run.status, 0, run.stderr)
        return JSON.parse(run.stdout)
      }
      for (const options of [{ reset: true }, { indexes: { cmd: true } }, { indexes: { correlation_id: false } }]) {
        assert.deepEqual(openWith(options), { open: { ok: false, code: 'SQLITE_READONLY' } }, JSON.stringify(options))
      }
      const matching = openWith({ indexes: { correlation_id: true, cmd: false } })
      assert.deepEqual([matching.open, matching.last], [{ ok: true }, { ok: true, value: 'kept' }])
    })
  }
})

describe('a database file deleted or replaced while open', () => {
  for (const journal of ['wal', 'delete']) {
    for (const how of ['deleted', 'replaced']) {
      test(`writes fail with SQLITE_READONLY once the file is ${how} (${journal} journal)`, () => {
        const file = tempDb()
        const q = initQueue({ dbName: file, WAL: journal === 'wal' })
        after(() => q.close())
        q.store({ cmd: 'before' })
        if (how === 'deleted') {
          fs.unlinkSync(file)
        } else {
          const other = `${file}.other`
          initQueue({ dbName: other }).close()
          fs.renameSync(other, file)
        }
        for (const write of [() => q.store({ cmd: 'lost' }), () => q.storeBulk([{ cmd: 'lost' }, { cmd: 'lost' }])]) {
          assert.throws(write, (err) => err.code === 'SQLITE_READONLY' && /moved|readonly/.test(err.message))
        }
        // Reads still see what the queue has open.
        assert.equal(q.getLastRow().cmd, 'before')
        q.close()
        const fresh = initQueue({ dbName: file })
        assert.equal(fresh.getEventsByCmdPaginated('lost').totalCount, 0)
        fresh.close()
      })
    }
  }
})

describe('reset and following streams', () => {
  test('a follow stream sees the events stored after reset(), from the first id of the new log', async () => {
    const q = open({ risky: true })
    q.storeBulk([{ cmd: 'old' }, { cmd: 'old' }, { cmd: 'old' }])
    const controller = new AbortController()
    const seen = []
    let step = 0
    for await (const batch of q.streamEvents({ follow: true, signal: controller.signal })) {
      seen.push(...batch.map((e) => `${e.id}:${e.cmd}`))
      if (step === 0 && seen.length === 3) {
        step = 1
        q.reset()
        // More events than the old log held, stored before the stream looks again.
        q.storeBulk(Array.from({ length: 5 }, () => ({ cmd: 'new' })))
      }
      // The last event stored ends it, whether or not the ones before it were seen.
      if (batch.some((e) => e.cmd === 'new' && e.id === 5)) controller.abort()
    }
    assert.deepEqual(seen, ['1:old', '2:old', '3:old', '1:new', '2:new', '3:new', '4:new', '5:new'])
  })
})

describe('leaving WAL mode while another connection holds the file', () => {
  test('opening with WAL: false waits for the other connection, within busyTimeout, instead of failing at once', async () => {
    const file = tempDb()
    initQueue({ dbName: file }).close() // a file in WAL mode
    const release = await holdWriteLock(file)
    const source = `
      const { initQueue } = require(${JSON.stringify(path.join(__dirname, '..'))})
      try {
        const q = initQueue({ dbName: ${JSON.stringify(file)}, WAL: false, busyTimeout: 600000 })
        process.stdout.write(JSON.stringify({ journalMode: q.getMetrics().journalMode }))
        q.close()
      } catch (err) {
        process.stdout.write(JSON.stringify({ code: err.code }))
      }`
    const opener = spawn(process.execPath, ['-e', source], { stdio: ['ignore', 'pipe', 'inherit'] })
    let output = ''
    opener.stdout.on('data', (chunk) => (output += chunk))
    const exited = new Promise((resolve) => opener.on('exit', resolve))
    let done = false
    exited.then(() => (done = true))
    // The lock is let go only once the opener has tried to leave WAL mode: it has the file's
    // -shm open by then (it had to read the WAL to find the mode). Opening gave up within a
    // millisecond of that; now it waits, and succeeds once the lock is free.
    const hasShm = () => {
      try {
        return fs.readdirSync(`/proc/${opener.pid}/fd`).some((fd) => {
          try {
            return fs.readlinkSync(`/proc/${opener.pid}/fd/${fd}`) === `${file}-shm`
          } catch {
            return false
          }
        })
      } catch {
        return false
      }
    }
    while (!done && !hasShm()) await new Promise((resolve) => setTimeout(resolve, 5))
    await release()
    await exited
    assert.deepEqual(JSON.parse(output), { journalMode: 'DELETE' })
  })
})

describe('user code that throws after the commit', () => {
  test('a callbacks._error that throws leaves store and storeBulk, and the events are stored; the correlation id tells a retry', () => {
    const q = open()
    const model = { go() { throw new Error('model failed') } }
    const callbacks = { _error() { throw new Error('the error handler failed too') } }
    assert.throws(() => q.store({ cmd: 'go', correlationId: 'op-1' }, model, callbacks), /error handler failed/)
    assert.deepEqual(q.getTransaction('op-1').map((e) => e.cmd), ['go'])
    const executed = []
    const counting = { go(data) { executed.push(data.n); if (data.n === 1) throw new Error('model failed') } }
    assert.throws(
      () => q.storeBulk([0, 1, 2].map((n) => ({ cmd: 'go', data: { n }, correlationId: 'op-2' })), counting, callbacks),
      /error handler failed/,
    )
    assert.deepEqual(executed, [0, 1], 'the rows after the throw are not executed')
    assert.deepEqual(q.getTransaction('op-2').map((e) => e.data.n), [0, 1, 2], 'but all three are stored')
  })
})
