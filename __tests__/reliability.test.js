'use strict'
// Reliability: what a program lets go of is released, replays and cursors stay inside what
// they were asked for, files that vanish or cannot be written are reported, and every error
// carries a code.
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const path = require('node:path')
const { describe, test, after, tempDb } = require('./helpers')
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
