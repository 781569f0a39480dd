'use strict'
// Error messages from the core say what they are about, with no blank where a value was empty.
const assert = require('node:assert/strict')
const fs = require('node:fs')
const { describe, test, tempDb, throwsCode } = require('./helpers')
const { initQueue } = require('..')

describe('error messages', () => {
  test('a file that is not SQLite is named in the SQLITE_NOTADB message', () => {
    const file = tempDb('notes.txt')
    fs.writeFileSync(file, 'just some text, not a database\n'.repeat(200))
    const err = throwsCode(() => initQueue({ dbName: file }), Error, 'SQLITE_NOTADB')
    assert.ok(err.message.includes(file), err.message)
  })

  test('an empty index key passed to the core shows as an empty key', () => {
    const { NativeQueue } = require('../lib/native')
    const cache = { enabled: true, maxSize: 1, ttl: 1 }
    const options = { dbName: ':memory:', wal: false, busyTimeout: 0, indexes: { '': true }, reset: false, cache }
    assert.throws(() => new NativeQueue(options), (err) => err.code === 'ERR_INVALID_OPTION' && err.message.includes('""'))
  })
})
