'use strict'
// eventlite-native: an append-only event log with replay, over SQLite, for Node.js and Bun.
// API: README.md and index.d.ts. Compatible with EventLite Sourcing's queue.
const { resolveOptions } = require('./lib/options')
const { EventQueue } = require('./lib/queue')
const { eventCallbacks } = require('./lib/execute')
const { coded } = require('./lib/errors')

/** Opens (creating if needed) an event queue; see README.md for every option. */
function initQueue(options) {
  let settings
  try {
    settings = resolveOptions(options)
  } catch (err) {
    // An option whose getter throws is a bad option, reported like any other.
    throw err && typeof err.code === 'string' ? err : Object.assign(coded(TypeError, 'ERR_INVALID_OPTION', `reading the options threw: ${err && err.message}`), { cause: err })
  }
  return new EventQueue(settings)
}

module.exports = { initQueue, eventCallbacks }
