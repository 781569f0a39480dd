'use strict'
// An acknowledged event must survive the death of the process that wrote it, and processes
// sharing a file must neither lose nor duplicate each other's events.
const assert = require('node:assert/strict')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { describe, test, tempDb, startAcking, storedEvents, assertBatchesWhole, assertAcknowledged } = require('./helpers')
const { initQueue } = require('..')

const WRITER = path.join(__dirname, 'fixtures', 'append-loop.js')
const READER = path.join(__dirname, 'fixtures', 'follow-reader.js')

/** Starts a process that follows the file; `done(total)` tells it how many events to expect. */
function startFollower(file, journal) {
  const child = spawn(process.execPath, [READER, file, journal], { stdio: ['pipe', 'pipe', 'pipe'] })
  let out = ''
  let stderr = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (chunk) => { out += chunk })
  child.stderr.on('data', (chunk) => { stderr += chunk })
  const ready = new Promise((resolve) => child.stdout.once('data', resolve))
  const exited = new Promise((resolve) => child.once('exit', (code) => resolve({ code, stderr })))
  const done = async (total) => {
    child.stdin.write(`${total}\n`)
    const { code } = await exited
    assert.equal(code, 0, `the follower failed: ${stderr}`)
    return JSON.parse(out.split('\n').filter(Boolean).pop())
  }
  /** Ends the follower if it still runs (a failed assertion before `done`). */
  const stop = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  }
  return { ready, done, stop }
}

/**
 * Starts a writer process (see `startAcking`). With `barrier`, it opens its queue, then `ready`
 * settles, and it writes once `go()` is called.
 */
function startWriter(file, journal, name, operations, seed, barrier = false) {
  const args = [file, journal, name, String(operations), String(seed), ...(barrier ? ['barrier'] : [])]
  const writer = startAcking(WRITER, args, { stdin: barrier ? 'pipe' : 'ignore' })
  return { ...writer, ready: barrier && writer.line('ready'), go: () => writer.child.stdin.end('go\n') }
}

const until = async (condition) => {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5))
}

describe('crash safety', () => {
  for (const journal of ['wal', 'delete']) {
    test(`acknowledged events survive SIGKILL at random moments (${journal} journal)`, async () => {
      const file = tempDb()
      const acknowledged = []
      for (let kill = 0; kill < 4; kill++) {
        const writer = startWriter(file, journal, `w${kill}`, 0, 17 + kill)
        await until(() => writer.acks.length >= 5 + kill * 7)
        await new Promise((resolve) => setTimeout(resolve, Math.floor(Math.random() * 30)))
        writer.child.kill('SIGKILL')
        const { signal } = await writer.exited
        assert.equal(signal, 'SIGKILL')
        acknowledged.push(...writer.acks)
      }
      const { rows, integrity } = storedEvents(file)
      assert.equal(integrity, 'ok')
      assertAcknowledged(rows, acknowledged)
      const q = initQueue({ dbName: file, WAL: journal === 'wal' })
      const next = q.store({ cmd: 'after-the-crashes' })
      assert.equal(next.id, rows.at(-1).id + 1, 'a new queue continues the ids')
      q.close()
    })
  }
})

describe('concurrent processes', () => {
  for (const journal of ['wal', 'delete']) {
    test(`writers in separate processes neither lose nor duplicate events, and a follower sees each once (${journal} journal)`, async () => {
      const file = tempDb()
      initQueue({ dbName: file, WAL: journal === 'wal' }).close()
      const follower = startFollower(file, journal)
      try {
        await follower.ready
        await writeAndCheck(file, journal, follower)
      } finally {
        follower.stop()
      }
    })
  }
})

/**
 * Three writers released at the same instant, once each has its queue open, then the file and
 * the follower checked against what they acknowledged.
 */
async function writeAndCheck(file, journal, follower) {
  const writers = ['a', 'b', 'c'].map((name, k) => startWriter(file, journal, name, 300, 5 + k, true))
  await Promise.all(writers.map((w) => w.ready))
  for (const w of writers) w.go()
  const results = await Promise.all(writers.map((w) => w.exited))
  for (const { code, stderr } of results) assert.equal(code, 0, `a writer failed: ${stderr}`)
  const { rows, integrity } = storedEvents(file)
  assert.equal(integrity, 'ok')
  const batches = assertBatchesWhole(rows)
  const acks = writers.flatMap((w) => w.acks)
  assert.equal(acks.length, 900)
  assert.equal(batches.size, 900, 'every acknowledged batch once, nothing else')
  assert.equal(rows.length, acks.reduce((n, a) => n + a.size, 0))
  assert.equal(new Set(rows.map((r) => r.id)).size, rows.length, 'ids are unique')
  for (const w of writers) {
    const firsts = w.acks.map((a) => a.first)
    assert.ok(firsts.every((id, k) => k === 0 || id > firsts[k - 1]), 'each writer sees its ids increase')
  }
  const followed = await follower.done(rows.length)
  assert.deepEqual(followed, {
    count: rows.length,
    last: rows.at(-1).id,
    sum: rows.reduce((n, r) => n + r.id, 0),
    ordered: true,
  }, 'the follower saw every event exactly once, in id order')
  // In WAL mode the writers' events interleave throughout. In rollback mode SQLite's busy
  // handler is not fair (a waiting writer sleeps while the one that just committed takes the
  // lock again), so their rows may come in blocks even though all three wrote at once.
  if (journal === 'wal') {
    const switches = rows.filter((r, k) => k > 0 && r.writer !== rows[k - 1].writer).length
    assert.ok(switches >= 3, `the writers ran at the same time (${switches} interleavings)`)
  }
}
