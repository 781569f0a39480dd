'use strict'
// Pages, stream batches and replay batches hand their rows over as sets (src/rowset.rs): the
// numbers in an ArrayBuffer, the other values in one JSON array, a plain string repeated in
// the set written once. Whatever a file holds, they must read the rows exactly as the reads
// that hand over JSON text (getTransaction) do.
const assert = require('node:assert/strict')
const { describe, test, tempDb, openRaw } = require('./helpers')
const { initQueue } = require('..')

/**
 * SQL value lists for (version, datetime, user, ip, cmd, data, correlation_id, causation_id,
 * metadata), all of correlation id 'c' so that one page, one stream batch and one transaction
 * each read them all.
 */
const ODD_ROWS = [
  "'text in a number column', 'x', 'u', NULL, 'c', '{}', 'c', 'also text', '{}'",
  "1.5, 9e999, 'é 😀', 'tab\tand \"quotes\"', 'c', '{\"a\":[1,{\"b\":null}]}', 'c', -9223372036854775808, NULL",
  "NULL, 3, NULL, NULL, 'c', NULL, 'c', NULL, ''",
  "9007199254740993, 0, CAST(x'61ff62' AS TEXT), x'616263', 'c', 42, 'c', 1, '1.5'",
  "1, 2.5, '', 'u', 'c', '\"text\"', 'c', NULL, ' {\"m\":1} '",
]

function fileWith(rows) {
  const file = tempDb()
  initQueue({ dbName: file }).close()
  const raw = openRaw(file)
  for (const values of rows) {
    raw.exec(`INSERT INTO queue (version, datetime, user, ip, cmd, data, correlation_id, causation_id, metadata) VALUES (${values})`)
  }
  raw.close()
  return file
}

async function streamed(q) {
  const rows = []
  for await (const batch of q.streamEvents({ batchSize: 2 })) rows.push(...batch)
  return rows
}

function replayed(q) {
  const rows = []
  q.cycleThrough({ _queries: {}, _default(data, meta) { rows.push({ ...meta, data }) } }, () => {})
  return rows
}

describe('rows handed over as sets', () => {
  test('values of every type, in any column, read as through JSON text', async () => {
    const q = initQueue({ dbName: fileWith(ODD_ROWS) })
    const viaText = q.getTransaction('c')
    assert.equal(viaText.length, ODD_ROWS.length)
    assert.deepEqual(q.getByCorrelationIdPaginated('c', { limit: 3 }).events, viaText.slice(0, 3))
    assert.deepEqual(q.getByCorrelationIdPaginated('c', { limit: 3, offset: 3 }).events, viaText.slice(3))
    assert.deepEqual(await streamed(q), viaText)
    const first = viaText[0]
    assert.deepEqual([first.version, first.datetime, first.causation_id], ['text in a number column', 'x', 'also text'])
    q.close()
  })

  test('many distinct and repeated strings each read as their own value, and every row gets its own objects', async () => {
    const rows = []
    for (let i = 0; i < 300; i++) {
      // 150 users, each twice, far apart; commands that share their first and last bytes.
      rows.push(`1, ${i}, 'user-${i % 150}', NULL, 'cmd-${'x'.repeat(i % 20)}-end', '{"i":${i}}', 'c', NULL, '{}'`)
    }
    const q = initQueue({ dbName: fileWith(rows) })
    const expected = rows.map((_, i) => ({ user: `user-${i % 150}`, cmd: `cmd-${'x'.repeat(i % 20)}-end`, data: { i } }))
    const pick = (events) => events.map(({ user, cmd, data }) => ({ user, cmd, data }))
    const page = q.getByCorrelationIdPaginated('c', { limit: 300 }).events
    assert.deepEqual(pick(page), expected)
    assert.deepEqual(pick(await streamed(q)), expected)
    assert.deepEqual(pick(replayed(q)), expected)
    page[0].metadata.touched = true
    assert.deepEqual(page[1].metadata, {}, 'metadata objects are not shared')
    q.close()
  })
})
