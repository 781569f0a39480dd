'use strict'
// The compiled addon, loaded through the loader that `napi build` generates.
module.exports = require('../binding.js')
