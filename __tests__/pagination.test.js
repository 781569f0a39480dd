'use strict'
const assert = require('node:assert/strict')
const { describe, test, after, tempDb } = require('./helpers')
const { initQueue } = require('..')

/**
 * A queue holding `count` events whose datetime comes from `times` (one per event, in order),
 * so that tests control ties. Event i (0-based, id i + 1): user `u{i % 3}`, cmd `c{i % 2}`,
 * correlation id `k{i % 4}`, causation id 1 for every event after the first.
 */
function queueWith(count, times = (i) => 1000 + Math.floor(i / 3), options = {}) {
  let i = 0
  const q = initQueue({ dbName: tempDb(), datetime: () => times(i++), ...options })
  after(() => q.close())
  const events = Array.from({ length: count }, (_, n) => ({
    cmd: `c${n % 2}`,
    data: { n },
    user: `u${n % 3}`,
    correlationId: `k${n % 4}`,
    causationId: n === 0 ? undefined : 1,
  }))
  q.storeBulk(events)
  return q
}

/** Every row of the log, read one by one. */
function allRows(q) {
  const rows = []
  for (let row = q.getLastRow(), id = 1; row !== null && id <= row.id; id++) rows.push(q.retrieveByID(id))
  return rows
}

const newestFirst = (a, b) => b.datetime - a.datetime || b.id - a.id
const ids = (rows) => rows.map((r) => r.id)

/** The five methods, each with a key argument and the rows it must return, in order. */
function cases(q) {
  const rows = allRows(q)
  return [
    { name: 'getByCorrelationIdPaginated', call: (o) => q.getByCorrelationIdPaginated('k1', o), expected: rows.filter((r) => r.correlation_id === 'k1') },
    { name: 'getChildEventsPaginated', call: (o) => q.getChildEventsPaginated(1, o), expected: rows.filter((r) => r.causation_id === 1) },
    { name: 'getEventsByUserPaginated', call: (o) => q.getEventsByUserPaginated('u2', o), expected: rows.filter((r) => r.user === 'u2').sort(newestFirst) },
    { name: 'getEventsByCmdPaginated', call: (o) => q.getEventsByCmdPaginated('c0', o), expected: rows.filter((r) => r.cmd === 'c0').sort(newestFirst) },
    {
      name: 'getEventsInTimeRangePaginated',
      call: (o) => q.getEventsInTimeRangePaginated(1003, 1010, o),
      expected: rows.filter((r) => r.datetime >= 1003 && r.datetime <= 1010).sort(newestFirst),
    },
  ]
}

/** Walks every page, by offset or by cursor; returns the pages. */
function walk(call, limit, byCursor) {
  const pages = []
  let options = { limit }
  for (;;) {
    const page = call(options)
    pages.push(page)
    if (!page.hasMore) return pages
    options = byCursor ? { limit, cursor: page.nextCursor } : { limit, offset: page.nextOffset }
  }
}

describe('paginated reads', () => {
  test('each method returns its rows in its order, in full rows equal to retrieveByID', () => {
    const q = queueWith(60)
    for (const { name, call, expected } of cases(q)) {
      assert.ok(expected.length > 10, name)
      const page = call({ limit: 10000 })
      assert.deepStrictEqual(page.events, expected, name)
      assert.deepStrictEqual(
        { totalCount: page.totalCount, hasMore: page.hasMore, nextOffset: page.nextOffset, nextCursor: page.nextCursor },
        { totalCount: expected.length, hasMore: false, nextOffset: null, nextCursor: null },
        name,
      )
      assert.deepStrictEqual(Object.keys(page), ['events', 'totalCount', 'hasMore', 'nextOffset', 'nextCursor'])
    }
  })

  test('defaults: the first 100 rows, counted', () => {
    const q = queueWith(250)
    const page = q.getChildEventsPaginated(1)
    assert.deepStrictEqual(ids(page.events), Array.from({ length: 100 }, (_, i) => i + 2))
    assert.equal(page.totalCount, 249)
    assert.equal(page.hasMore, true)
    assert.equal(page.nextOffset, 100)
    assert.equal(typeof page.nextCursor, 'string')
  })

  test('rows with the same datetime come newest id first, and no page skips or repeats one', () => {
    // Every event has the same datetime: the order is the id alone.
    const q = queueWith(40, () => 5000)
    const page = q.getEventsInTimeRangePaginated(5000, 5000, { limit: 100 })
    assert.deepStrictEqual(ids(page.events), Array.from({ length: 40 }, (_, i) => 40 - i))
    for (const limit of [1, 3, 7]) {
      for (const byCursor of [false, true]) {
        const seen = walk((o) => q.getEventsByCmdPaginated('c1', o), limit, byCursor).flatMap((p) => ids(p.events))
        assert.deepStrictEqual(seen, Array.from({ length: 20 }, (_, i) => 40 - 2 * i), `limit ${limit}, by cursor ${byCursor}`)
      }
    }
  })

  test('walking by offset and by cursor gives the same pages, for every method', () => {
    const q = queueWith(90)
    for (const { name, call, expected } of cases(q)) {
      for (const limit of [1, 4, 9, 100]) {
        const byOffset = walk(call, limit, false)
        const byCursor = walk(call, limit, true)
        assert.deepStrictEqual(byOffset.flatMap((p) => p.events), expected, `${name} limit ${limit}`)
        assert.equal(byCursor.length, byOffset.length)
        byOffset.forEach((page, i) => {
          const other = byCursor[i]
          assert.deepStrictEqual(other.events, page.events, `${name} limit ${limit} page ${i}`)
          assert.equal(other.totalCount, expected.length)
          assert.equal(page.totalCount, expected.length)
          assert.equal(other.hasMore, page.hasMore)
          assert.equal(other.nextOffset, page.nextOffset, 'nextOffset counts the rows passed along a cursor walk too')
          assert.equal(page.nextOffset, page.hasMore ? (i + 1) * limit : null)
          assert.equal(typeof page.nextCursor, page.hasMore ? 'string' : 'object')
        })
      }
    }
  })

  test('withCount: false skips the count and hasMore stays exact', () => {
    const q = queueWith(30)
    const total = q.getByCorrelationIdPaginated('k0').totalCount
    assert.equal(total, 8)
    for (const [offset, hasMore] of [[0, true], [4, false], [5, false], [50, false]]) {
      const page = q.getByCorrelationIdPaginated('k0', { limit: 4, offset, withCount: false })
      assert.equal(page.totalCount, null)
      assert.equal(page.hasMore, hasMore, `offset ${offset}`)
      assert.equal(page.events.length, Math.max(0, Math.min(4, total - offset)))
    }
  })

  test('a page past the end, or of a key with no events, is empty', () => {
    const q = queueWith(10)
    const empty = { events: [], totalCount: 0, hasMore: false, nextOffset: null, nextCursor: null }
    assert.deepStrictEqual(q.getEventsByUserPaginated('nobody'), empty)
    assert.deepStrictEqual(q.getChildEventsPaginated(999), empty)
    assert.deepStrictEqual(q.getByCorrelationIdPaginated('k1', { offset: 100 }), { ...empty, totalCount: 3 })
  })

  test('time ranges are inclusive at both ends and take numbers or Dates', () => {
    const q = queueWith(12, (i) => 100 * i)
    const between = (a, b, o) => ids(q.getEventsInTimeRangePaginated(a, b, o).events)
    assert.deepStrictEqual(between(200, 500), [6, 5, 4, 3])
    assert.deepStrictEqual(between(201, 499), [5, 4])
    assert.deepStrictEqual(between(new Date(300), new Date(300)), [4])
    assert.deepStrictEqual(between(1000, Infinity), [12, 11])
    assert.deepStrictEqual(between(-Infinity, 0), [1])
    assert.deepStrictEqual(between(500, 200), [])
  })

  test('a cursor walk neither skips nor repeats a row while newer events arrive', () => {
    let now = 1000
    const q = queueWith(20, () => now++)
    const seen = []
    let page = q.getEventsByCmdPaginated('c0', { limit: 3 })
    for (;;) {
      seen.push(...ids(page.events))
      q.store({ cmd: 'c0' }) // newer than everything: it lands before the first page
      if (!page.hasMore) break
      page = q.getEventsByCmdPaginated('c0', { limit: 3, cursor: page.nextCursor })
    }
    assert.deepStrictEqual(seen, [19, 17, 15, 13, 11, 9, 7, 5, 3, 1])
  })

  test('each call returns fresh rows', () => {
    const q = queueWith(5)
    const first = q.getByCorrelationIdPaginated('k0')
    first.events[0].data.n = 'changed'
    first.events[0].metadata.extra = true
    const again = q.getByCorrelationIdPaginated('k0')
    assert.deepStrictEqual(again.events[0].data, { n: 0 })
    assert.deepStrictEqual(again.events[0].metadata, {})
    assert.deepStrictEqual(JSON.parse(JSON.stringify(again.events)), again.events)
  })

  test('keys are checked: ids as retrieveByID takes them, strings, numbers or Dates', () => {
    const q = queueWith(5)
    assert.deepStrictEqual(q.getChildEventsPaginated('1').events, q.getChildEventsPaginated(1).events)
    assert.equal(q.getByCorrelationIdPaginated(12).totalCount, 0, 'a number is a correlation id, as getTransaction takes it')
    const bad = [
      () => q.getByCorrelationIdPaginated(undefined),
      () => q.getByCorrelationIdPaginated({}),
      () => q.getChildEventsPaginated('one'),
      () => q.getChildEventsPaginated(1.5),
      () => q.getEventsByUserPaginated(null),
      () => q.getEventsByCmdPaginated(1),
      () => q.getEventsInTimeRangePaginated('0', 10),
      () => q.getEventsInTimeRangePaginated(0, NaN),
      () => q.getEventsInTimeRangePaginated(new Date('nonsense'), 10),
    ]
    for (const call of bad) assert.throws(call, { name: 'TypeError', code: 'ERR_INVALID_ARG' }, String(call))
  })

  test('bad options throw before anything is read: RangeError for limit and offset, TypeError for other types', () => {
    const q = queueWith(5)
    const read = (options) => () => q.getEventsByUserPaginated('u0', options)
    // docs/api.md: limit an integer 1..10000, offset an integer >= 0, "otherwise RangeError".
    for (const options of [{ limit: 0 }, { limit: 10001 }, { limit: 1.5 }, { limit: -1 }, { offset: -1 }, { offset: 0.5 }, { limit: '10' }, { offset: null }, { limit: NaN }]) {
      assert.throws(read(options), { name: 'RangeError', code: 'ERR_INVALID_OPTION' }, JSON.stringify(options))
    }
    for (const options of [{ withCount: 'no' }, { cursor: 42 }, { colour: 'red' }, null, 'fast']) {
      assert.throws(read(options), { name: 'TypeError', code: 'ERR_INVALID_OPTION' }, JSON.stringify(options))
    }
    assert.equal(q.getEventsByUserPaginated('u0', { limit: 10000, cursor: null, offset: undefined }).totalCount, 2)
  })

  test('a malformed cursor, a cursor of another query, or a cursor with an offset is a RangeError', () => {
    const q = queueWith(30)
    const { nextCursor } = q.getEventsByUserPaginated('u1', { limit: 2 })
    assert.equal(typeof nextCursor, 'string')
    const refused = [
      () => q.getEventsByUserPaginated('u1', { cursor: 'not a cursor' }),
      () => q.getEventsByUserPaginated('u1', { cursor: '' }),
      () => q.getEventsByUserPaginated('u1', { cursor: nextCursor.slice(0, -1) + 'x' }),
      () => q.getEventsByUserPaginated('u2', { cursor: nextCursor }),
      () => q.getEventsByCmdPaginated('u1', { cursor: nextCursor }),
      () => q.getByCorrelationIdPaginated('u1', { cursor: nextCursor }),
      () => q.getEventsInTimeRangePaginated(0, 2000, { cursor: nextCursor }),
      () => q.getEventsByUserPaginated('u1', { cursor: nextCursor, offset: 2 }),
    ]
    for (const call of refused) assert.throws(call, { name: 'RangeError', code: 'ERR_INVALID_OPTION' }, String(call))
    assert.equal(q.getEventsByUserPaginated('u1', { limit: 2, cursor: nextCursor, offset: 0 }).events.length, 2)
  })

  test('a closed queue refuses pages', () => {
    const q = queueWith(3)
    q.close()
    assert.throws(() => q.getByCorrelationIdPaginated('k0'), { code: 'ERR_QUEUE_CLOSED' })
    assert.throws(() => q.getEventsInTimeRangePaginated(0, 1), { code: 'ERR_QUEUE_CLOSED' })
  })

  test('pages of an in-memory queue', () => {
    const q = initQueue({ dbName: ':memory:' })
    after(() => q.close())
    q.storeBulk(Array.from({ length: 5 }, () => ({ cmd: 'go', user: 'me' })))
    const page = q.getEventsByUserPaginated('me', { limit: 2 })
    assert.equal(page.totalCount, 5)
    assert.deepStrictEqual(ids(q.getEventsByUserPaginated('me', { limit: 2, cursor: page.nextCursor }).events), [3, 2])
  })
})
