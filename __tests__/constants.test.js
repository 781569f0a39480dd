'use strict'
// The constants JavaScript shares with the core (columns, limits, defaults) come from the core:
// rows, option checks and defaults all follow what it exports.
const assert = require('node:assert/strict')
const { describe, test, tempDb, throwsCode } = require('./helpers')
const { initQueue } = require('..')
const constants = require('../lib/constants')

describe('constants shared with the core', () => {
  test('the core exports them once, frozen', () => {
    assert.equal(require('../lib/native').constants().maxPageLimit, constants.maxPageLimit)
    assert.ok(Object.isFrozen(constants) && Object.isFrozen(constants.defaults.cache) && Object.isFrozen(constants.columns))
  })

  test('every kind of row has exactly the columns the core exports, in its order', () => {
    const q = initQueue({ dbName: tempDb() })
    const stored = q.store({ cmd: 'go', data: { n: 1 } })
    const [bulk] = q.storeBulk([{ cmd: 'go', causationId: stored.id }])
    const rows = [
      stored,
      bulk.row,
      q.retrieveByID(stored.id),
      q.retrieveByIDCached(stored.id),
      q.retrieveByIDCached(stored.id),
      q.getTransactionCached(stored.correlation_id)[0],
      q.getChildEvents(stored.id)[0],
      q.getEventsByCmdPaginated('go').events[0],
    ]
    for (const row of rows) assert.deepEqual(Object.keys(row), constants.columns)
    q.close()
  })

  test('an option left out takes the core\'s default', async () => {
    const q = initQueue({ dbName: tempDb() })
    const { maxSize, ttl } = q.getCacheStats()
    assert.deepEqual({ maxSize, ttl }, { maxSize: constants.defaults.cache.maxSize, ttl: constants.defaults.cache.ttl })
    assert.equal(q.getMetrics().journalMode, constants.defaults.wal ? 'WAL' : 'DELETE')
    const events = Array.from({ length: constants.defaults.pageLimit + constants.defaults.batchSize }, () => ({ cmd: 'go' }))
    q.storeBulk(events)
    assert.equal(q.getEventsByCmdPaginated('go').events.length, constants.defaults.pageLimit)
    for await (const batch of q.streamEvents()) {
      assert.equal(batch.length, constants.defaults.batchSize)
      break
    }
    q.close()
  })

  test('the limits of the options are the core\'s', () => {
    const q = initQueue({ dbName: tempDb() })
    q.store({ cmd: 'go' })
    assert.equal(q.getEventsByCmdPaginated('go', { limit: constants.maxPageLimit }).events.length, 1)
    throwsCode(() => q.getEventsByCmdPaginated('go', { limit: constants.maxPageLimit + 1 }), RangeError, 'ERR_INVALID_OPTION')
    q.close()
    for (const options of [{ cache: { maxSize: constants.maxCacheSize + 1 } }, { busyTimeout: constants.maxBusyTimeout + 1 }]) {
      throwsCode(() => initQueue({ dbName: tempDb(), ...options }), RangeError, 'ERR_INVALID_OPTION')
    }
    throwsCode(() => initQueue({ dbName: tempDb(), synchronous: 'sometimes' }), RangeError, 'ERR_INVALID_OPTION')
    for (const synchronous of constants.synchronous) initQueue({ dbName: tempDb(), synchronous }).close()
  })

  test('the core refuses a busyTimeout SQLite cannot take, whoever calls it', () => {
    const { NativeQueue } = require('../lib/native')
    const cache = { enabled: true, maxSize: 1, ttl: 1 }
    const options = { dbName: ':memory:', wal: false, busyTimeout: constants.maxBusyTimeout + 1, indexes: {}, reset: false, cache }
    assert.throws(() => new NativeQueue(options), { code: 'ERR_INVALID_OPTION', message: /busyTimeout/ })
  })
})
