'use strict'
// The compiled addon (src/lib.rs), built by scripts/build.js.
const fs = require('node:fs')
const path = require('node:path')
const { platform, binaryPath } = require('./binary')

function load() {
  if (!fs.existsSync(binaryPath)) {
    throw new Error(
      `eventlite-native: the native addon for ${platform} is not built (${path.basename(binaryPath)} is missing): ` +
      'run `npm rebuild eventlite-native` in a project that depends on the package, or `npm run build` in its ' +
      'repository (a source build needs a Rust toolchain: https://rustup.rs)',
    )
  }
  try {
    return require(binaryPath)
  } catch (cause) {
    throw new Error(`eventlite-native: the native addon for ${platform} does not load: ${cause.message}`, { cause })
  }
}

const binding = load()
// No read hands this runtime a string longer than it can create (see src/pieces.rs).
binding.setMaxString(require('node:buffer').constants.MAX_STRING_LENGTH)
module.exports = binding
