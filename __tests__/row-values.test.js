'use strict'
// retrieveByID hands a row over as its values (rowById, src/lib.rs), every other read as JSON
// text (src/row.rs): both must read every kind of value a file can hold, including values
// written by hand or by another program, the same way.
const assert = require('node:assert/strict')
const { describe, test, tempDb, openRaw } = require('./helpers')
const { initQueue } = require('..')

/**
 * Rows of every kind of stored value, one correlation id each (so that getTransaction, which
 * reads through the JSON text, returns that row alone), as SQL value lists for
 * (version, datetime, user, ip, cmd, data, correlation_id, causation_id, metadata).
 */
const ROWS = {
  'integers at and beyond 2^53': "9007199254740993, 9223372036854775807, '', '', 'c', '{}', 'big', -9223372036854775808, '{}'",
  'reals and an infinity': "1.5, 2.5e-300, '', '', 'c', '{}', 'real', 9e999, '{}'",
  'text that needs escaping': "1, 1, 'quote \" back \\ slash', 'tab\tand\nnewline', 'c', '{}', 'escaped', NULL, '{}'",
  'text beyond ASCII': "1, 1, 'é 😀 \u2028', 'Ω', 'c', '{}', 'unicode', NULL, '{}'",
  'text that is not UTF-8, and blobs': "1, 1, CAST(x'61ff62' AS TEXT), x'616263', 'c', '{}', 'bytes', NULL, '{}'",
  'empty text and NULLs': "NULL, 1, '', NULL, 'c', NULL, 'nulls', NULL, NULL",
  'JSON columns of only white space': "1, 1, '', '', 'c', '  \n', 'blank', NULL, ''",
  'JSON columns holding numbers, stored or as text': "1, 1, '', '', 'c', 42, 'numbers', NULL, '1.5'",
  'JSON columns holding a JSON string and nested values': "1, 1, '', '', 'c', '\"text\"', 'nested', NULL, ' {\"a\":[1,{\"b\":null}],\"c\":\"é\"} '",
  'a JSON string that is not UTF-8': "1, 1, '', '', 'c', CAST(x'7b2261223a22ff227d' AS TEXT), 'json-bytes', NULL, '{}'",
}

function fileWith(rows) {
  const file = tempDb()
  initQueue({ dbName: file }).close()
  const raw = openRaw(file)
  for (const values of Object.values(rows)) {
    raw.exec(`INSERT INTO queue (version, datetime, user, ip, cmd, data, correlation_id, causation_id, metadata) VALUES (${values})`)
  }
  const ids = raw.all('SELECT id, correlation_id FROM queue ORDER BY id')
  raw.close()
  return { file, ids }
}

describe('retrieveByID and the other reads agree on every stored value', () => {
  test('every kind of value reads the same by id as through a transaction', () => {
    const { file, ids } = fileWith(ROWS)
    const q = initQueue({ dbName: file })
    const names = Object.keys(ROWS)
    ids.forEach(({ id, correlation_id: correlationId }, i) => {
      const [viaText] = q.getTransaction(correlationId)
      assert.deepEqual(q.retrieveByID(id), viaText, names[i])
    })
    q.close()
  })

  test('the values are the JavaScript values they stand for', () => {
    const { file, ids } = fileWith(ROWS)
    const q = initQueue({ dbName: file })
    const row = (name) => q.retrieveByID(ids[Object.keys(ROWS).indexOf(name)].id)
    const big = row('integers at and beyond 2^53')
    assert.deepEqual([big.version, big.datetime, big.causation_id], [2 ** 53, 2 ** 63, -(2 ** 63)])
    const real = row('reals and an infinity')
    assert.deepEqual([real.version, real.datetime, real.causation_id], [1.5, 2.5e-300, null], 'JSON has no infinity')
    assert.deepEqual([row('text that needs escaping').user, row('text that needs escaping').ip], ['quote " back \\ slash', 'tab\tand\nnewline'])
    assert.deepEqual([row('text beyond ASCII').user, row('text beyond ASCII').ip], ['é 😀 \u2028', 'Ω'])
    assert.deepEqual([row('text that is not UTF-8, and blobs').user, row('text that is not UTF-8, and blobs').ip], ['a\ufffdb', 'abc'])
    const nulls = row('empty text and NULLs')
    assert.deepEqual([nulls.version, nulls.ip, nulls.data, nulls.metadata], [null, null, null, {}], 'a NULL metadata is {}')
    assert.deepEqual([row('JSON columns of only white space').data, row('JSON columns of only white space').metadata], [null, {}])
    assert.deepEqual([row('JSON columns holding numbers, stored or as text').data, row('JSON columns holding numbers, stored or as text').metadata], [42, 1.5])
    const nested = row('JSON columns holding a JSON string and nested values')
    assert.deepEqual([nested.data, nested.metadata], ['text', { a: [1, { b: null }], c: 'é' }])
    assert.deepEqual(row('a JSON string that is not UTF-8').data, { a: '\ufffd' })
    q.close()
  })

  test('an empty metadata object reads as a new object every time', () => {
    const q = initQueue({ dbName: tempDb() })
    const { id } = q.store({ cmd: 'c' })
    const first = q.retrieveByID(id)
    first.metadata.touched = true
    assert.deepEqual(q.retrieveByID(id).metadata, {})
    assert.deepEqual(q.getTransaction(first.correlation_id)[0].metadata, {})
    q.close()
  })

  test('a JSON column that is not one JSON value fails the read as it fails the other reads', () => {
    const { file, ids } = fileWith({
      cut: "1, 1, '', '', 'c', '{\"a\":', 'corrupt', NULL, '{}'",
      more: "1, 1, '', '', 'c', '{}', 'corrupt', NULL, '{} {}'",
      bytes: "1, 1, '', '', 'c', CAST(x'7bff7d' AS TEXT), 'corrupt', NULL, '{}'",
    })
    const q = initQueue({ dbName: file })
    assert.throws(() => q.getTransaction('corrupt'), { code: 'ERR_CORRUPT_ROW', id: ids[0].id })
    for (const { id } of ids) assert.throws(() => q.retrieveByID(id), { code: 'ERR_CORRUPT_ROW', id })
    q.close()
  })
})
