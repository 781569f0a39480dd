'use strict'
// Resources: queues dropped without close() are released as the program runs on, and a long
// mixed run of every kind of call keeps memory flat.
const assert = require('node:assert/strict')
const fs = require('node:fs')
const { describe, test, tempDb } = require('./helpers')
const { initQueue } = require('..')

const openFiles = () => fs.readdirSync('/proc/self/fd').length
const rssMb = () => process.memoryUsage().rss / 1e6

/**
 * A full garbage collection, so that RSS counts what is still held rather than garbage the
 * collector has not reached yet (on Bun that alone moved a run's growth by over 10 MB).
 */
const collectGarbage = typeof Bun !== 'undefined'
  ? () => Bun.gc(true)
  : (require('node:v8').setFlagsFromString('--expose-gc'), require('node:vm').runInNewContext('gc'))
const turn = () => new Promise((resolve) => setImmediate(resolve))

describe('resources', () => {
  test('opening and dropping 12,000 queues without close() exhausts neither descriptors nor memory', async () => {
    const file = tempDb()
    const first = initQueue({ dbName: file })
    first.store({ cmd: 'x' })
    first.close()
    const filesBefore = openFiles()
    const rssBefore = rssMb()
    let mostFiles = 0
    let mostRss = 0
    for (let i = 0; i < 12000; i++) {
      const q = initQueue({ dbName: file })
      assert.equal(q.retrieveByID(1).cmd, 'x')
      // A program returns to the event loop now and then; that is when dropped queues'
      // finalizers run. Without them each would keep its descriptors.
      if (i % 100 === 99) {
        await turn()
        mostFiles = Math.max(mostFiles, openFiles() - filesBefore)
        mostRss = Math.max(mostRss, rssMb() - rssBefore)
      }
    }
    // Each queue holds two or three descriptors and a connection's memory while open. Without
    // the native footprint reported to the engine it collects too seldom: thousands of
    // descriptors and hundreds of MB pile up (measured: 1,900 and 400 MB on Node, 5,000 and
    // 850 MB on Bun); with it, about 150 and under 100 MB.
    assert.ok(mostFiles < 1000, `descriptors held at most ${mostFiles} above the start`)
    assert.ok(mostRss < 200, `RSS rose at most ${mostRss.toFixed(0)} MB`)
  })

  test('a long mixed run of writes, cached reads, pages and streams keeps RSS flat', async () => {
    const q = initQueue({ dbName: tempDb(), cache: { maxSize: 200 } })
    const round = async (r) => {
      const base = r * 500
      q.storeBulk(Array.from({ length: 400 }, (_, i) => ({ cmd: 'bulk', data: { n: base + i, pad: 'x'.repeat(200) }, correlationId: `c${(base + i) % 50}`, user: `u${i % 7}` })))
      for (let i = 0; i < 100; i++) q.store({ cmd: 'one', data: { i }, correlationId: `c${i % 50}` })
      const last = q.getLastRow().id
      for (let i = 0; i < 300; i++) q.retrieveByIDCached(1 + ((i * 7919) % last))
      for (let i = 0; i < 20; i++) q.getTransactionCached(`c${i}`)
      let page = q.getByCorrelationIdPaginated(`c${r % 50}`, { limit: 50 })
      while (page.nextCursor) page = q.getByCorrelationIdPaginated(`c${r % 50}`, { limit: 50, cursor: page.nextCursor, withCount: false })
      q.getEventsByUserPaginated('u3', { limit: 100, offset: 100 })
      let streamed = 0
      for await (const batch of q.streamEvents({ batchSize: 500, startId: Math.max(1, last - 2000) })) streamed += batch.length
      assert.ok(streamed > 0)
      q.getMetrics()
      q.getCacheStats()
    }
    for (let r = 0; r < 10; r++) await round(r) // warm up: caches, statements, allocator
    collectGarbage()
    const settled = rssMb()
    for (let r = 10; r < 60; r++) await round(r)
    collectGarbage()
    const grown = rssMb() - settled
    // 50 rounds write 25,000 events (about 7 MB of data in the file, not in memory): a leak of
    // even a few hundred bytes per call would show here.
    assert.ok(grown < 40, `RSS grew ${grown.toFixed(1)} MB over 50 rounds`)
    q.close()
  })
})
