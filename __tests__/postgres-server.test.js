'use strict'
// The PostgreSQL server the tests and the benchmark start (scripts/postgres.js), and the
// tests' helper over it (pg-server.js): a real server, reached with node-postgres (`pg`).
const assert = require('node:assert/strict')
const { spawn, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const { Client } = require('pg')
const postgres = require('../scripts/postgres')
const { describe, test, tempDir } = require('./helpers')
const { pgUrl, pgTest, pgDescribe, freshSchema, restartPg } = require('./pg-server')

const SCRIPT = path.join(__dirname, '..', 'scripts', 'postgres.js')

/** Runs `fn` with a client connected to `url`, and ends the client whatever happens. */
async function withClient(url, fn) {
  const client = new Client({ connectionString: url })
  await client.connect()
  try {
    return await fn(client)
  } finally {
    await client.end()
  }
}

/** The URL with its password replaced. */
function withPassword(url, password) {
  const parsed = new URL(url)
  parsed.password = password
  return parsed.toString()
}

/** What connecting to `url` rejects with. */
async function connectError(url) {
  const client = new Client({ connectionString: url })
  try {
    await client.connect()
  } catch (err) {
    return err
  } finally {
    await client.end().catch(() => {})
  }
  throw new Error(`connecting to ${url} succeeded`)
}

pgDescribe('scripts/postgres.js', () => {
  test('start gives a server on 127.0.0.1 that takes its password over TCP and refuses a wrong one with 28P01', async () => {
    const server = postgres.start({ durable: false })
    try {
      const url = new URL(server.url)
      assert.equal(url.hostname, '127.0.0.1')
      assert.equal(Number(url.port), server.port)
      const version = await withClient(server.url, async (c) => Number((await c.query('SHOW server_version_num')).rows[0].server_version_num))
      assert.ok(version >= 130000, `PostgreSQL 13 or newer, got ${version}`)
      const refused = await connectError(withPassword(server.url, `${server.password}x`))
      assert.equal(refused.code, '28P01', refused.message)
    } finally {
      server.stop()
    }
  })

  test('restart keeps the data and the address, and stop removes the folder and the server', async () => {
    const server = postgres.start({ durable: false })
    const folder = path.dirname(server.dataDir)
    try {
      await withClient(server.url, (c) => c.query('CREATE TABLE kept (n int); INSERT INTO kept VALUES (1), (2)'))
      server.restart()
      const rows = await withClient(server.url, async (c) => (await c.query('SELECT n FROM kept ORDER BY n')).rows)
      assert.deepEqual(rows, [{ n: 1 }, { n: 2 }])
      // An immediate shutdown is a crash: what was committed is recovered from the WAL.
      await withClient(server.url, (c) => c.query('INSERT INTO kept VALUES (3)'))
      server.restart({ mode: 'immediate' })
      const after = await withClient(server.url, async (c) => (await c.query('SELECT count(*)::int AS n FROM kept')).rows[0].n)
      assert.equal(after, 3)
    } finally {
      server.stop()
    }
    assert.equal(fs.existsSync(folder), false, 'the folder is removed')
    const gone = await connectError(server.url)
    assert.equal(gone.code, 'ECONNREFUSED', gone.message)
    server.stop()
  })

  test('a guard stops the server and removes its folder once the process it watches is killed', async () => {
    const server = postgres.start({ durable: false })
    const owner = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1 << 30)'], { stdio: 'ignore' })
    const guard = spawn(process.execPath, [SCRIPT, 'guard', server.dataDir, String(owner.pid)], { stdio: 'ignore' })
    const guardDone = new Promise((resolve) => guard.once('exit', resolve))
    try {
      await withClient(server.url, (c) => c.query('SELECT 1'))
      owner.kill('SIGKILL')
      assert.equal(await guardDone, 0)
      assert.equal(fs.existsSync(path.dirname(server.dataDir)), false, 'the folder is removed')
      assert.equal((await connectError(server.url)).code, 'ECONNREFUSED')
    } finally {
      owner.kill('SIGKILL')
      server.stop()
    }
  })

  // Only root can make a folder the cluster's owner (the postgres user) cannot enter.
  const asRoot = process.getuid?.() === 0 ? test : (name, fn) => test.skip(`${name} (skipped: needs root)`, fn)
  asRoot('a start that fails says why in one line and leaves no folder behind', () => {
    const closed = tempDir()
    fs.chmodSync(closed, 0o700)
    const run = spawnSync(process.execPath, [SCRIPT, 'start'], { encoding: 'utf8', env: { ...process.env, TMPDIR: closed } })
    assert.equal(run.status, 1)
    assert.equal(run.stdout, '')
    assert.match(run.stderr, /^initdb failed: .*Permission denied.*\n$/)
    assert.equal(run.stderr.trim().split('\n').length, 1, run.stderr)
    assert.deepEqual(fs.readdirSync(closed), [])
  })

  test('the command refuses to stop or restart a folder start did not make, and removes nothing', () => {
    const dir = tempDir()
    const data = path.join(dir, 'data')
    fs.mkdirSync(data)
    for (const command of ['stop', 'restart']) {
      const run = spawnSync(process.execPath, [SCRIPT, command, data], { encoding: 'utf8' })
      assert.equal(run.status, 1)
      assert.match(run.stderr, /expected the dataDir that start printed/)
      assert.ok(fs.existsSync(data))
    }
  })
})

describe('the tests\' PostgreSQL helper', () => {
  pgTest('pgUrl gives a server each freshSchema can have a schema of its own on', async () => {
    const { url, reason } = pgUrl()
    assert.equal(reason, null)
    const names = [freshSchema(), freshSchema(), freshSchema('orders')]
    assert.equal(new Set(names).size, 3)
    for (const name of names) assert.match(name, /^[a-z_][a-z0-9_]{0,62}$/, 'a lowercase identifier PostgreSQL takes unquoted')
    await withClient(url, async (c) => {
      for (const name of names) await c.query(`CREATE SCHEMA ${name}`)
      const { rows } = await c.query('SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = ANY($1)', [names])
      assert.equal(rows[0].n, 3)
      for (const name of names) await c.query(`DROP SCHEMA ${name}`)
    })
  })

  pgTest('restartPg restarts the server while this process keeps running, and the data stays', async () => {
    const { url } = pgUrl()
    const schema = freshSchema()
    await withClient(url, (c) => c.query(`CREATE SCHEMA ${schema}; CREATE TABLE ${schema}.kept (n int); INSERT INTO ${schema}.kept VALUES (7)`))
    const held = new Client({ connectionString: url })
    await held.connect()
    // The server says why it ends the session, then the socket closes: two errors.
    const errors = []
    const ended = new Promise((resolve) => held.on('error', (err) => resolve(errors.push(err))))
    await restartPg()
    await ended
    assert.equal(errors[0].code, '57P01', 'the restart ended every session, the one this process held open too')
    await held.end().catch(() => {})
    const rows = await withClient(url, async (c) => (await c.query(`SELECT n FROM ${schema}.kept`)).rows)
    assert.deepEqual(rows, [{ n: 7 }])
    await withClient(url, (c) => c.query(`DROP SCHEMA ${schema} CASCADE`))
  })

  test('without a server, a PostgreSQL test is reported skipped with the reason, never run', () => {
    const fixture = path.join(__dirname, 'fixtures', 'pg-skipped.js')
    const args = typeof Bun !== 'undefined' ? ['test', fixture] : ['--test', fixture]
    const env = { ...process.env, EVENTLITE_TEST_PG_SKIP: 'no postgresql on this machine (a test)' }
    delete env.EVENTLITE_TEST_PG_URL
    // The runner's marker for its own children: without deleting it, the child runs no file.
    delete env.NODE_TEST_CONTEXT
    const run = spawnSync(process.execPath, args, { encoding: 'utf8', env })
    const output = `${run.stdout}${run.stderr}`
    assert.equal(run.status, 0, output)
    assert.match(output, /needs the server \(skipped: PostgreSQL cannot run here: no postgresql on this machine \(a test\)\)/)
    assert.match(output, typeof Bun !== 'undefined' ? /\b1 skip\b/ : /# skipped 1\b/)
    assert.doesNotMatch(output, /a PostgreSQL test ran without a server/)
  })
})
