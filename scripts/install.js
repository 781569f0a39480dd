'use strict'
// npm runs this on `npm install`, in the repository and in a project that installs the
// package. It builds the addon from the Rust sources unless a binary for this platform
// already loads (a tarball made by `npm pack` after a build ships one).
const { execFileSync } = require('node:child_process')
const path = require('node:path')

const root = path.join(__dirname, '..')

function binaryLoads() {
  try {
    require(path.join(root, 'binding.js'))
    return true
  } catch {
    return false
  }
}

if (process.env.EVENTLITE_FORCE_BUILD !== '1' && binaryLoads()) {
  process.exit(0)
}

const cli = require.resolve('@napi-rs/cli/package.json', { paths: [root] })
const bin = path.join(path.dirname(cli), require(cli).bin.napi)
execFileSync(
  process.execPath,
  [bin, 'build', '--platform', '--release', '--js', 'binding.js', '--dts', 'binding.d.ts'],
  { cwd: root, stdio: 'inherit' },
)
