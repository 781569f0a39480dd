'use strict'
// The benchmark's fixed workload (bench/README.md), under whichever runtime runs this file (Node or Bun).
// eventlite-native ("ours") and the raw driver of the runtime ("raw", ./raw.js) do the same
// work figure by figure, alternating within each round so that machine drift hits both alike,
// each figure on fresh files in a temp folder; the medians of the rounds go to --out as JSON.
// run.js starts it; `node bench/workload.js --out f.json [--rounds N] [--only a,b] [--smoke]`.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { parseArgs } = require('node:util')
const { initQueue, openQueue, eventCallbacks } = require('..')
const { RawQueue, RawAsyncQueue, driverName } = require('./raw')
const pg = require('./pg')
const { POSTGRES_FIGURES, INDEX_COST, ASYNC_SCALING, STREAM_COST, RSS_FIGURE, parseOnly, parseRounds } = require('./figures')

const isBun = typeof Bun !== 'undefined'
const RUNTIME = isBun ? 'bun' : 'node'

/** How much work each figure does: the specified sizes, and a few hundred events for --smoke. */
const SIZES = {
  full: {
    store: 20_000, bulk: 100_000, batch: 1_000, fixture: 100_000, byId: 50_000, cached: 200_000, warmIds: 1_000, pages: 2_000, rssEvents: 1_000_000,
    async: 100_000, scaling: 20_000, streamLengths: [0, 1_000, 100_000], streamStores: 5_000, streamBatches: 20,
    pgWrite: 20_000, pgBulk: 100_000, pgFixture: 100_000,
  },
  smoke: {
    store: 300, bulk: 500, batch: 100, fixture: 500, byId: 300, cached: 500, warmIds: 50, pages: 20, rssEvents: 500,
    async: 500, scaling: 300, streamLengths: [0, 500], streamStores: 200, streamBatches: 2,
    pgWrite: 300, pgBulk: 500, pgFixture: 500,
  },
}
/** The concurrent producers of storeAsync_eps, and the counts of the scaling table. */
const PRODUCERS = 256
const SCALING_PRODUCERS = [1, 16, 256, 4096]
/** Events per correlation id in `ev`, so rows per page. */
const PAGE = 100

/** The benchmark's event number `i`; the stream-cost table puts every event in one stream instead. */
const ev = (i, correlationId = 'corr-' + Math.floor(i / PAGE)) => ({
  cmd: 'logEvent',
  data: { i, message: 'Test event ' + i, ts: 1700000000000 + i },
  user: 'user' + (i % 10),
  correlationId,
})

/** The benchmark's model; the raw side calls the same `logEvent` on each row it stores. */
const model = { _queries: {}, _migrations: {}, _default() {}, _done() {}, _error() {}, logEvent(d) { return d.i } }
const callbacks = eventCallbacks.void

const events = (from, count) => Array.from({ length: count }, (_, k) => ev(from + k))

function batches(list, size) {
  const out = []
  for (let at = 0; at < list.length; at += size) out.push(list.slice(at, at + size))
  return out
}

/** `count` values in 1..`total`, stepping by a prime so that reads jump around the file. */
const spread = (count, total) => Array.from({ length: count }, (_, k) => 1 + ((k * 7919) % total))

function sumOf(list, fn) {
  let sum = 0
  for (const item of list) sum += fn(item)
  return sum
}

/** How each side opens a file. The cache is off unless a figure asks for it. */
const SIDES = {
  ours: (file, { cache = false, wal = true, indexes } = {}) => initQueue({ dbName: file, WAL: wal, cache: { enabled: cache }, indexes }),
  raw: (file) => new RawQueue(file),
}

/** The same for the figures of the async queue (`async: true`): openQueue, and a plain async wrapper. */
const ASYNC_SIDES = {
  ours: (file, { cache = false } = {}) => openQueue({ dbName: file, cache: { enabled: cache } }),
  raw: (file) => new RawAsyncQueue(file),
}

/**
 * Runs `producers` concurrent producers over `input`, each awaiting `write(item)` before it
 * takes the next item; resolves with the sum of what the writes returned.
 */
async function produce(input, producers, write) {
  let next = 0
  let sum = 0
  const producer = async () => {
    while (next < input.length) {
      // Not `sum += await …`: that reads `sum` before the await, and loses what others added meanwhile.
      const result = await write(input[next++])
      sum += result
    }
  }
  await Promise.all(Array.from({ length: producers }, producer))
  return sum
}

/**
 * The figures both sides run. `from`: the file a run starts on, an empty one or a copy of the
 * fixture (`sizes.fixture` events). `input` is built and `warm` is run before the clock starts.
 * `run` is the timed work; what it returns must be the same on both sides, or they did not do
 * the same work. `needs`: the queue method without which the figure is n/a. `interleaved`: the
 * two sides take turns (see measurePair), in `'slices'` of the input, which `run` does for any
 * slice, returning what adds up to the whole's check value, or in whole `'runs'`. Only reads
 * are, as only they leave no work running once a turn's call returns, where a write's
 * checkpoints would go on during the other side's turn; a stream or a replay in slices would
 * leave its next batch being read, so each turn of those is a whole run, its reader released
 * before the turn ends.
 */
const WORK = {
  store_eps: {
    from: 'empty',
    units: (n) => n.store,
    input: (n) => events(0, n.store),
    run: (q, input) => sumOf(input, (e) => q.store(e, model, callbacks)),
  },
  storeBulk_eps: {
    from: 'empty',
    units: (n) => n.bulk,
    input: (n) => batches(events(0, n.bulk), n.batch),
    run: (q, input) => sumOf(input, (batch) => sumOf(q.storeBulk(batch, model, callbacks), (r) => r.result)),
  },
  retrieveByID_ops: {
    from: 'fixture',
    interleaved: 'slices',
    units: (n) => n.byId,
    input: (n) => spread(n.byId, n.fixture),
    run: (q, ids) => sumOf(ids, (id) => q.retrieveByID(id).data.i),
  },
  retrieveByIDCached_hit_ops: {
    from: 'fixture',
    interleaved: 'slices',
    cache: true,
    needs: 'retrieveByIDCached',
    units: (n) => n.cached,
    input: (n) => {
      const warm = spread(n.warmIds, n.fixture)
      return Array.from({ length: n.cached }, (_, k) => warm[k % warm.length])
    },
    warm: (q, ids) => new Set(ids).forEach((id) => q.retrieveByIDCached(id)),
    run: (q, ids) => sumOf(ids, (id) => q.retrieveByIDCached(id).data.i),
  },
  page100_ops: {
    from: 'fixture',
    interleaved: 'slices',
    needs: 'getByCorrelationIdPaginated',
    units: (n) => n.pages,
    input: (n) => spread(n.pages, n.fixture / PAGE).map((c) => 'corr-' + (c - 1)),
    run: (q, correlationIds) => sumOf(correlationIds, (c) => {
      const page = q.getByCorrelationIdPaginated(c, { limit: PAGE })
      return page.totalCount + page.events[page.events.length - 1].data.i
    }),
  },
  storeAsync_eps: {
    from: 'empty',
    async: true,
    units: (n) => n.async,
    input: (n) => events(0, n.async),
    run: (q, input) => produce(input, PRODUCERS, (e) => q.store(e, model, callbacks)),
  },
  replay_eps: {
    from: 'fixture',
    async: true,
    interleaved: 'runs',
    units: (n) => n.fixture,
    input: () => null,
    async run(q) {
      let sum = 0
      const counting = { ...model, logEvent(d) { sum += d.i; return d.i } }
      await q.cycleThrough(counting, undefined, callbacks)
      return sum
    },
  },
  stream_eps: {
    from: 'fixture',
    interleaved: 'runs',
    needs: 'streamEvents',
    units: (n) => n.fixture,
    input: () => null,
    async run(q) {
      let rows = 0
      for await (const batch of q.streamEvents({ batchSize: 1000 })) rows += batch.length
      return rows
    },
  },
  // On PostgreSQL: places and sides from bench/pg.js, every method a Promise on both sides.
  pgWrite256_eps: {
    from: 'empty',
    needs: 'store',
    units: (n) => n.pgWrite,
    input: (n) => events(0, n.pgWrite),
    run: (q, input) => produce(input, PRODUCERS, (e) => q.store(e, model, callbacks)),
  },
  pgStoreBulk_eps: {
    from: 'empty',
    needs: 'storeBulk',
    units: (n) => n.pgBulk,
    input: (n) => batches(events(0, n.pgBulk), n.batch),
    async run(q, input) {
      let sum = 0
      for (const batch of input) sum += sumOf(await q.storeBulk(batch, model, callbacks), (r) => r.result)
      return sum
    },
  },
  pgStream_eps: {
    from: 'fixture',
    needs: 'streamEvents',
    units: (n) => n.pgFixture,
    input: () => null,
    async run(q) {
      let sum = 0
      for await (const batch of q.streamEvents({ batchSize: 1000 })) sum += sumOf(batch, (row) => row.data.i)
      return sum
    },
  },
}

/** The second table: `store()` and `storeBulk()` of ours under each index set. */
const INDEX_SETS = [
  { key: 'core', label: 'core: correlation_id, causation_id', wal: true, indexes: {} },
  { key: 'balanced', label: 'balanced: core + cmd, datetime', wal: true, indexes: { cmd: true, datetime: true } },
  {
    key: 'queryOptimised',
    label: 'query-optimised: all but user_datetime',
    wal: true,
    indexes: { cmd: true, user: true, datetime: true, version: true, correlation_cmd: true },
  },
  {
    key: 'all',
    label: 'all 8',
    wal: true,
    indexes: { cmd: true, user: true, datetime: true, version: true, correlation_cmd: true, user_datetime: true },
  },
  // With the rollback journal, synchronous defaults to FULL and every commit waits for fsync
  // (10 to 20 ms on this machine's disk): 1/100 of the store() calls already take seconds.
  { key: 'walOff', label: 'core, WAL off (rollback journal)', wal: false, indexes: {}, storeShare: 1 / 100 },
]
const INDEX_COST_FIGURES = ['store_eps', 'storeBulk_eps']

/** The stream the third table appends to. */
const STREAM = 'orders-1'
const STREAM_KINDS = ['store_eps', 'storeBulk_eps']

/**
 * The appends of the third table, to a stream of `length` events: `store()` calls or
 * `storeBulk()` batches of the stream's events, `expected` ones carrying the version the
 * stream is at (for a batch, its first event), as a writer with optimistic concurrency does.
 */
function streamInput(kind, sizes, length, expected) {
  const event = (i, expects) => {
    const e = ev(length + i, STREAM)
    if (expects) e.expectedVersion = length + i
    return e
  }
  if (kind === 'store_eps') return Array.from({ length: sizes.streamStores }, (_, i) => event(i, expected))
  return Array.from({ length: sizes.streamBatches }, (_, b) => Array.from({ length: sizes.batch }, (_, k) => event(b * sizes.batch + k, expected && k === 0)))
}

/** A file whose stream holds `length` events, its version read once (so counted) as a running writer's would be. */
function streamFixture(dir, sizes, length) {
  const file = path.join(dir, `stream-${length}.sqlite`)
  const q = SIDES.ours(file)
  for (let from = 0; from < length; from += sizes.batch) {
    q.storeBulk(Array.from({ length: Math.min(sizes.batch, length - from) }, (_, k) => ev(from + k, STREAM)))
  }
  if (q.getStreamVersion(STREAM) !== length) throw new Error(`${STREAM_COST}: the fixture stream holds the wrong number of events`)
  q.close()
  return file
}

/** One timed run of the third table: events/s of appends to a copy of `fixture`. */
async function measureStream(fixture, file, kind, sizes, length, expected) {
  for (const suffix of ['', '-wal']) {
    if (fs.existsSync(fixture + suffix)) fs.copyFileSync(fixture + suffix, file + suffix)
  }
  const input = streamInput(kind, sizes, length, expected)
  const q = SIDES.ours(file)
  try {
    if (kind === 'store_eps') return (await timed(input.length, () => sumOf(input, (e) => q.store(e, model, callbacks)))).rate
    const events = input.length * sizes.batch
    return (await timed(events, () => sumOf(input, (batch) => sumOf(q.storeBulk(batch, model, callbacks), (r) => r.result)))).rate
  } finally {
    q.close()
    removeDb(file)
  }
}

/** `pair` in its order on even turns, the other way round on odd ones, so neither always goes first. */
const inTurn = (pair, k) => (k % 2 === 0 ? pair : [...pair].reverse())

/** The rate of runs of the same work taken together: their harmonic mean, all units over all the time. */
const overallRate = (rates) => rates.length / rates.reduce((sum, rate) => sum + 1 / rate, 0)

/**
 * The third table: for each stream length, `store()` and `storeBulk()` with and without
 * `expectedVersion`, the two taking turns within each round, `TURNS.runs` whole runs each (a
 * `storeBulk()` run takes a twentieth of a second, far shorter than the stretches in which a
 * shared machine runs faster or slower); the medians, and `cost`, the median of the per-round
 * shares by which the appends with it were slower.
 */
async function streamCost(dir, sizes, rounds) {
  const fixtures = Object.fromEntries(sizes.streamLengths.map((length) => [length, streamFixture(dir, sizes, length)]))
  const file = path.join(dir, 'stream-run.sqlite')
  const result = {}
  for (const length of sizes.streamLengths) {
    result[length] = { streamLength: length }
    for (const kind of STREAM_KINDS) {
      const samples = { plain: [], expected: [], cost: [] }
      for (let round = 0; round < rounds; round++) {
        const order = inTurn([false, true], round)
        const rates = { false: [], true: [] }
        for (let turn = 0; turn < TURNS.runs; turn++) {
          for (const expected of inTurn(order, turn)) {
            rates[expected].push(await measureStream(fixtures[length], file, kind, sizes, length, expected))
          }
        }
        const got = { false: overallRate(rates.false), true: overallRate(rates.true) }
        samples.plain.push(got.false)
        samples.expected.push(got.true)
        samples.cost.push(got.false / got.true - 1)
        log(`round ${round + 1}/${rounds}  ${STREAM_COST} ${length}  ${kind}  without ${fmt(got.false)}  with ${fmt(got.true)}`)
      }
      result[length][kind] = { plain: median(samples.plain), expected: median(samples.expected), cost: median(samples.cost) }
    }
  }
  for (const fixture of Object.values(fixtures)) removeDb(fixture)
  return result
}

function collectGarbage() {
  if (isBun) Bun.gc(true)
  else if (typeof global.gc === 'function') global.gc()
}

/** The one timing helper both sides use: runs `work` once; units per second and its check value. */
async function timed(units, work) {
  collectGarbage()
  const start = performance.now()
  const check = await work()
  const seconds = (performance.now() - start) / 1000
  return { rate: units / seconds, check }
}

function removeDb(file) {
  for (const suffix of ['', '-wal', '-shm', '-journal']) fs.rmSync(file + suffix, { force: true })
}

/** Fresh database files in `dir` for work of the given sizes; the fixture is built on first use. */
function files(dir, sizes) {
  let made = 0
  let fixture = null
  const next = () => path.join(dir, `db-${++made}.sqlite`)
  function buildFixture() {
    const file = next()
    const raw = new RawQueue(file)
    for (const batch of batches(events(0, sizes.fixture), sizes.batch)) raw.storeBulk(batch, model)
    raw.close()
    return file
  }
  return {
    sizes,
    remove: removeDb,
    fresh(from) {
      const file = next()
      if (from === 'fixture') {
        fixture ??= buildFixture()
        // A driver that left the WAL in place on close would leave rows out of the file alone.
        for (const suffix of ['', '-wal']) {
          if (fs.existsSync(fixture + suffix)) fs.copyFileSync(fixture + suffix, file + suffix)
        }
      }
      return file
    },
  }
}

/** A fresh file (or schema) for `work` on `side`, and that side's queue opened on it. */
async function openSide(work, side, disk, options = {}) {
  const file = await disk.fresh(work.from, side)
  const q = await (disk.sides ?? (work.async ? ASYNC_SIDES : SIDES))[side](file, { cache: work.cache, ...options })
  return { file, q }
}

/**
 * One timed run of a figure on one side: `{ rate, check }`, or null when ours lacks the API.
 * `disk`: files (files()) or PostgreSQL schemas (bench/pg.js), with how to open each side there.
 */
async function measure(name, side, disk, options = {}) {
  const work = WORK[name]
  const input = work.input(disk.sizes)
  const { file, q } = await openSide(work, side, disk, options)
  try {
    if (work.needs && typeof q[work.needs] !== 'function') return null
    if (work.warm) work.warm(q, input)
    return await timed(work.units(disk.sizes), () => work.run(q, input))
  } finally {
    await q.close()
    await disk.remove(file)
  }
}

/**
 * Turns of an interleaved run: in slices, 50,000 point reads go 1,000 at a time, 2,000 pages
 * 40 at a time, each slice a few milliseconds, far shorter than the stretches in which a shared
 * machine runs faster or slower. A whole run (a stream of the fixture, a replay) takes about a
 * tenth of a second; five of them a side share those stretches too.
 */
const TURNS = { slices: 50, runs: 5 }

/**
 * One timed run of an interleaved figure on both sides: `{ ours, raw }` as `measure` gives
 * them, the same input, each side on its own fresh file, the two taking turns (`order` first,
 * then the other way round) and each timed over its own turns only. Run back to back, the two
 * runs of a round can fall into different stretches of a shared machine's speed (on this one
 * a figure's rate moves by up to 2x from one run to the next, on both sides); taking turns
 * (see TURNS), they share them.
 */
async function measurePair(name, disk, order) {
  const work = WORK[name]
  const input = work.input(disk.sizes)
  const sides = {}
  try {
    for (const side of order) sides[side] = { ...(await openSide(work, side, disk)), ms: 0, check: 0 }
    if (work.needs && typeof sides.ours.q[work.needs] !== 'function') return null
    for (const side of order) work.warm?.(sides[side].q, input)
    const runs = work.interleaved === 'runs'
    const turns = runs ? Array(TURNS.runs).fill(input) : batches(input, Math.ceil(input.length / TURNS.slices))
    collectGarbage()
    for (const [k, turnInput] of turns.entries()) {
      for (const side of inTurn(order, k)) {
        const turn = sides[side]
        const start = performance.now()
        // A slice is synchronous: awaiting it would time a trip through the microtask queue too.
        turn.check += runs ? await work.run(turn.q, turnInput) : work.run(turn.q, turnInput)
        turn.ms += performance.now() - start
      }
    }
    const units = work.units(disk.sizes) * (runs ? turns.length : 1)
    const sample = ({ ms, check }) => ({ rate: units / (ms / 1000), check })
    return { ours: sample(sides.ours), raw: sample(sides.raw) }
  } finally {
    for (const { q, file } of Object.values(sides)) {
      await q.close()
      await disk.remove(file)
    }
  }
}

function median(values) {
  if (values.length === 0 || values.includes(null)) return null
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

const rateOf = (sample) => (sample === null ? null : sample.rate)
const fmt = (n) => (n === null ? 'n/a' : Math.round(n).toLocaleString('en-US'))
const log = (line) => process.stderr.write(`[${RUNTIME}] ${line}\n`)

/**
 * The ours-versus-raw figures: ours and raw back to back in each round, then the medians. The
 * ratio is the median of the per-round ratios, each from two runs seconds apart, which cancels
 * more of the drift of a shared machine than the ratio of the medians would; `ratioRange` is
 * their lowest and highest, to show how much the rounds agreed.
 */
async function compare(names, disk, rounds, label = 'round') {
  const samples = Object.fromEntries(names.map((name) => [name, { ours: [], raw: [], ratio: [] }]))
  for (let round = 0; round < rounds; round++) {
    const order = inTurn(['ours', 'raw'], round)
    for (const name of names) {
      const got = (WORK[name].interleaved && (await measurePair(name, disk, order))) || {}
      for (const side of order) got[side] ??= await measure(name, side, disk)
      if (got.ours && got.ours.check !== got.raw.check) {
        throw new Error(`${name}: ours and raw did not do the same work (check ${got.ours.check} vs ${got.raw.check})`)
      }
      samples[name].ours.push(rateOf(got.ours))
      samples[name].raw.push(rateOf(got.raw))
      samples[name].ratio.push(got.ours && got.ours.rate / got.raw.rate)
      log(`${label} ${round + 1}/${rounds}  ${name}  ours ${fmt(rateOf(got.ours))}  raw ${fmt(rateOf(got.raw))}`)
    }
  }
  return Object.fromEntries(names.map((name) => {
    const { ours, raw, ratio } = samples[name]
    const range = ratio.includes(null) ? null : [Math.min(...ratio), Math.max(...ratio)]
    return [name, { ours: median(ours), raw: median(raw), ratio: median(ratio), ratioRange: range }]
  }))
}

/** A figure that did not run, and why. */
const notRun = (reason) => ({ ours: null, raw: null, ratio: null, ratioRange: null, reason })

/**
 * The PostgreSQL figures, on a server started for them (bench/pg.js), after a warm-up at smoke
 * sizes, and the raw driver's name; each not run, with the reason, when no server can start;
 * ours n/a, with the reason, while openQueue has no PostgreSQL backend (raw is still measured).
 */
async function pgFigures(names, sizes, rounds) {
  const server = pg.startServer()
  if (server.reason) return { figures: Object.fromEntries(names.map((name) => [name, notRun(server.reason)])), driver: null }
  try {
    const missing = await pg.oursMissing(server.url)
    const fill = (n) => async (q) => {
      for (const batch of batches(events(0, n.pgFixture), n.batch)) await q.storeBulk(batch, model, callbacks)
    }
    const figures = {}
    for (const [label, n, times] of [['warm-up', SIZES.smoke, 1], ['round', sizes, rounds]]) {
      const place = pg.pgPlace(server.url, n, missing, fill(n))
      try {
        Object.assign(figures, await compare(names, place, times, label))
      } finally {
        await place.close()
      }
    }
    if (missing) for (const entry of Object.values(figures)) entry.reason = missing
    return { figures, driver: await pg.driverName(server.url) }
  } finally {
    server.stop()
  }
}

/** The index-cost table: ours alone, the sets interleaved within each round, then medians. */
async function indexCost(disk, rounds) {
  const samples = Object.fromEntries(INDEX_SETS.map((set) => [set.key, { store_eps: [], storeBulk_eps: [] }]))
  for (let round = 0; round < rounds; round++) {
    for (const set of INDEX_SETS) {
      const sized = set.storeShare ? { ...disk, sizes: { ...disk.sizes, store: Math.ceil(disk.sizes.store * set.storeShare) } } : disk
      for (const name of INDEX_COST_FIGURES) {
        samples[set.key][name].push(rateOf(await measure(name, 'ours', sized, { wal: set.wal, indexes: set.indexes })))
      }
      log(`round ${round + 1}/${rounds}  indexCost ${set.key}  store ${fmt(samples[set.key].store_eps.at(-1))}  storeBulk ${fmt(samples[set.key].storeBulk_eps.at(-1))}`)
    }
  }
  return Object.fromEntries(INDEX_SETS.map((set) => [set.key, {
    label: set.label,
    indexes: 2 + Object.keys(set.indexes).length,
    wal: set.wal,
    storeCalls: Math.ceil(disk.sizes.store * (set.storeShare ?? 1)),
    store_eps: median(samples[set.key].store_eps),
    storeBulk_eps: median(samples[set.key].storeBulk_eps),
  }]))
}

/** The value below which `fraction` of the sorted `values` fall. */
const percentile = (sorted, fraction) => sorted[Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)]

/**
 * The third table: the async queue's throughput and write latency (from the call to its
 * resolution, in ms) with 1 to 4,096 concurrent producers, each run on a fresh file; medians
 * of the rounds.
 */
async function asyncScaling(disk, rounds) {
  const input = events(0, disk.sizes.scaling)
  const samples = Object.fromEntries(SCALING_PRODUCERS.map((p) => [p, { eps: [], p50: [], p99: [] }]))
  for (let round = 0; round < rounds; round++) {
    for (const producers of SCALING_PRODUCERS) {
      const file = disk.fresh('empty')
      const q = await ASYNC_SIDES.ours(file)
      const latencies = new Float64Array(input.length)
      let at = 0
      try {
        const { rate } = await timed(input.length, () => produce(input, producers, async (e) => {
          const start = performance.now()
          const result = await q.store(e, model, callbacks)
          latencies[at++] = performance.now() - start
          return result
        }))
        latencies.sort()
        const sample = samples[producers]
        sample.eps.push(rate)
        sample.p50.push(percentile(latencies, 0.5))
        sample.p99.push(percentile(latencies, 0.99))
        log(`round ${round + 1}/${rounds}  asyncScaling ${producers} producers  ${fmt(rate)} events/s  p99 ${sample.p99.at(-1).toFixed(2)} ms`)
      } finally {
        await q.close()
        removeDb(file)
      }
    }
  }
  return Object.fromEntries(SCALING_PRODUCERS.map((producers) => {
    const { eps, p50, p99 } = samples[producers]
    return [producers, { producers, events: input.length, eps: median(eps), p50Ms: median(p50), p99Ms: median(p99) }]
  }))
}

/**
 * Peak RSS growth, in MB, while ours streams `rssEvents` events, from just before the stream;
 * the file is built with storeBulk first. RSS is sampled on every batch and every 5 ms.
 */
async function streamRss(disk) {
  const { rssEvents, batch } = disk.sizes
  const file = disk.fresh('empty')
  let q = SIDES.ours(file)
  try {
    if (typeof q.streamEvents !== 'function') return null
    for (let from = 0; from < rssEvents; from += batch) q.storeBulk(events(from, Math.min(batch, rssEvents - from)))
    q.close()
    q = SIDES.ours(file)
    collectGarbage()
    const before = process.memoryUsage.rss()
    let peak = before
    const sample = () => { peak = Math.max(peak, process.memoryUsage.rss()) }
    const timer = setInterval(sample, 5)
    let rows = 0
    try {
      for await (const rowsOfBatch of q.streamEvents({ batchSize: 1000 })) {
        rows += rowsOfBatch.length
        sample()
      }
    } finally {
      clearInterval(timer)
    }
    if (rows !== rssEvents) throw new Error(`${RSS_FIGURE}: the stream yielded ${rows} of ${rssEvents} events`)
    const mb = (peak - before) / 2 ** 20
    log(`${RSS_FIGURE}  ${mb.toFixed(1)} MB over ${rssEvents.toLocaleString('en-US')} events (RSS ${(before / 2 ** 20).toFixed(0)} MB before)`)
    return mb
  } finally {
    q.close()
    removeDb(file)
  }
}

async function main() {
  const { values } = parseArgs({
    options: { out: { type: 'string' }, rounds: { type: 'string' }, only: { type: 'string' }, smoke: { type: 'boolean' } },
  })
  if (!values.out) throw new RangeError('--out FILE is required: the JSON results go there')
  const names = parseOnly(values.only)
  const smoke = Boolean(values.smoke)
  const rounds = parseRounds(values.rounds, 1)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'eventlite-bench-'))
  const result = { runtime: RUNTIME, version: isBun ? Bun.version : process.versions.node, driver: driverName(), figures: {} }
  try {
    const disk = files(dir, smoke ? SIZES.smoke : SIZES.full)
    const compared = names.filter((name) => name in WORK && !POSTGRES_FIGURES.includes(name))
    const onPostgres = names.filter((name) => POSTGRES_FIGURES.includes(name))
    const warmUp = [...new Set([...compared, ...(names.includes(INDEX_COST) ? INDEX_COST_FIGURES : [])])]
    if (warmUp.length > 0) await compare(warmUp, files(dir, SIZES.smoke), 1, 'warm-up')
    if (compared.length > 0) Object.assign(result.figures, await compare(compared, disk, rounds))
    if (onPostgres.length > 0) {
      const { figures, driver } = await pgFigures(onPostgres, disk.sizes, rounds)
      Object.assign(result.figures, figures)
      result.pgDriver = driver
    }
    if (names.includes(INDEX_COST)) result.indexCost = await indexCost(disk, rounds)
    if (names.includes(ASYNC_SCALING)) result.asyncScaling = await asyncScaling(disk, rounds)
    if (names.includes(STREAM_COST)) result.streamCost = await streamCost(dir, disk.sizes, rounds)
    if (names.includes(RSS_FIGURE)) result.figures[RSS_FIGURE] = { ours: await streamRss(disk) }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
  fs.writeFileSync(values.out, JSON.stringify(result, null, 2))
}

main().catch((err) => {
  process.stderr.write(`[${RUNTIME}] the workload failed: ${err && err.stack}\n`)
  process.exitCode = 1
})
