'use strict'
// The figures of the benchmark and their targets, as the project's benchmark specification sets them:
// run.js judges and prints them, workload.js measures them.

/**
 * `ratio`: ours / raw, taken in the same run, must reach it. `max`: ours alone, absolute, must
 * stay at or under it. `bun`: what differs on Bun, whose raw driver builds rows at about half
 * better-sqlite3's cost (see `targetOf`).
 */
const FIGURES = [
  { name: 'store_eps', unit: 'events/s', target: { ratio: 1.0 } },
  { name: 'storeBulk_eps', unit: 'events/s', target: { ratio: 1.5 } },
  { name: 'retrieveByID_ops', unit: 'ops/s', target: { ratio: 1.2, bun: { ratio: 1.0 } } },
  { name: 'retrieveByIDCached_hit_ops', unit: 'ops/s', target: { ratio: 5 } },
  { name: 'page100_ops', unit: 'pages/s', target: { ratio: 2, bun: { ratio: 1.2 } } },
  { name: 'stream_eps', unit: 'events/s', target: { ratio: 2, bun: { ratio: 1.5 } } },
  { name: 'storeAsync_eps', unit: 'events/s', target: { ratio: 3 } },
  { name: 'replay_eps', unit: 'events/s', target: { ratio: 1.2 } },
  { name: 'stream_rss_mb', unit: 'MB', target: { max: 64 } },
  // On PostgreSQL (bench/pg.js), against node-postgres: one INSERT per event, a multi-row
  // INSERT per batch, a server-side cursor.
  { name: 'pgWrite256_eps', unit: 'events/s', target: { ratio: 3 }, postgres: true },
  { name: 'pgStoreBulk_eps', unit: 'events/s', target: { ratio: 1.5 }, postgres: true },
  { name: 'pgStream_eps', unit: 'events/s', target: { ratio: 1 }, postgres: true },
]

/** The figures that need a PostgreSQL server. */
const POSTGRES_FIGURES = FIGURES.filter((f) => f.postgres).map((f) => f.name)

/** A figure's target on `runtime` ('node' or 'bun'). */
const targetOf = (figure, runtime) => ({ ...figure.target, ...figure.target[runtime] })

/** The second table (store and storeBulk under each index set), selectable like a figure. */
const INDEX_COST = 'indexCost'

/** The third: the async queue's throughput and write latency by number of producers. */
const ASYNC_SCALING = 'asyncScaling'

/**
 * The third table: appends to one stream of each length with `expectedVersion` and without,
 * selectable like a figure. `maxCost`: how much slower (as a share) the appends with it may be.
 */
const STREAM_COST = 'streamCost'
const STREAM_COST_TARGET = { maxCost: 0.2 }

/** Measured in a process of its own, so that the heap the other figures grew hides nothing. */
const RSS_FIGURE = 'stream_rss_mb'

const NAMES = [...FIGURES.map((f) => f.name), INDEX_COST, ASYNC_SCALING, STREAM_COST]

/** Parses `--only a,b`: every name must be a figure, `indexCost` or `asyncScaling`. */
function parseOnly(text) {
  if (!text) return NAMES
  const names = text.split(',').map((s) => s.trim()).filter(Boolean)
  const unknown = names.filter((n) => !NAMES.includes(n))
  if (unknown.length > 0 || names.length === 0) {
    throw new RangeError(`--only takes figure names separated by commas; unknown: ${unknown.join(', ') || '(none given)'}; known: ${NAMES.join(', ')}`)
  }
  return names
}

/** Parses `--rounds N`: a positive integer. */
function parseRounds(text, fallback) {
  if (text === undefined || text === '') return fallback
  const n = Number(text)
  if (!Number.isInteger(n) || n < 1 || n > 100) throw new RangeError(`--rounds must be an integer from 1 to 100, got ${text}`)
  return n
}

module.exports = { FIGURES, POSTGRES_FIGURES, targetOf, INDEX_COST, ASYNC_SCALING, STREAM_COST, STREAM_COST_TARGET, RSS_FIGURE, parseOnly, parseRounds }
