'use strict'
// eventlite-native: an append-only event log with replay, over SQLite, for Node.js and Bun.
// API: README.md and index.d.ts. Compatible with EventLite Sourcing's queue.
const { resolveOptions } = require('./lib/options')
const { EventQueue } = require('./lib/queue')
const { eventCallbacks } = require('./lib/execute')
const { openQueue } = require('./lib/async-queue')

/** Opens (creating if needed) an event queue; see README.md for every option. `openQueue` is its async twin (docs/async.md). */
function initQueue(options) {
  return new EventQueue(resolveOptions(options))
}

module.exports = { initQueue, openQueue, eventCallbacks }
