'use strict'
// Another SQLite library in the process that holds a queue (better-sqlite3 under Node,
// bun:sqlite under Bun, as EventLite's query engine and developer tools do) opening, reading,
// writing and closing the same file: the queue's locks must survive its close and be seen by
// it, or it truncates the -shm the queue has mapped (SIGBUS) and it, or another process,
// deletes the WAL the queue still writes to. Each scenario runs in a child process, which is
// what such a failure kills.
const assert = require('node:assert/strict')
const path = require('node:path')
const { describe, test, tempDb, startAcking, storedEvents, assertAcknowledged } = require('./helpers')
const { initQueue } = require('..')

const OTHER = path.join(__dirname, 'fixtures', 'neighbour-library.js')
const WRITER = path.join(__dirname, 'fixtures', 'append-loop.js')

/** Checks that the file holds every acknowledged event, whole, and nothing else. */
function assertStored(file, acks) {
  const { rows, integrity } = storedEvents(file)
  assert.equal(integrity, 'ok')
  assertAcknowledged(rows, acks)
  assert.equal(rows.length, acks.reduce((n, a) => n + a.size, 0), 'nothing but the acknowledged events')
}

/** Ends a child that still runs (after a failed assertion). */
function stop(child) {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
}

// Elsewhere the hazard stands (README, "Other SQLite libraries in the same process").
const guarded = process.platform === 'linux' && ['x64', 'arm64'].includes(process.arch)

;(guarded ? describe : describe.skip)('other SQLite libraries in the same process', () => {
  test('opening, reading, writing and closing the file beside an open queue neither crashes the process nor loses an event', async () => {
    const file = tempDb()
    const ours = startAcking(OTHER, [file, '50', 'large', 'close'], { stdin: 'pipe' })
    try {
      await ours.line('ready')
      ours.child.stdin.end('go\n')
      const { code, signal, stderr } = await ours.exited
      assert.deepEqual({ code, signal }, { code: 0, signal: null }, `the process failed: ${stderr}`)
      assertStored(file, ours.acks)
    } finally {
      stop(ours.child)
    }
  })

  test('with other processes writing and closing their queues, every acknowledged event survives SIGKILL', async () => {
    const file = tempDb()
    initQueue({ dbName: file }).close()
    const ours = startAcking(OTHER, [file, '50', 'small', 'hold'], { stdin: 'pipe' })
    const during = startAcking(WRITER, [file, 'wal', 'during', '150', '3', 'barrier'], { stdin: 'pipe' })
    try {
      await Promise.all([ours.line('ready'), during.line('ready')])
      ours.child.stdin.write('go\n')
      during.child.stdin.end('go\n')
      await ours.line('looped')
      // A process that closes its queue after the other library's turns: a close that
      // believes itself the last checkpoints and deletes the WAL ours still writes to.
      const after = startAcking(WRITER, [file, 'wal', 'after', '20', '4'])
      for (const writer of [during, after]) {
        const { code, stderr } = await writer.exited
        assert.equal(code, 0, `a writer process failed: ${stderr}`)
      }
      ours.child.stdin.write('more\n')
      await ours.line('idle')
      ours.child.kill('SIGKILL')
      assert.equal((await ours.exited).signal, 'SIGKILL')
      assertStored(file, [...ours.acks, ...during.acks, ...after.acks])
    } finally {
      stop(ours.child)
      stop(during.child)
    }
  })
})
