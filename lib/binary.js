'use strict'
// Where the compiled addon lives: scripts/build.js writes it there and lib/native.js loads it
// from there. One file per platform, so that a tarball can carry a binary built elsewhere.
const path = require('node:path')

/** The platform as Node names it, e.g. `linux-x64`. */
const platform = `${process.platform}-${process.arch}`

/** The addon for this platform, beside package.json. */
const binaryPath = path.join(__dirname, '..', `eventlite-native.${platform}.node`)

module.exports = { platform, binaryPath }
