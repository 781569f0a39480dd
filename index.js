'use strict'
// eventlite-native: an append-only event log with replay, over SQLite, for Node.js and Bun.
// API: docs/api.md and index.d.ts. Compatible with EventLite Sourcing's queue.
const { resolveOptions } = require('./lib/options')
const { EventQueue } = require('./lib/queue')
const { eventCallbacks } = require('./lib/execute')
const { openQueue } = require('./lib/async-queue')

/** Opens (creating if needed) an event queue; see docs/api.md for every option, and docs/async.md for `openQueue`, its async twin. */
function initQueue(options) {
  return new EventQueue(resolveOptions(options))
}

module.exports = { initQueue, openQueue, eventCallbacks }
