'use strict'
// Files are shared with EventLite Sourcing: a file it wrote opens here unchanged, and a file
// written here has exactly its layout.
const assert = require('node:assert/strict')
const { describe, test, tempDb, openRaw } = require('./helpers')
const { initQueue } = require('..')

/** Writes a database the way EventLite Sourcing does: its schema, its indexes, JSON text. */
function writeEventLiteFile(file) {
  const raw = openRaw(file)
  raw.exec(`CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT, version INTEGER DEFAULT 1, datetime INTEGER NOT NULL,
    user TEXT, ip TEXT, cmd TEXT NOT NULL, data TEXT, correlation_id TEXT, causation_id INTEGER,
    metadata TEXT)`)
  raw.exec('CREATE INDEX IF NOT EXISTS idx_correlation_id ON queue(correlation_id)')
  raw.exec('CREATE INDEX IF NOT EXISTS idx_causation_id ON queue(causation_id)')
  raw.exec('CREATE TABLE snapshots (id INTEGER PRIMARY KEY, state TEXT)')
  raw.run('INSERT INTO snapshots (state) VALUES (?)', '{"kept":true}')
  const insert = 'INSERT INTO queue (version, datetime, user, ip, cmd, data, correlation_id, causation_id, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)'
  raw.run(insert, 1, 1600000000000, 'ann', '127.0.0.1', 'createUser', JSON.stringify({ name: 'Ann', tags: ['x'] }), 'corr-a', null, JSON.stringify({ source: 'old' }))
  raw.run(insert, 2, 1600000000001, 'ann', '127.0.0.1', 'renameUser', JSON.stringify({ name: 'Anne' }), 'corr-a', 1, null)
  raw.run(insert, 1, 1600000000002, null, null, 'legacy', null, null, null, null)
  raw.close()
}

describe('EventLite file compatibility', () => {
  test('a file written by EventLite reads back unchanged, NULL metadata included', () => {
    const file = tempDb()
    writeEventLiteFile(file)
    const q = initQueue({ dbName: file })
    assert.deepEqual(q.retrieveByID(1), {
      id: 1, version: 1, datetime: 1600000000000, user: 'ann', ip: '127.0.0.1', cmd: 'createUser',
      data: { name: 'Ann', tags: ['x'] }, correlation_id: 'corr-a', causation_id: null, metadata: { source: 'old' },
    })
    assert.deepEqual(q.retrieveByID(2).metadata, {}, 'a NULL metadata reads as {}, as EventLite reads it')
    assert.deepEqual(q.retrieveByID(3), {
      id: 3, version: 1, datetime: 1600000000002, user: null, ip: null, cmd: 'legacy',
      data: null, correlation_id: null, causation_id: null, metadata: {},
    })
    assert.deepEqual(q.getTransaction('corr-a').map((r) => r.id), [1, 2])
    assert.deepEqual(q.getChildEvents(1).map((r) => r.cmd), ['renameUser'])
    q.close()
  })

  test('new events continue its ids and inherit its correlation ids; other tables are left alone', () => {
    const file = tempDb()
    writeEventLiteFile(file)
    const q = initQueue({ dbName: file })
    const row = q.store({ cmd: 'deleteUser', causationId: 2 })
    assert.equal(row.id, 4)
    assert.equal(row.correlation_id, 'corr-a')
    const replayed = []
    q.cycleThrough({ _default(_d, meta) { replayed.push(meta.id) } }, () => {})
    assert.deepEqual(replayed, [1, 2, 3, 4])
    q.close()
    const raw = openRaw(file)
    assert.deepEqual(raw.all('SELECT state FROM snapshots'), [{ state: '{"kept":true}' }])
    raw.close()
  })

  test('a file written here has the EventLite layout, readable with plain SQL', () => {
    const file = tempDb()
    const q = initQueue({ dbName: file, datetime: () => 5 })
    q.store({ cmd: 'x', data: { a: 1 }, user: 'u', ip: 'i', correlationId: 'c', causationId: 3, metadata: { m: 2 }, version: 4 })
    q.close()
    const raw = openRaw(file)
    const columns = raw.all("SELECT name, type, \"notnull\" AS nn, dflt_value AS dflt, pk FROM pragma_table_info('queue')")
    assert.deepEqual(columns.map((c) => [c.name, c.type]), [
      ['id', 'INTEGER'], ['version', 'INTEGER'], ['datetime', 'INTEGER'], ['user', 'TEXT'], ['ip', 'TEXT'],
      ['cmd', 'TEXT'], ['data', 'TEXT'], ['correlation_id', 'TEXT'], ['causation_id', 'INTEGER'], ['metadata', 'TEXT'],
    ])
    assert.equal(columns.find((c) => c.name === 'version').dflt, '1')
    assert.deepEqual(columns.filter((c) => c.nn).map((c) => c.name), ['datetime', 'cmd'])
    assert.match(raw.get("SELECT sql FROM sqlite_master WHERE name = 'queue'").sql, /AUTOINCREMENT/)
    assert.deepEqual(raw.get('SELECT * FROM queue'), {
      id: 1, version: 4, datetime: 5, user: 'u', ip: 'i', cmd: 'x', data: '{"a":1}',
      correlation_id: 'c', causation_id: 3, metadata: '{"m":2}',
    })
    raw.close()
  })
})
