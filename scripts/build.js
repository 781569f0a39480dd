'use strict'
// Builds the native addon with cargo alone and copies it to where lib/native.js loads it.
//
//   node scripts/build.js            `npm run build`: always builds (incremental in a clone)
//   node scripts/build.js --install  the package's install script: in an application's
//                                    node_modules, keeps a shipped binary that loads here
//
// The SQLite compile flags come from .cargo/config.toml, which cargo reads because it runs in
// the package folder; the tarball ships that file, so a source build gets them too. Inside
// node_modules the build uses a temporary target folder, removed afterwards (unless
// CARGO_TARGET_DIR names one), and the exact crate versions of Cargo.lock (`--locked`).
// EVENTLITE_FORCE_BUILD=1 builds even when a shipped binary loads.
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { platform, binaryPath } = require('../lib/binary')

const root = path.join(__dirname, '..')
const installing = process.argv.includes('--install')
/** Installed as a dependency, rather than a clone of the repository. */
const packaged = root.split(path.sep).includes('node_modules')
const LIBRARY = /\.(so|dylib|dll)$/

/** A failure reported as one line, without a stack: the user's next step is in the message. */
class BuildError extends Error {}

function fail(message) {
  throw new BuildError(message)
}

function binaryLoads() {
  try {
    require(binaryPath)
    return true
  } catch {
    return false
  }
}

function hasCargo() {
  const probe = spawnSync('cargo', ['--version'], { stdio: 'ignore' })
  return !probe.error && probe.status === 0
}

/** Runs cargo and returns the path of the compiled library, read from cargo's JSON messages. */
function cargoBuild(targetDir) {
  const args = ['build', '--release', '--lib', '--message-format=json-render-diagnostics']
  if (packaged) args.push('--locked')
  const env = targetDir ? { ...process.env, CARGO_TARGET_DIR: targetDir } : process.env
  const run = spawnSync('cargo', args, {
    cwd: root,
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
  })
  if (run.error) fail(`running cargo failed: ${run.error.message}`)
  if (run.status !== 0) fail(`cargo build failed for ${platform} (its messages are above)`)
  let library
  for (const line of run.stdout.split('\n')) {
    if (!line.startsWith('{')) continue
    const message = JSON.parse(line)
    if (message.reason === 'compiler-artifact' && message.target.kind.includes('cdylib')) {
      library = message.filenames.find((file) => LIBRARY.test(file))
    }
  }
  if (!library) fail('cargo reported no compiled library')
  return library
}

/**
 * Copies through a temporary name and a rename: a process that has the old binary loaded
 * keeps its mapping, where writing over the file in place would corrupt it.
 */
function install(library) {
  const temporary = `${binaryPath}.${process.pid}.tmp`
  fs.copyFileSync(library, temporary)
  fs.renameSync(temporary, binaryPath)
}

function main() {
  if (installing && packaged && process.env.EVENTLITE_FORCE_BUILD !== '1' && binaryLoads()) return
  if (!hasCargo()) {
    const what = packaged ? `no prebuilt binary loads on ${platform}, and building one from source` : `building the addon for ${platform}`
    fail(`${what} needs a Rust toolchain (cargo is not on PATH): install Rust from https://rustup.rs, then run ${installing ? 'the install' : 'the build'} again`)
  }
  const targetDir = packaged && !process.env.CARGO_TARGET_DIR
    ? fs.mkdtempSync(path.join(os.tmpdir(), 'eventlite-native-build-'))
    : undefined
  try {
    install(cargoBuild(targetDir))
  } finally {
    if (targetDir) fs.rmSync(targetDir, { recursive: true, force: true })
  }
  process.stderr.write(`eventlite-native: built ${path.basename(binaryPath)}\n`)
}

try {
  main()
} catch (err) {
  if (!(err instanceof BuildError)) throw err
  process.stderr.write(`eventlite-native: ${err.message}\n`)
  process.exitCode = 1
}
