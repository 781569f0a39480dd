'use strict'
// The PostgreSQL server of the tests. Under `npm test`, scripts/test.js starts one for the
// whole run and passes it in the environment (EVENTLITE_TEST_PG_URL, and EVENTLITE_TEST_PG_DATA
// for restarts), or says why there is none (EVENTLITE_TEST_PG_SKIP). A test file run
// alone (`node --test __tests__/pg.test.js`) starts its own through scripts/postgres.js on
// first use, and stops it when the process exits. The PostgreSQL tests are registered with
// pgTest/pgDescribe, which report them skipped, with the reason, when no server can run.
const { spawn } = require('node:child_process')
const crypto = require('node:crypto')
const path = require('node:path')
const postgres = require('../scripts/postgres')
const { describe, test } = require('./helpers')

/** `{ url, dataDir, reason }`: the server, or `url` null and the reason; settled once. */
let known = null

/**
 * Starts this process's own server, stopped when the process exits: at once where the runtime
 * emits 'exit' (Node), and by the guard process whatever way it ends (bun test emits no 'exit').
 */
function startOwn(options = {}) {
  let own
  try {
    own = postgres.start({ durable: false, ...options })
  } catch (err) {
    return { url: null, reason: err.message }
  }
  postgres.guard(own.dataDir)
  process.once('exit', () => own.stop())
  return { url: own.url, ca: own.ca, dataDir: own.dataDir, reason: null }
}

function server() {
  if (known) return known
  const env = process.env
  if (env.EVENTLITE_TEST_PG_URL) {
    known = { url: env.EVENTLITE_TEST_PG_URL, dataDir: env.EVENTLITE_TEST_PG_DATA ?? null, reason: null }
  } else if (env.EVENTLITE_TEST_PG_SKIP) {
    known = { url: null, reason: env.EVENTLITE_TEST_PG_SKIP }
  } else {
    known = startOwn()
  }
  return known
}

/** `{ url, reason }`: the server's URL (superuser, password auth over TCP), or null and why there is none. */
function pgUrl() {
  const { url, reason } = server()
  return { url, reason }
}

/** The skip reason the runners print, or null when the server runs. */
const skipReason = ({ reason } = server()) => (reason === null ? null : `PostgreSQL cannot run here: ${reason}`)

/** test(), or a test reported skipped with the reason when `running` (a server) has none. */
function testOn(running, name, fn) {
  const reason = skipReason(running)
  return reason === null ? test(name, fn) : test.skip(`${name} (skipped: ${reason})`, fn)
}

/** test(), or a test reported skipped with the reason when there is no server. */
const pgTest = (name, fn) => testOn(server(), name, fn)

let tlsKnown = null

/**
 * `{ url, ca, reason }`: a server of this process's own that also serves TLS, with a
 * certificate for localhost and 127.0.0.1 signed by the CA in the PEM file `ca`; started on
 * first use, stopped when the process exits; or `url` null and why there is none.
 */
function pgTlsServer() {
  // Where the run's server could not start, this one cannot either: no second apt-get.
  const skip = process.env.EVENTLITE_TEST_PG_SKIP
  if (!tlsKnown) tlsKnown = skip ? { url: null, reason: skip } : startOwn({ tls: true })
  return tlsKnown
}

/** pgTest() on the TLS server of pgTlsServer(). */
const pgTlsTest = (name, fn) => testOn(pgTlsServer(), name, fn)

/** describe(), or a suite reported skipped with the reason when there is no server. */
function pgDescribe(name, fn) {
  const reason = skipReason()
  return reason === null ? describe(name, fn) : describe.skip(`${name} (skipped: ${reason})`, fn)
}

let schemas = 0

/** A schema name no other test (of this run or another process) uses: each test its own log. */
function freshSchema(prefix = 't') {
  return `${prefix}_${process.pid}_${++schemas}_${crypto.randomBytes(3).toString('hex')}`
}

/**
 * Restarts the server (pg_ctl restart -m fast, or `mode`), in a child process, so that this
 * process's producers keep running meanwhile; resolves once it accepts connections again.
 */
function restartPg({ mode = 'fast' } = {}) {
  const { dataDir, reason } = server()
  if (reason !== null) return Promise.reject(new Error(`no server to restart: ${reason}`))
  if (!dataDir) return Promise.reject(new Error('EVENTLITE_TEST_PG_URL names a server this run did not start (EVENTLITE_TEST_PG_DATA is unset): it cannot be restarted'))
  const script = path.join(__dirname, '..', 'scripts', 'postgres.js')
  const child = spawn(process.execPath, [script, 'restart', dataDir, mode], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (chunk) => { stderr += chunk })
  return new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`restarting PostgreSQL failed: ${stderr.trim()}`))))
  })
}

module.exports = { pgUrl, pgTest, pgDescribe, freshSchema, restartPg, pgTlsServer, pgTlsTest }
