'use strict'
// A throwaway PostgreSQL server for the tests and the benchmark (issue 15): Debian's
// `postgresql` binaries, a cluster initdb'd in a fresh temp folder, started on a free loopback
// port, and removed with the folder when stopped. As root (this machine's CI), the cluster is
// owned by the `postgres` user, since initdb and postgres refuse to run as root; otherwise by
// the current user. Everything is synchronous, so that a test file can decide at load time
// whether its PostgreSQL tests run, and a process can stop its server in an 'exit' handler.
//
//   const server = start()   // throws an Error with a one-line reason when it cannot
//   start({ tls: true })     // also serves TLS, with a certificate for localhost and 127.0.0.1
//   server.ca                // (tls only) the PEM file of the CA that signed it
//   server.url               // postgres://postgres:<password>@127.0.0.1:<port>/postgres
//   server.restart()         // pg_ctl restart -m fast: the same port, data kept
//   server.stop()            // pg_ctl stop -m fast, then the folder is removed
//   server.stop({ mode: 'immediate' })  // the same, as a crash: every session ends at once
//
// As a command, for manual use:
//   node scripts/postgres.js start            prints { url, dataDir, bin } as JSON, leaves it running
//   node scripts/postgres.js restart DATADIR [fast|immediate]  restarts the server of that data dir
//   node scripts/postgres.js stop DATADIR     stops it and removes its folder
//   node scripts/postgres.js which            prints the bin dir, or why there is none
//   node scripts/postgres.js guard DATADIR PID  stops that server once process PID is gone
const { spawn, spawnSync } = require('node:child_process')
const crypto = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

/** The Debian package that brings initdb, pg_ctl and postgres. */
const PACKAGE = 'postgresql'
/** The server's own programs this module runs. */
const PROGRAMS = ['initdb', 'pg_ctl', 'postgres']
/** The superuser initdb creates; its password is random per cluster. */
const SUPERUSER = 'postgres'
/** Long enough for a loaded 2-core machine; a server that is not up by then has failed. */
const WAIT_SECONDS = 60
/** A port taken between our probe and the server's bind: try another this many times. */
const PORT_ATTEMPTS = 3

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0

/** Runs a command to its end; `{ status, output }`, output being stdout and stderr together. */
function run(command, args, options = {}) {
  const result = spawnSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...options })
  if (result.error) return { status: null, output: result.error.message }
  return { status: result.status, output: `${result.stdout}${result.stderr}`.trim() }
}

/** The last non-empty line of a program's output: the one that says what went wrong. */
const lastLine = (text) => text.split('\n').map((l) => l.trim()).filter(Boolean).pop() ?? '(no output)'

const hasPrograms = (dir) => PROGRAMS.every((p) => fs.existsSync(path.join(dir, p)))

/** Debian installs each major version side by side; the newest first. */
function debianBinDirs() {
  const root = '/usr/lib/postgresql'
  if (!fs.existsSync(root)) return []
  return fs.readdirSync(root)
    .filter((v) => /^\d+(\.\d+)?$/.test(v))
    .sort((a, b) => Number(b) - Number(a))
    .map((v) => path.join(root, v, 'bin'))
}

/** The folder holding initdb, pg_ctl and postgres, or null: pg_config's, Debian's newest, then PATH's. */
function findBin() {
  const fromConfig = run('pg_config', ['--bindir'])
  const candidates = [
    ...(fromConfig.status === 0 ? [fromConfig.output] : []),
    ...debianBinDirs(),
    ...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean),
  ]
  const found = candidates.find(hasPrograms)
  // PATH often holds symlinks (/usr/local/bin/initdb); the real folder also has the other programs.
  return found ? path.dirname(fs.realpathSync(path.join(found, 'initdb'))) : null
}

/**
 * The bin folder, installing Debian's `postgresql` with apt-get first when it is missing and
 * this process may (root, apt-get present). Throws an Error saying why there is none.
 */
function ensureBin() {
  const found = findBin()
  if (found) return found
  const missing = `PostgreSQL is not installed (no ${PROGRAMS.join('/')} in pg_config --bindir, /usr/lib/postgresql/*/bin or PATH)`
  if (!isRoot) throw new Error(`${missing}, and installing it needs root: apt-get install -y ${PACKAGE}`)
  if (run('apt-get', ['--version']).status !== 0) throw new Error(`${missing}, and there is no apt-get to install it with`)
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  let install = run('apt-get', ['install', '-y', '--no-install-recommends', PACKAGE], { env })
  // A fresh image has no package lists yet.
  if (install.status !== 0) {
    run('apt-get', ['update'], { env })
    install = run('apt-get', ['install', '-y', '--no-install-recommends', PACKAGE], { env })
  }
  if (install.status !== 0) throw new Error(`${missing}, and apt-get install -y ${PACKAGE} failed: ${lastLine(install.output)}`)
  const installed = findBin()
  if (!installed) throw new Error(`${missing}, even after apt-get install -y ${PACKAGE}`)
  return installed
}

/** The uid and gid of the `postgres` user, who owns the cluster when this process is root. */
function postgresUser() {
  const uid = run('id', ['-u', SUPERUSER])
  const gid = run('id', ['-g', SUPERUSER])
  if (uid.status !== 0 || gid.status !== 0) throw new Error(`running as root, and there is no '${SUPERUSER}' user to own the cluster (initdb refuses root)`)
  return { uid: Number(uid.output), gid: Number(gid.output) }
}

/** Runs one of the server's programs as the cluster's owner, from a folder that owner can enter. */
function runServerProgram(bin, program, args, cwd) {
  const command = path.join(bin, program)
  return isRoot ? run('runuser', ['-u', SUPERUSER, '--', command, ...args], { cwd }) : run(command, args, { cwd })
}

/** A TCP port nobody listens on at 127.0.0.1 now, from the kernel (in a child: this API is synchronous). */
function freePort() {
  const probe = "const s=require('node:net').createServer().listen(0,'127.0.0.1',()=>{process.stdout.write(String(s.address().port));s.close()})"
  const found = run(process.execPath, ['-e', probe])
  const port = Number(found.output)
  if (found.status !== 0 || !Number.isInteger(port) || port <= 0) throw new Error(`could not find a free port: ${lastLine(found.output)}`)
  return port
}

/** The folder the cluster lives in: data/, its log, and the Unix socket, all removed by stop(). */
const rootOf = (dataDir) => path.dirname(dataDir)
const logOf = (dataDir) => path.join(rootOf(dataDir), 'server.log')

/** Why pg_ctl failed: its own last line, and the server log's, which names the cause. */
function failure(what, result, dataDir) {
  const log = fs.existsSync(logOf(dataDir)) ? lastLine(fs.readFileSync(logOf(dataDir), 'utf8')) : ''
  return `${what} failed: ${lastLine(result.output)}${log ? ` (server log: ${log})` : ''}`
}

/** Runs openssl, throwing an Error with its last line when it fails. */
function openssl(args, cwd) {
  const result = run('openssl', args, { cwd })
  if (result.status !== 0) throw new Error(`openssl ${args[0]} failed: ${lastLine(result.output)}`)
}

/** P-256 keys: quick to generate, and every TLS stack reads them. */
const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
const CERT_DAYS = '3650'

/**
 * A certificate authority of its own in `dir`, made with `openssl`: `{ key, cert }`, the paths
 * of its private key and of its self-signed certificate (PEM). Tests make a second one to
 * present a CA the server's certificate is not signed by.
 */
function makeCa(dir, name = 'eventlite test CA') {
  const base = path.join(dir, name.replace(/\W+/g, '-'))
  const key = `${base}.key`
  const cert = `${base}.crt`
  const config = path.join(dir, 'ca.cnf')
  fs.writeFileSync(config, [
    '[req]', 'distinguished_name = dn', 'x509_extensions = ca', 'prompt = no',
    '[dn]', `CN = ${name}`,
    '[ca]', 'basicConstraints = critical, CA:TRUE', 'keyUsage = critical, keyCertSign, cRLSign', 'subjectKeyIdentifier = hash',
  ].join('\n'))
  openssl(['req', '-x509', ...EC_KEY, '-keyout', key, '-out', cert, '-days', CERT_DAYS, '-config', config], dir)
  fs.rmSync(config)
  return { key, cert }
}

/**
 * The server's key and certificate in `dir`, signed by `ca` (from makeCa) for the names the
 * tests connect to: localhost and 127.0.0.1. `owner` ({ uid, gid }, or null for this user) owns
 * the key, mode 0600, as the server demands.
 */
function makeServerCert(dir, ca, owner) {
  const key = path.join(dir, 'server.key')
  const request = path.join(dir, 'server.csr')
  const cert = path.join(dir, 'server.crt')
  const extensions = path.join(dir, 'server.ext')
  fs.writeFileSync(extensions, [
    'basicConstraints = CA:FALSE', 'keyUsage = critical, digitalSignature', 'extendedKeyUsage = serverAuth',
    'subjectAltName = DNS:localhost, IP:127.0.0.1',
  ].join('\n'))
  openssl(['req', '-new', ...EC_KEY, '-keyout', key, '-out', request, '-subj', '/CN=localhost'], dir)
  openssl(['x509', '-req', '-in', request, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-out', cert, '-days', CERT_DAYS, '-extfile', extensions], dir)
  fs.rmSync(request)
  fs.rmSync(extensions)
  fs.chmodSync(key, 0o600)
  if (owner) {
    fs.chownSync(key, owner.uid, owner.gid)
    fs.chownSync(cert, owner.uid, owner.gid)
  }
  return { key, cert }
}

/**
 * Initdb's a cluster in a fresh temp folder and starts it on a free 127.0.0.1 port; returns
 * `{ url, port, password, dataDir, bin, restart(), stop() }`. `durable: false` turns fsync off,
 * for tests: a crash of the machine could then lose or corrupt the cluster; a crash of the
 * server (or a restart) still loses nothing committed, which the kernel holds.
 * `tls: true` also serves TLS (ssl=on), with a CA and a certificate for localhost and 127.0.0.1
 * made by `openssl` in the folder; the server object then has `ca`, the CA's PEM file.
 * Throws an Error whose message is one line saying why when the server cannot run; the
 * folder is removed then.
 */
function start({ durable = true, tls = false } = {}) {
  const bin = ensureBin()
  const owner = isRoot ? postgresUser() : null
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'eventlite-pg-'))
  const dataDir = path.join(root, 'data')
  try {
    if (owner) fs.chownSync(root, owner.uid, owner.gid)
    const password = crypto.randomBytes(18).toString('base64url')
    const pwfile = path.join(root, 'pwfile')
    fs.writeFileSync(pwfile, `${password}\n`, { mode: 0o600 })
    if (owner) fs.chownSync(pwfile, owner.uid, owner.gid)
    // scram over TCP, where the tests connect (and try wrong passwords); trust on the socket,
    // which only the owner can reach, so that pg_ctl and manual psql need nothing.
    const init = runServerProgram(bin, 'initdb', [
      '-D', dataDir, '-U', SUPERUSER, `--pwfile=${pwfile}`, '--auth-host=scram-sha-256', '--auth-local=trust',
      '-E', 'UTF8', '--no-locale', '--no-sync', '--no-instructions',
    ], root)
    fs.rmSync(pwfile, { force: true })
    if (init.status !== 0) throw new Error(`initdb failed: ${lastLine(init.output)}`)
    let ca = null
    const tlsSettings = []
    if (tls) {
      ca = makeCa(root)
      const served = makeServerCert(root, ca, owner)
      tlsSettings.push('-c ssl=on', `-c ssl_cert_file='${served.cert}'`, `-c ssl_key_file='${served.key}'`)
    }
    let lastError = null
    for (let attempt = 0; attempt < PORT_ATTEMPTS; attempt++) {
      const port = freePort()
      const settings = [`-p ${port}`, `-k '${root}'`, "-c listen_addresses='127.0.0.1'", ...(durable ? [] : ['-c fsync=off']), ...tlsSettings]
      const started = runServerProgram(bin, 'pg_ctl', ['-D', dataDir, '-l', logOf(dataDir), '-o', settings.join(' '), '-w', '-t', String(WAIT_SECONDS), 'start'], root)
      if (started.status === 0) {
        return server({ bin, dataDir, port, password, ca: ca && ca.cert })
      }
      lastError = failure('pg_ctl start', started, dataDir)
      if (!/could not bind|address already in use/i.test(fs.existsSync(logOf(dataDir)) ? fs.readFileSync(logOf(dataDir), 'utf8') : '')) break
    }
    throw new Error(lastError)
  } catch (err) {
    fs.rmSync(root, { recursive: true, force: true })
    throw err
  }
}

function server({ bin, dataDir, port, password, ca }) {
  let stopped = false
  return {
    url: `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    port,
    password,
    ...(ca ? { ca } : {}),
    dataDir,
    bin,
    restart: (options) => restart(dataDir, { bin, ...options }),
    stop(options) {
      if (stopped) return
      stopped = true
      stop(dataDir, { bin, ...options })
    },
  }
}

/**
 * Restarts the server of `dataDir` with the settings it was started with (pg_ctl keeps them in
 * postmaster.opts): the same port and password, the data kept. `mode`: pg_ctl's shutdown mode,
 * 'fast' (sessions are ended, data flushed) or 'immediate' (as a crash).
 */
function restart(dataDir, { bin = ensureBin(), mode = 'fast' } = {}) {
  const result = runServerProgram(bin, 'pg_ctl', ['-D', dataDir, '-l', logOf(dataDir), '-m', mode, '-w', '-t', String(WAIT_SECONDS), 'restart'], rootOf(dataDir))
  if (result.status !== 0) throw new Error(failure('pg_ctl restart', result, dataDir))
}

/**
 * Stops the server of `dataDir` (if it runs) and removes its folder. `mode` as for restart():
 * 'fast' ends the sessions one by one, so a lock held by one session can be released, and a
 * session waiting on it served, before the waiting session is ended; 'immediate' ends them all
 * at once and releases nothing.
 */
function stop(dataDir, { bin = findBin(), mode = 'fast' } = {}) {
  const root = rootOf(dataDir)
  if (bin && fs.existsSync(path.join(dataDir, 'postmaster.pid'))) {
    runServerProgram(bin, 'pg_ctl', ['-D', dataDir, '-m', mode, '-w', '-t', String(WAIT_SECONDS), 'stop'], root)
  }
  fs.rmSync(root, { recursive: true, force: true })
}

/** How often a guard looks whether its process is still there: cleanup only, nothing waits on it. */
const GUARD_POLL_MS = 250

/**
 * Stops the server of `dataDir` once process `pid` is gone, however it ended: a crash, a
 * SIGKILL, or a runtime that emits no 'exit' event (bun test). A detached process of its own
 * that polls; it ends by itself when the server was stopped the ordinary way.
 */
function guard(dataDir, pid = process.pid) {
  spawn(process.execPath, [__filename, 'guard', dataDir, String(pid)], { detached: true, stdio: 'ignore' }).unref()
}

function isRunning(pid) {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return err.code === 'EPERM'
  }
}

function watch(dataDir, pid) {
  const timer = setInterval(() => {
    if (!fs.existsSync(dataDir)) return clearInterval(timer)
    if (isRunning(pid)) return
    clearInterval(timer)
    stop(dataDir)
  }, GUARD_POLL_MS)
}

/** A folder made by start(): the CLI removes nothing else. */
function checkDataDir(dataDir) {
  if (!dataDir || path.basename(dataDir) !== 'data' || !path.basename(rootOf(dataDir)).startsWith('eventlite-pg-')) {
    throw new Error(`expected the dataDir that start printed (…/eventlite-pg-XXXXXX/data), got ${dataDir ?? 'nothing'}`)
  }
  return path.resolve(dataDir)
}

/** pg_ctl's shutdown modes that keep what was committed ('smart' would wait for every session). */
const RESTART_MODES = ['fast', 'immediate']

function cli([command, dataDir, extra]) {
  switch (command) {
    case 'start': {
      const { url, dataDir: data, bin } = start()
      console.log(JSON.stringify({ url, dataDir: data, bin }, null, 2))
      return
    }
    case 'restart': {
      const mode = extra ?? 'fast'
      if (!RESTART_MODES.includes(mode)) throw new Error(`the restart mode is ${RESTART_MODES.join(' or ')}, got ${mode}`)
      return restart(checkDataDir(dataDir), { mode })
    }
    case 'stop':
      return stop(checkDataDir(dataDir))
    case 'which':
      return console.log(ensureBin())
    case 'guard':
      if (!/^\d+$/.test(extra ?? '')) throw new Error(`guard takes the id of the process to watch, got ${extra ?? 'nothing'}`)
      return watch(checkDataDir(dataDir), Number(extra))
    default:
      throw new Error(`usage: node scripts/postgres.js start | restart DATADIR [${RESTART_MODES.join('|')}] | stop DATADIR | which | guard DATADIR PID`)
  }
}

if (require.main === module) {
  try {
    cli(process.argv.slice(2))
  } catch (err) {
    console.error(err.message)
    process.exitCode = 1
  }
}

module.exports = { start, restart, stop, guard, findBin, ensureBin, makeCa }
