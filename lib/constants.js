'use strict'
// The constants the JavaScript layer shares with the Rust core: the columns of a row, the
// limits and the defaults of the options. Each is defined once, in the core (`constants` in
// src/lib.rs), and read here once, when the package loads.
const { constants } = require('./native')

function deepFreeze(value) {
  if (value !== null && typeof value === 'object') {
    for (const key of Object.keys(value)) deepFreeze(value[key])
    Object.freeze(value)
  }
  return value
}

module.exports = deepFreeze(constants())
