'use strict'
// Rows as every read returns them, whatever the file holds: a NULL metadata reads as {}, a
// stored value that is not JSON is a coded error naming its row and never becomes other rows,
// data nested any depth JSON.stringify reaches reads back, and rows of any size read back
// through batches and pieces bounded by bytes, or are a coded error when one row alone is
// longer than the runtime can hold as a string.
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const path = require('node:path')
const { MAX_STRING_LENGTH } = require('node:buffer').constants
const { describe, test, after, tempDb, openRaw, throwsCode } = require('./helpers')
const { initQueue } = require('..')

const COLUMNS = '(datetime, user, cmd, data, correlation_id, causation_id, metadata)'

/**
 * A file as another program writes it: the queue's table, then `rows` (`{ data, metadata,
 * causation }`, the stored texts as given) inserted by raw SQL, all with correlation id `c`,
 * user `u`, cmd `go` and datetime 1; or a row's own `values: { sql, params }` after the column list.
 */
function fileWith(rows) {
  const dbName = tempDb()
  initQueue({ dbName }).close()
  const raw = openRaw(dbName)
  // Big rows are written once, to the file itself, without waiting for the disk.
  raw.exec('PRAGMA journal_mode = DELETE; PRAGMA synchronous = OFF')
  for (const { data = '{}', metadata = '{}', causation = null, values } of rows) {
    if (values) raw.run(`INSERT INTO queue ${COLUMNS} ${values.sql}`, ...values.params)
    else raw.run(`INSERT INTO queue ${COLUMNS} VALUES (1, 'u', 'go', ?, 'c', ?, ?)`, data, causation, metadata)
  }
  raw.close()
  return dbName
}

function open(dbName, options) {
  const q = initQueue({ dbName, ...options })
  after(() => q.close())
  return q
}

/** Every row of a stream, and the error that ended it (or null), with the batches' sizes. */
async function drain(stream) {
  const rows = []
  const sizes = []
  try {
    for await (const batch of stream) {
      sizes.push(batch.length)
      rows.push(...batch)
    }
    return { rows, sizes, error: null }
  } catch (error) {
    return { rows, sizes, error }
  }
}

/** The rows `cycleThrough` executes, as meta objects with `data` added, and the error it threw (or null). */
function replay(q) {
  const rows = []
  const model = { _queries: {}, _default(data, meta) { rows.push({ ...meta, data }) } }
  try {
    q.cycleThrough(model, () => {})
    return { rows, error: null }
  } catch (error) {
    return { rows, error }
  }
}

/**
 * Every read of event `id` in a queue holding event 1 (the root) and its children, all of
 * correlation `c`, user `u`, cmd `go`: each read's name and a function returning the rows it
 * returns. `getLastRow` is among them when `id` is the last event.
 */
function everyRead(q, id, last = id) {
  const page = (read) => () => read().events
  const ofChildren = [
    ['getChildEvents', () => q.getChildEvents(1)],
    ['getChildEventsPaginated', page(() => q.getChildEventsPaginated(1))],
  ]
  return [
    ['retrieveByID', () => [q.retrieveByID(id)]],
    ...(id === last ? [['getLastRow', () => [q.getLastRow()]]] : []),
    ['getTransaction', () => q.getTransaction('c')],
    ...(id === 1 ? [] : ofChildren),
    ['getEventLineage', () => { const l = q.getEventLineage(id); return [l.event, l.parent, ...l.children].filter(Boolean) }],
    ['getByCorrelationIdPaginated', page(() => q.getByCorrelationIdPaginated('c'))],
    ['getEventsByUserPaginated', page(() => q.getEventsByUserPaginated('u'))],
    ['getEventsByCmdPaginated', page(() => q.getEventsByCmdPaginated('go'))],
    ['getEventsInTimeRangePaginated', page(() => q.getEventsInTimeRangePaginated(0, 10))],
    ['retrieveByIDCached', () => [q.retrieveByIDCached(id)]],
    ['retrieveByIDCached (hit)', () => [q.retrieveByIDCached(id)]],
    ['getTransactionCached', () => q.getTransactionCached('c')],
    ['getTransactionCached (hit)', () => q.getTransactionCached('c')],
  ]
}

describe('NULL metadata', () => {
  test('reads as {} in every read, cached, paged, streamed and replayed ones included; NULL data stays null', async () => {
    const q = open(fileWith([{ data: '{"a":1}', metadata: null }, { data: null, metadata: null, causation: 1 }]))
    for (const id of [1, 2]) {
      for (const [name, read] of everyRead(q, id, 2)) {
        const row = read().find((r) => r.id === id)
        assert.ok(row, `${name} returns event ${id}`)
        assert.deepEqual(row.metadata, {}, `${name}: metadata of event ${id}`)
        assert.deepEqual(row.data, id === 1 ? { a: 1 } : null, `${name}: data of event ${id}`)
      }
    }
    const streamed = await drain(q.streamEvents())
    assert.deepEqual(streamed.rows.map((r) => [r.metadata, r.data]), [[{}, { a: 1 }], [{}, null]])
    assert.deepEqual(replay(q).rows.map((r) => [r.metadata, r.data]), [[{}, { a: 1 }], [{}, null]])
    // Each read gets its own object: filling one row's {} changes no other read.
    q.retrieveByIDCached(1).metadata.x = 1
    assert.deepEqual(q.retrieveByIDCached(1).metadata, {})
  })
})

describe('a stored row can never forge another', () => {
  const FORGED = '{"amount":2},"acct",null,{}, 999,1,1,"u","","go",{},"c",null,{}'
  for (const [what, stored] of [
    ['data that is JSON followed by more values', { data: FORGED }],
    ['data that is not JSON', { data: 'hello world' }],
    ['metadata that is not JSON', { metadata: '{"a":' }],
    ['metadata followed by more text', { metadata: '{} {}' }],
  ]) {
    test(`${what}: every read that touches the row throws ERR_CORRUPT_ROW with its id, and no read returns more rows`, async () => {
      const q = open(fileWith([{}, { ...stored, causation: 1 }, { causation: 1 }]))
      for (const [name, read] of everyRead(q, 2, 3)) {
        const err = throwsCode(read, Error, 'ERR_CORRUPT_ROW')
        assert.equal(err.id, 2, name)
        assert.match(err.message, /^event 2 cannot be read: its stored (data|metadata) is not JSON/, name)
      }
      // Reads that do not touch it are untouched by it.
      assert.deepEqual(q.retrieveByID(3).data, {})
      assert.deepEqual(q.getEventLineage(3).parent.id, 1)
      // A stream and a replay deliver the rows before it, then throw the same error.
      const streamed = await drain(q.streamEvents())
      assert.deepEqual(streamed.rows.map((r) => r.id), [1])
      assert.equal(streamed.error.code, 'ERR_CORRUPT_ROW')
      assert.equal(streamed.error.id, 2)
      const replayed = replay(q)
      assert.deepEqual(replayed.rows.map((r) => r.id), [1])
      assert.equal(replayed.error.code, 'ERR_CORRUPT_ROW')
      assert.equal(replayed.error.id, 2)
      // Replaying and streaming after the row goes on past it.
      assert.deepEqual(replay(q).rows.length, 1)
      q.cycleThrough({ _queries: {}, _default() {} }, () => {}, undefined, { start: 3 })
      assert.deepEqual((await drain(q.streamEvents({ startId: 3 }))).rows.map((r) => r.id), [3])
    })
  }

  test('JSON text around the values, white space included, reads as the value it holds', () => {
    const q = open(fileWith([{ data: ' {\n  "a" : [1, "é"]\n} ', metadata: '\t{"m":true}\r\n' }, { data: '  ', metadata: '' }]))
    assert.deepEqual([q.retrieveByID(1).data, q.retrieveByID(1).metadata], [{ a: [1, 'é'] }, { m: true }])
    assert.deepEqual([q.retrieveByID(2).data, q.retrieveByID(2).metadata], [null, {}], 'blank reads as NULL does')
  })
})

/** JSON text of `depth` nested arrays and objects around 1, built without JSON.stringify. */
function nestedText(depth) {
  let open = ''
  let close = ''
  for (let i = 0; i < depth; i++) {
    open += i % 2 ? '[' : '{"k":'
    close = (i % 2 ? ']' : '}') + close
  }
  return open + '1' + close
}

/** How deep a value nests, walked without recursion. */
function depthOf(value) {
  let depth = 0
  while (value !== null && typeof value === 'object') {
    value = Array.isArray(value) ? value[0] : value.k
    depth++
  }
  return depth
}

/** Whether this runtime's JSON.stringify can write `value` (Node's stops near 4,000 levels). */
function stringifies(value) {
  try {
    JSON.stringify(value)
    return true
  } catch {
    return false
  }
}

describe('deeply nested data', () => {
  test('10,000 levels written by another program read back in every read', async () => {
    const text = nestedText(10000)
    const q = open(fileWith([{ data: text, metadata: text }]))
    for (const [name, read] of everyRead(q, 1)) {
      const row = read().find((r) => r.id === 1)
      assert.deepEqual([depthOf(row.data), depthOf(row.metadata)], [10000, 10000], name)
    }
    assert.equal(depthOf((await drain(q.streamEvents())).rows[0].data), 10000)
    assert.equal(depthOf(replay(q).rows[0].data), 10000)
  })

  test('store takes anything JSON.stringify writes, to 10,000 levels where it reaches them, and reads it back', () => {
    // Node's JSON.stringify overflows its stack near 4,000 levels; Bun's reaches 40,000.
    const deep = JSON.parse(nestedText(10000))
    const depth = stringifies(deep) ? 10000 : 2000
    const data = JSON.parse(nestedText(depth))
    const q = open(tempDb(), { datetime: () => 1 })
    const row = q.store({ cmd: 'go', user: 'u', data, metadata: data, correlationId: 'c' })
    for (const [name, read] of everyRead(q, row.id)) {
      const back = read().find((r) => r.id === row.id)
      assert.deepEqual([depthOf(back.data), depthOf(back.metadata)], [depth, depth], name)
    }
    assert.equal(q.storeBulk([{ cmd: 'deep', data }]).length, 1)
  })
})

const MB = 1 << 20
/** What one piece or batch holds before the next starts (src/pieces.rs, BATCH_BYTES). */
const BATCH_BYTES = 16 * MB

/** The bytes of a JSON string `bytes` long, "aaa…a", made without a JavaScript string that long. */
function jsonString(bytes) {
  const text = Buffer.alloc(bytes, 'a')
  text[0] = text[bytes - 1] = 0x22
  return text
}

/** A row's VALUES whose data is a JSON string `bytes` long. */
function bigRow(bytes, causation) {
  const sql = "VALUES (1, 'u', 'go', CAST(? AS TEXT), 'c', ?, '{}')"
  return { values: { sql, params: [jsonString(bytes), causation] } }
}

/** A file of `count` events whose data is a JSON string `bytes` long; all but the first children of the first. */
function fileOfBigRows(count, bytes) {
  const copy = `SELECT datetime, user, cmd, data, correlation_id, 1, metadata FROM queue WHERE id = 1`
  return fileWith([
    bigRow(bytes, null),
    ...Array.from({ length: count - 1 }, () => ({ values: { sql: copy, params: [] } })),
  ])
}

/** Writes events 1 to 3, event 2 with data a JSON string BYTES long. */
const HUGE_ROW_WRITER = `
const db = new (require('bun:sqlite').Database)(process.env.FILE)
// Written once, to the file itself: no WAL to copy it through, no waiting for the disk.
db.exec('PRAGMA journal_mode = DELETE; PRAGMA synchronous = OFF')
const huge = Buffer.alloc(Number(process.env.BYTES), 'a')
huge[0] = huge[huge.length - 1] = 0x22
const insert = "INSERT INTO queue ${COLUMNS} VALUES (1, 'u', 'go', CAST(?1 AS TEXT), 'c', ?2, '{}')"
db.query(insert).run('{}', null)
db.query(insert).run(huge, 1)
db.query(insert).run('{}', 1)
db.close()
`

describe('rows of any size', () => {
  test('a stream and a replay read batches bounded by bytes, continuing after each', async () => {
    const q = open(fileOfBigRows(4, BATCH_BYTES + MB))
    const streamed = await drain(q.streamEvents({ batchSize: 1000 }))
    assert.equal(streamed.error, null)
    assert.deepEqual(streamed.sizes, [1, 1, 1, 1], 'each batch ends once it holds more than its byte budget')
    assert.deepEqual(streamed.rows.map((r) => [r.id, r.data.length]), [1, 2, 3, 4].map((id) => [id, BATCH_BYTES + MB - 2]))
    assert.deepEqual(replay(q).rows.map((r) => r.id), [1, 2, 3, 4])
  })

  // Rows that together are longer than a string may be, each well under it. Bun's strings hold
  // 2 GiB, more than a test can reasonably fill; the code path is the same on both runtimes.
  const fitsATest = MAX_STRING_LENGTH < 1024 * MB
  ;(fitsATest ? test : test.skip)('reads of many rows longer together than a string may be return them all', () => {
    const size = Math.ceil(MAX_STRING_LENGTH / 5) + 1
    const q = open(fileOfBigRows(5, size))
    const lengths = (rows) => rows.map((r) => r.data.length)
    const all = Array(5).fill(size - 2)
    // One call that returns every row (in pieces), one paged, one replayed in batches.
    assert.deepEqual(lengths(q.getTransaction('c')), all)
    assert.deepEqual(lengths(q.getByCorrelationIdPaginated('c').events), all)
    assert.deepEqual(lengths(replay(q).rows), all)
  })

  // Under Node: a row whose data is longer than a V8 string. better-sqlite3 writes no value
  // that long, so Bun's SQLite writes it, in a process of its own. Under Bun, whose strings
  // hold 2 GiB, no row can be too long: SQLite holds at most 1e9 bytes in one.
  ;(fitsATest ? test : test.skip)('a row longer than a string may be is ERR_ROW_TOO_LARGE naming it, after the rows before it', async () => {
    const dbName = fileWith([])
    const write = spawnSync(path.join(__dirname, '..', 'node_modules', '.bin', 'bun'), ['-e', HUGE_ROW_WRITER], {
      env: { ...process.env, FILE: dbName, BYTES: String(MAX_STRING_LENGTH + 1) },
      encoding: 'utf8',
    })
    assert.equal(write.status, 0, write.stderr)
    const q = open(dbName)
    // One read of one row, one of many (in pieces), one cached; then a stream and a replay.
    const reads = [() => q.retrieveByID(2), () => q.getTransaction('c'), () => q.getTransactionCached('c')]
    for (const read of reads) {
      const err = throwsCode(read, Error, 'ERR_ROW_TOO_LARGE')
      assert.equal(err.id, 2)
      assert.match(err.message, /^event 2 cannot be read: its JSON text is longer than \d+ bytes/)
    }
    const streamed = await drain(q.streamEvents())
    assert.deepEqual([streamed.rows.map((r) => r.id), streamed.error.code, streamed.error.id], [[1], 'ERR_ROW_TOO_LARGE', 2])
    const replayed = replay(q)
    assert.deepEqual([replayed.rows.map((r) => r.id), replayed.error.code, replayed.error.id], [[1], 'ERR_ROW_TOO_LARGE', 2])
    assert.deepEqual(q.retrieveByID(3).data, {}, 'the rows around it read as ever')
  })
})
