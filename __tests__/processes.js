'use strict'
// Writer processes for the crash and concurrency tests, and what they left in the file. A
// writer is one of the fixtures that print "ack <firstId> <lastId> <batchKey> <size>" after
// each acknowledged write, each event's data naming its writer, batch, size and position:
// fixtures/append-loop.js (initQueue) and fixtures/async-append-loop.js (openQueue).
const assert = require('node:assert/strict')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { openRaw } = require('./helpers')

const FIXTURES = {
  sync: path.join(__dirname, 'fixtures', 'append-loop.js'),
  async: path.join(__dirname, 'fixtures', 'async-append-loop.js'),
}

/**
 * Starts a writer process (`kind` sync or async); `acks` fills as it acknowledges, `exited`
 * settles on exit. With `barrier`, it opens its queue, then `ready` settles, and it writes once
 * `go()` is called.
 */
function startWriter(kind, file, journal, name, operations, seed, barrier = false) {
  const args = [FIXTURES[kind], file, journal, name, String(operations), String(seed), ...(barrier ? ['barrier'] : [])]
  const child = spawn(process.execPath, args, { stdio: [barrier ? 'pipe' : 'ignore', 'pipe', 'pipe'] })
  let onReady
  const ready = new Promise((resolve) => { onReady = resolve })
  const go = () => child.stdin.end('go\n')
  const acks = []
  let pending = ''
  let stderr = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (chunk) => {
    pending += chunk
    const lines = pending.split('\n')
    pending = lines.pop()
    for (const line of lines) {
      if (line === 'ready') {
        onReady()
        continue
      }
      const [, first, last, key, size] = line.split(' ')
      acks.push({ first: Number(first), last: Number(last), key, size: Number(size) })
    }
  })
  child.stderr.on('data', (chunk) => { stderr += chunk })
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal, stderr })))
  return { child, acks, exited, ready, go }
}

/** Resolves once `condition()` holds, checking between turns of the event loop. */
const until = async (condition) => {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5))
}

/** Every row of the file, as `{ id, writer, batch, size, at }`, and SQLite's integrity check. */
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

/** Checks that every acknowledged batch is in the file, with the ids it was acknowledged with. */
function assertAcknowledgedStored(batches, acks) {
  for (const ack of acks) {
    const batch = batches.get(ack.key)
    assert.ok(batch, `acknowledged batch ${ack.key} is in the file`)
    assert.deepEqual([batch[0].id, batch.at(-1).id, batch.length], [ack.first, ack.last, ack.size])
  }
}

module.exports = { startWriter, until, storedEvents, assertBatchesWhole, assertAcknowledgedStored }
