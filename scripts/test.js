'use strict'
// `npm test`: every stage runs, whether or not an earlier one failed, and the end says which
// failed. Each stage is an npm script of package.json, so it can also be run alone
// (`npm run test:clippy`). `node scripts/test.js rust node` runs only the stages named.
//
// The stages that run tests get a PostgreSQL server of their own (scripts/postgres.js),
// started once before the first of them and stopped at the end, also when a stage fails or
// the run is interrupted: its URL in EVENTLITE_TEST_PG_URL (and its data folder in
// EVENTLITE_TEST_PG_DATA, for the tests that restart it). When no server can run here,
// EVENTLITE_TEST_PG_SKIP says why, and the PostgreSQL tests report themselves skipped with
// that reason. A URL already in the environment is used as it is.
const { spawn } = require('node:child_process')
const postgres = require('./postgres')

/** In order: the addon first, so that the JavaScript stages test the sources as they are. */
const STAGES = [
  'build', 'test:rust', 'test:fmt', 'test:clippy', 'test:types', 'test:docs', 'test:pack', 'test:bun', 'test:node',
]

/** The stages whose tests or examples connect to PostgreSQL (the Rust tests' too, when they have the URL). */
const PG_STAGES = ['test:rust', 'test:docs', 'test:bun', 'test:node']

/** The stage running now, to pass a signal on to. */
let running = null

/**
 * Runs a stage with the npm that runs this script (npm_execpath), so that no shell has to find
 * one; resolves with its exit status. Asynchronous, so that a signal reaches our handlers. In
 * a process group of its own, so that a signal passed on reaches npm's children too (npm does
 * not pass SIGTERM on).
 */
function npmRun(script) {
  const npmCli = process.env.npm_execpath
  const [command, args] = npmCli && npmCli.endsWith('.js')
    ? [process.execPath, [npmCli, 'run', script]]
    : ['npm', ['run', script]]
  return new Promise((resolve) => {
    running = spawn(command, args, { stdio: 'inherit', detached: true })
    running.once('error', () => resolve(1))
    running.once('close', (status) => resolve(status ?? 1))
  }).finally(() => { running = null })
}

let server = null

/** Starts the server the first time a stage needs it, or says in the environment why it cannot. */
function providePostgres() {
  const env = process.env
  if (server || env.EVENTLITE_TEST_PG_URL || env.EVENTLITE_TEST_PG_SKIP) return
  const started = Date.now()
  try {
    server = postgres.start({ durable: false })
    // Stopped by main's finally, or on a signal; by its guard if this process is killed.
    postgres.guard(server.dataDir)
    Object.assign(env, { EVENTLITE_TEST_PG_URL: server.url, EVENTLITE_TEST_PG_DATA: server.dataDir })
    console.log(`PostgreSQL for the tests: 127.0.0.1:${server.port}, ${server.dataDir} (${((Date.now() - started) / 1000).toFixed(1)} s)`)
  } catch (err) {
    env.EVENTLITE_TEST_PG_SKIP = err.message
    console.log(`PostgreSQL cannot run here, its tests are skipped: ${err.message}`)
  }
}

function stopPostgres() {
  if (!server) return
  server.stop()
  server = null
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, () => {
    if (running) process.kill(-running.pid, signal)
    stopPostgres()
    process.kill(process.pid, signal)
  })
}

const wanted = process.argv.slice(2)
const unknown = wanted.filter((name) => !STAGES.includes(name) && !STAGES.includes(`test:${name}`))
if (unknown.length > 0) {
  console.error(`unknown stage ${unknown.join(', ')}; the stages: ${STAGES.join(', ')}`)
  process.exit(2)
}
const stages = wanted.length === 0 ? STAGES : STAGES.filter((s) => wanted.includes(s) || wanted.includes(s.replace(/^test:/, '')))

async function main() {
  const failed = []
  try {
    for (const stage of stages) {
      if (PG_STAGES.includes(stage)) providePostgres()
      const started = Date.now()
      const status = await npmRun(stage)
      const seconds = ((Date.now() - started) / 1000).toFixed(1)
      console.log(`\n[${stage}] ${status === 0 ? 'passed' : `FAILED (exit ${status})`} in ${seconds} s\n`)
      if (status !== 0) failed.push(stage)
    }
  } finally {
    stopPostgres()
  }
  if (failed.length > 0) console.log(`failed stages: ${failed.join(', ')}`)
  if (process.env.EVENTLITE_TEST_PG_SKIP) console.log(`PostgreSQL tests skipped: ${process.env.EVENTLITE_TEST_PG_SKIP}`)
  console.log(`stages: ${stages.length - failed.length} passed, ${failed.length} failed`)
  process.exitCode = failed.length > 0 ? 1 : 0
}

main()
