'use strict'
// scripts/build.js without a Rust toolchain: one line that names the platform and what to
// install, and nothing touched. (scripts/check-pack.sh checks the same through `npm rebuild`
// of an installed package, and the source build itself.)
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const { describe, test, tempDir } = require('./helpers')
const { platform, binaryPath } = require('../lib/binary')

const script = path.join(__dirname, '..', 'scripts', 'build.js')

describe('scripts/build.js', () => {
  test('without cargo on PATH it fails with one line naming the platform and rustup, and keeps the binary', () => {
    const before = fs.readFileSync(binaryPath)
    const run = spawnSync(process.execPath, [script], { env: { PATH: tempDir() }, encoding: 'utf8' })
    assert.equal(run.status, 1)
    assert.equal(run.stdout, '')
    const lines = run.stderr.trimEnd().split('\n')
    assert.equal(lines.length, 1, run.stderr)
    assert.match(lines[0], /^eventlite-native: building the addon for \S+ needs a Rust toolchain \(cargo is not on PATH\): install Rust from https:\/\/rustup\.rs/)
    assert.ok(lines[0].includes(` ${platform} `))
    assert.ok(fs.readFileSync(binaryPath).equals(before), 'the addon was left as it was')
  })
})
