'use strict'
// The compiled addon, loaded through the loader that `napi build` generates.
const binding = require('../binding.js')
// No read hands this runtime a string longer than it can create (see src/pieces.rs).
binding.setMaxString(require('node:buffer').constants.MAX_STRING_LENGTH)
module.exports = binding
