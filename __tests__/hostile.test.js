'use strict'
// Hostile input: a seeded generator throws thousands of malformed events, options and read
// arguments at every method. Every call must either succeed or throw an Error with a string
// `code`; the process must never abort; a call that throws must leave the stored events as
// they were; and whatever is stored must read back exactly as JSON has it.
const assert = require('node:assert/strict')
const { describe, test, tempDb } = require('./helpers')
const { initQueue, eventCallbacks } = require('..')

const SEED = 0x5eed

/** mulberry32: small, fast and reproducible. */
function generator(seed) {
  let a = seed >>> 0
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const int = (n) => Math.floor(next() * n)
  const pick = (list) => list[int(list.length)]
  return { next, int, pick }
}

const STRINGS = [
  '', 'plain', ' ', 'a'.repeat(1 << 20), 'nul\u0000inside', '\u0000', "'; DROP TABLE queue; --", '" OR 1=1 --',
  'Robert\'); DELETE FROM queue WHERE (\'1\'=\'1', '\uD800', 'x\uDFFFy', '😀🏳️‍🌈', '\u202Eright-to-left', 'zero\u200Bwidth',
  'e\u0301', '\uFEFFbom', '中文字符', '\\', '\n\r\t', '{"json":"text"}', '%s %d', '../../etc/passwd', 'NaN', '1e309',
]

function hostileValue(g, depth = 0) {
  switch (g.int(depth > 2 ? 8 : 12)) {
    case 0: return undefined
    case 1: return null
    case 2: return g.pick([true, false])
    case 3: return g.pick([0, -0, 1, -1, 1.5, NaN, Infinity, -Infinity, 2 ** 53, -(2 ** 53) - 2, 1e308, Number.MIN_VALUE])
    case 4: return g.pick([10n, -1n, 2n ** 64n])
    case 5: return Symbol(g.pick(['s', '']))
    case 6: return g.pick([() => 1, function named() {}, class Klass {}])
    case 7: return g.pick(STRINGS)
    case 8: {
      const cyclic = { name: 'cycle' }
      cyclic.self = cyclic
      return g.pick([cyclic, [cyclic], { deep: { deeper: cyclic } }])
    }
    case 9: return Array.from({ length: g.int(4) }, () => hostileValue(g, depth + 1))
    case 10: {
      const out = {}
      for (let k = g.int(4); k > 0; k--) out[g.pick(STRINGS.slice(0, 12))] = hostileValue(g, depth + 1)
      return out
    }
    default: return g.pick([
      new Date(0), new Map([[1, 2]]), new Uint8Array([1, 2]), /re/g, new Error('as data'),
      { toJSON() { throw new Error('toJSON threw') } }, { toJSON: () => undefined },
      Object.create(null), new Proxy({}, { get: () => { throw new Error('proxy trap') } }),
      { get cmd() { throw new Error('getter threw') } },
      nested(2000),
    ])
  }
}

/** An object nested `n` deep: JSON.stringify runs out of stack on deep enough ones. */
function nested(n) {
  let value = {}
  for (let i = 0; i < n; i++) value = { value }
  return value
}

/** Mostly-valid events with one or two hostile fields, so that validation is reached. */
function hostileEvent(g) {
  const event = { cmd: g.pick(['ok', 'ok', 'other', ...STRINGS.slice(0, 8)]) }
  for (const field of ['data', 'user', 'ip', 'version', 'correlationId', 'causationId', 'metadata', 'cmd']) {
    if (g.next() < 0.25) event[field] = hostileValue(g)
  }
  return g.next() < 0.05 ? hostileValue(g) : event
}

const ANY = (g) => hostileValue(g)

function assertCoded(err, context) {
  assert.ok(err instanceof Error, `${context}: threw a non-Error ${String(err)}`)
  assert.equal(typeof err.code, 'string', `${context}: ${err.name} without a code: ${err.stack}`)
}

/**
 * What is stored, in brief, to check a failed call changed nothing: the log is append-only,
 * so a call that changed it would have changed the count or the last id.
 */
const snapshot = (q) => `${q.getMetrics().eventCount}|${q.getLastRow()?.id}`

describe('hostile input', () => {
  test('thousands of malformed calls: each succeeds or throws a coded Error, and a throw changes nothing', async () => {
    const g = generator(SEED)
    const q = initQueue({ dbName: tempDb(), cache: { maxSize: 50 } })
    const model = { _queries: {}, _migrations: {}, ok: () => 1, _default() {}, _done() {}, _error() {} }
    const calls = {
      store: () => q.store(withCorrelation(hostileEvent(g)), g.pick([undefined, model]), eventCallbacks.void),
      storeBulk: () => q.storeBulk(g.next() < 0.2 ? ANY(g) : Array.from({ length: 1 + g.int(5) }, () => withCorrelation(hostileEvent(g)))),
      storeWithContext: () => q.storeWithContext(withCorrelation(hostileEvent(g)), g.next() < 0.5 ? ANY(g) : { metadata: ANY(g) }),
      retrieveByID: () => q.retrieveByID(ANY(g)),
      retrieveByIDCached: () => q.retrieveByIDCached(ANY(g)),
      getTransaction: () => q.getTransaction(ANY(g)),
      getTransactionCached: () => q.getTransactionCached(ANY(g)),
      getChildEvents: () => q.getChildEvents(ANY(g)),
      getEventLineage: () => q.getEventLineage(ANY(g)),
      // Replays the last few events (or a hostile range): replaying the whole growing log on
      // every call would make the test quadratic.
      cycleThrough: () => q.cycleThrough(model, () => {}, eventCallbacks.void, g.next() < 0.5 ? { start: ANY(g), stop: ANY(g) } : { start: Math.max(0, (q.getLastRow()?.id ?? 0) - 5) }),
      reads: () => [q.getLastRow(), q.getIndexes(), q.getMetrics(), q.getCacheStats(), q.clearCache()],
      pageByCorrelation: () => q.getByCorrelationIdPaginated(g.pick(['fuzz', ANY(g)]), pageOptions(g)),
      pageOfChildren: () => q.getChildEventsPaginated(g.pick([1, ANY(g)]), pageOptions(g)),
      pageByUser: () => q.getEventsByUserPaginated(ANY(g), pageOptions(g)),
      pageByCmd: () => q.getEventsByCmdPaginated(g.pick(['ok', ANY(g)]), pageOptions(g)),
      pageInTimeRange: () => q.getEventsInTimeRangePaginated(ANY(g), ANY(g), pageOptions(g)),
      // A stream's first batch: options are checked when it is opened, reads as it iterates.
      stream: async () => {
        for await (const batch of q.streamEvents(g.next() < 0.3 ? ANY(g) : streamOptions(g))) return batch.length
        return 0
      },
    }
    const names = Object.keys(calls)
    let stored = 0
    let refused = 0
    for (let i = 0; i < 5000; i++) {
      const name = names[g.int(names.length)]
      const before = snapshot(q)
      try {
        const result = await calls[name]()
        if (name === 'store' && result && typeof result === 'object' && 'id' in result) {
          stored++
          assert.deepEqual(q.retrieveByID(result.id), JSON.parse(JSON.stringify(result)), 'stored as JSON has it')
        }
      } catch (err) {
        assertCoded(err, `call ${i} (${name})`)
        refused++
        assert.equal(snapshot(q), before, `call ${i} (${name}) threw ${err.code} and changed what is stored`)
      }
    }
    assert.ok(stored > 10, `some events were stored (${stored})`)
    assert.ok(refused > 300, `many calls were refused (${refused})`)
    q.close()
  })

  test('hostile options are refused with a coded error and never open a file', () => {
    const g = generator(SEED + 1)
    const keys = ['dbName', 'WAL', 'synchronous', 'busyTimeout', 'indexes', 'cache', 'datetime', 'reset', 'risky', 'unknown', 'cache.maxSize']
    let refused = 0
    for (let i = 0; i < 1000; i++) {
      const options = { dbName: ':memory:' }
      for (let k = 1 + g.int(2); k > 0; k--) {
        const key = g.pick(keys)
        if (key === 'cache.maxSize') options.cache = { maxSize: ANY(g) }
        else options[key] = ANY(g)
      }
      if (typeof options.dbName === 'string' && options.dbName !== ':memory:') options.dbName = ':memory:'
      try {
        initQueue(g.next() < 0.05 ? ANY(g) : options).close()
      } catch (err) {
        assertCoded(err, `options ${i}`)
        refused++
      }
    }
    assert.ok(refused > 500, `most hostile options were refused (${refused})`)
  })

  test('strings of every kind round-trip exactly through every text field', () => {
    const q = initQueue({ dbName: tempDb() })
    for (const text of STRINGS.filter((s) => s !== '' && s.isWellFormed())) {
      const row = q.store({ cmd: text, user: text, ip: text, correlationId: text, data: { text, [text]: text }, metadata: [text] })
      const back = q.retrieveByID(row.id)
      for (const field of ['cmd', 'user', 'ip', 'correlation_id']) assert.equal(back[field], text)
      assert.deepEqual(back.data, { text, [text]: text })
      assert.deepEqual(back.metadata, [text])
      assert.deepEqual(q.getTransaction(text).map((r) => r.id), [row.id])
    }
    q.close()
  })
})

/** Page options, each field usually sane and sometimes hostile (a stale or foreign cursor too). */
function pageOptions(g) {
  if (g.next() < 0.1) return ANY(g)
  const options = {}
  if (g.next() < 0.5) options.limit = g.next() < 0.5 ? 1 + g.int(20) : ANY(g)
  if (g.next() < 0.3) options.offset = g.next() < 0.5 ? g.int(5) : ANY(g)
  if (g.next() < 0.3) options.withCount = g.next() < 0.5 ? false : ANY(g)
  if (g.next() < 0.2) options.cursor = g.pick([ANY(g), 'not-a-cursor', 'v1.' + 'A'.repeat(40), ''])
  return options
}

/** Stream options, each field usually sane and sometimes hostile; never `follow`. */
function streamOptions(g) {
  const options = {}
  for (const [key, sane] of [['batchSize', 1 + g.int(50)], ['startId', g.int(10)], ['endId', g.int(200)], ['user', 'u'], ['cmd', 'ok'], ['correlationId', 'fuzz']]) {
    if (g.next() < 0.3) options[key] = g.next() < 0.6 ? sane : ANY(g)
  }
  if (g.next() < 0.05) options.follow = ANY(g)
  if (options.follow === true) options.follow = false
  return options
}

/** Keeps fuzzed events in one transaction, so that they stay easy to find when debugging. */
function withCorrelation(event) {
  if (event !== null && typeof event === 'object' && !Array.isArray(event) && !('correlationId' in event) && Object.getPrototypeOf(event) === Object.prototype) {
    event.correlationId = 'fuzz'
  }
  return event
}
