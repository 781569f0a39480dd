'use strict'
// Operating a store from code: backup, exportEvents / importEvents, the maintenance methods,
// and metricsText checked by a real Prometheus parser.
const assert = require('node:assert/strict')
const { spawn, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const { describe, test, tempDb, openRaw, throwsCode } = require('./helpers')
const { initQueue, openQueue } = require('..')

const WRITER = path.join(__dirname, 'fixtures', 'append-loop.js')

/** Every row of a queue, read through the queue. */
async function allRows(queue) {
  const rows = []
  for await (const batch of queue.streamEvents()) rows.push(...batch)
  return rows
}

async function collect(iterable) {
  const items = []
  for await (const item of iterable) items.push(item)
  return items
}

function filled(file, count = 300) {
  const queue = initQueue({ dbName: file, datetime: (() => { let t = 1_000; return () => t++ })() })
  const rows = queue.storeBulk(Array.from({ length: count }, (_, i) => ({
    cmd: `c${i % 4}`,
    data: { i, nested: { z: 1, a: [i, 'ü'] } },
    user: `u${i % 3}`,
    ip: i % 2 ? '10.0.0.1' : '',
    correlationId: `k${i % 7}`,
    metadata: { source: 'test', i },
  })))
  queue.store({ cmd: 'child', data: {}, causationId: rows[10].row.id })
  queue.store({ cmd: 'grandchild', data: {}, causationId: count + 1 })
  return queue
}

describe('export and import', () => {
  test('an export imported into an empty file reads back equal, row for row', async () => {
    const source = filled(tempDb())
    const lines = await collect(source.exportEvents())
    assert.equal(lines.length, 302)
    assert.ok(lines.every((line) => line.endsWith('\n') && !line.slice(0, -1).includes('\n')))
    const target = initQueue({ dbName: tempDb() })
    assert.equal(await target.importEvents(lines, { keepIds: true }), 302)
    assert.deepEqual(await allRows(target), await allRows(source))
    source.close()
    target.close()
  })

  test('without keepIds, ids are new and causation ids follow the rows they point at', async () => {
    const source = filled(tempDb(), 2500)
    const target = initQueue({ dbName: tempDb() })
    target.store({ cmd: 'already-there' })
    const progress = []
    // Chunks of text that cut lines anywhere, as a file stream delivers them.
    const text = (await collect(source.exportEvents())).join('')
    const chunks = []
    for (let at = 0; at < text.length; at += 777) chunks.push(Buffer.from(text.slice(at, at + 777)))
    const count = await target.importEvents(chunks, { onProgress: (p) => progress.push(p.done) })
    assert.equal(count, 2502)
    assert.deepEqual(progress, [1000, 2000, 2502])
    const before = await allRows(source)
    const after = (await allRows(target)).slice(1)
    assert.deepEqual(after.map((r) => r.id), before.map((r) => r.id + 1))
    const strip = ({ id, causation_id: causationId, ...rest }) => rest
    assert.deepEqual(after.map(strip), before.map(strip))
    // The child (in the last batch) points at row 11, now 12; so does the grandchild's parent.
    assert.equal(after.at(-2).causation_id, 12)
    assert.equal(after.at(-1).causation_id, after.at(-2).id)
    source.close()
    target.close()
  })

  test('a bad line rejects with its line number; the batches before it stay, its own is not stored', async () => {
    const queue = initQueue({ dbName: tempDb() })
    const good = (id) => JSON.stringify({ id, version: 1, datetime: id, user: '', ip: '', cmd: 'a', data: { id }, correlation_id: null, causation_id: null, metadata: {} })
    const lines = Array.from({ length: 1500 }, (_, i) => good(i + 1))
    lines.splice(1200, 0, '{"id": 9999, "cmd": ""}')
    const err = await queue.importEvents(lines).then(() => null, (e) => e)
    assert.equal(err.code, 'ERR_INVALID_EVENT')
    assert.equal(err.line, 1201)
    assert.equal(err.imported, 1000)
    assert.equal(queue.getMetrics().eventCount, 1000)
    const notJson = await queue.importEvents(['{"id":']).then(() => null, (e) => e)
    assert.equal(notJson.code, 'ERR_INVALID_EVENT')
    queue.close()
  })

  test('keepIds refuses a log that is not empty; bad arguments reject', async () => {
    const queue = initQueue({ dbName: tempDb() })
    queue.store({ cmd: 'x' })
    const err = await queue.importEvents([], { keepIds: true }).then(() => null, (e) => e)
    assert.equal(err.code, 'ERR_INVALID_OPTION')
    assert.equal((await queue.importEvents(42).then(() => null, (e) => e)).code, 'ERR_INVALID_ARG')
    assert.equal((await queue.importEvents([], { bogus: 1 }).then(() => null, (e) => e)).code, 'ERR_INVALID_OPTION')
    throwsCode(() => queue.exportEvents({ from: -1 }), RangeError, 'ERR_INVALID_OPTION')
    queue.close()
  })

  test('exportEvents honours from and to', async () => {
    const queue = filled(tempDb(), 50)
    const ids = (await collect(queue.exportEvents({ from: 10, to: 14 }))).map((line) => JSON.parse(line).id)
    assert.deepEqual(ids, [10, 11, 12, 13, 14])
    queue.close()
  })
})

describe('backup', () => {
  test('a backup is a consistent copy with every event acknowledged before it started, while other processes write', async () => {
    const file = tempDb()
    const queue = filled(file, 20000)
    const writers = ['w1', 'w2'].map((name, i) => {
      const child = spawn(process.execPath, [WRITER, file, 'wal', name, '0', String(i + 7)], { stdio: ['ignore', 'pipe', 'inherit'] })
      let acked = 0
      let buffer = ''
      const firstAck = new Promise((resolve) => child.stdout.on('data', (chunk) => {
        buffer += chunk
        const lines = buffer.split('\n')
        buffer = lines.pop()
        for (const line of lines) acked = Math.max(acked, Number(line.split(' ')[2]))
        if (acked > 0) resolve()
      }))
      return { child, firstAck, acked: () => acked, exited: new Promise((resolve) => child.on('exit', resolve)) }
    })
    await Promise.all(writers.map((w) => w.firstAck))
    const ackedBefore = Math.max(...writers.map((w) => w.acked()))
    const dest = path.join(path.dirname(file), 'copy', 'backup.sqlite')
    const steps = []
    const result = await queue.backup(dest, { onProgress: (p) => steps.push(p) })
    for (const w of writers) w.child.kill('SIGKILL')
    await Promise.all(writers.map((w) => w.exited))
    assert.ok(steps.length >= 1 && steps.at(-1).done === steps.at(-1).total && result.totalPages === steps.at(-1).total)
    const raw = openRaw(dest)
    assert.equal(raw.get('PRAGMA integrity_check').integrity_check, 'ok')
    const ids = raw.all('SELECT id FROM queue WHERE id <= ?', ackedBefore).map((r) => r.id)
    raw.close()
    const expected = openRaw(file)
    const wanted = expected.all('SELECT id FROM queue WHERE id <= ?', ackedBefore).map((r) => r.id)
    expected.close()
    assert.ok(wanted.length >= 20002)
    assert.deepEqual(ids, wanted)
    queue.close()
  })

  test('an in-memory store backs up to a file; a bad destination rejects', async () => {
    const queue = filled(':memory:', 100)
    const dest = tempDb('memory-copy.sqlite')
    await queue.backup(dest)
    const copy = initQueue({ dbName: dest })
    assert.equal(copy.getMetrics().eventCount, 102)
    copy.close()
    assert.equal((await queue.backup('').then(() => null, (e) => e)).code, 'ERR_INVALID_ARG')
    assert.equal((await queue.backup(dest, { onProgress: 1 }).then(() => null, (e) => e)).code, 'ERR_INVALID_OPTION')
    queue.close()
    assert.equal((await queue.backup(dest).then(() => null, (e) => e)).code, 'ERR_QUEUE_CLOSED')
  })
})

describe('maintenance', () => {
  test('checkpoint truncates the WAL; optimize, vacuum and integrityCheck do what SQLite does', () => {
    const file = tempDb()
    const queue = filled(file, 2000)
    assert.ok(fs.statSync(`${file}-wal`).size > 0)
    const done = queue.checkpoint()
    assert.equal(done.busy, false)
    assert.equal(fs.statSync(`${file}-wal`).size, 0)
    assert.equal(queue.optimize(), undefined)
    assert.equal(queue.vacuum(), undefined)
    assert.deepEqual(queue.integrityCheck(), ['ok'])
    assert.equal(queue.getMetrics().eventCount, 2002)
    queue.close()
    throwsCode(() => queue.checkpoint(), Error, 'ERR_QUEUE_CLOSED')
  })
})

/** The official Prometheus Python client's parser, run on `text`; null when it is not installed. */
function prometheusParse(text) {
  const script = [
    'import sys, json',
    'from prometheus_client.parser import text_string_to_metric_families',
    'families = list(text_string_to_metric_families(sys.stdin.read()))',
    'print(json.dumps([[f.name, f.type, f.documentation, [[s.name, s.labels, s.value] for s in f.samples]] for f in families]))',
  ].join('\n')
  const run = spawnSync('python3', ['-c', script], { input: text, encoding: 'utf8' })
  if (run.error || /No module named/.test(run.stderr)) return null
  if (run.status !== 0) throw new Error(`the Prometheus parser refused the text: ${run.stderr}`)
  return JSON.parse(run.stdout)
}

// CI installs the parser (.ci/run); on a machine without it the test is reported as skipped.
const parserMissing = prometheusParse('') === null
const parserTest = parserMissing
  ? (name, fn) => test.skip(`${name} (skipped: python3 with prometheus_client is not installed)`, fn)
  : test

describe('metricsText', () => {
  parserTest("Prometheus' own parser accepts it, and the figures are getMetrics' and getCacheStats'", () => {
    const queue = filled(tempDb(), 20)
    queue.retrieveByIDCached(1)
    queue.retrieveByIDCached(1)
    const text = queue.metricsText()
    const families = prometheusParse(text)
    const byName = Object.fromEntries(families.map(([name, type, help, samples]) => [name, { type, help, samples }]))
    for (const [name, family] of Object.entries(byName)) {
      assert.ok(name.startsWith('eventlite_'), name)
      assert.ok(family.help.length > 0, `${name} has help`)
    }
    // The client strips _total from counter family names.
    assert.equal(byName.eventlite_writes.type, 'counter')
    assert.equal(byName.eventlite_writes.samples[0][2], queue.getMetrics().writesTotal)
    assert.equal(byName.eventlite_events.samples[0][2], 22)
    assert.equal(byName.eventlite_cache_hits.samples[0][2], 1)
    assert.equal(byName.eventlite_write_latency_milliseconds.samples.length, 3)
    assert.deepEqual(byName.eventlite_info.samples[0][1], { journal_mode: 'WAL', synchronous: 'NORMAL' })
    const help = text.split('\n').filter((line) => line.startsWith('# HELP')).length
    const type = text.split('\n').filter((line) => line.startsWith('# TYPE')).length
    assert.equal(help, families.length)
    assert.equal(type, families.length)
    queue.close()
  })
})

describe('on the async queue', () => {
  test('backup, export, import, maintenance and metricsText answer as Promises, as on initQueue', async () => {
    const file = tempDb()
    const queue = await openQueue({ dbName: file })
    await Promise.all(Array.from({ length: 300 }, (_, i) => queue.store({ cmd: 'e', data: { i } })))
    const dest = path.join(path.dirname(file), 'async-backup.sqlite')
    const { totalPages } = await queue.backup(dest)
    assert.ok(totalPages > 0)
    const lines = await collect(queue.exportEvents())
    assert.equal(lines.length, 300)
    const copy = await openQueue({ dbName: tempDb() })
    assert.equal(await copy.importEvents(lines, { keepIds: true }), 300)
    assert.deepEqual(await collect(copy.exportEvents()), lines)
    assert.equal((await queue.checkpoint()).busy, false)
    assert.equal(await queue.optimize(), undefined)
    assert.equal(await queue.vacuum(), undefined)
    assert.deepEqual(await queue.integrityCheck(), ['ok'])
    const text = await queue.metricsText()
    assert.match(text, /^eventlite_writes_total 300$/m)
    assert.match(text, /^# TYPE eventlite_commits_total counter\neventlite_commits_total \d+$/m)
    assert.doesNotMatch(initQueue({ dbName: ':memory:' }).metricsText(), /commits_total/)
    await copy.close()
    await queue.close()
    await assert.rejects(queue.backup(dest), { code: 'ERR_QUEUE_CLOSED' })
    await assert.rejects(queue.exportEvents()[Symbol.asyncIterator]().next(), { code: 'ERR_QUEUE_CLOSED' })
    const backedUp = initQueue({ dbName: dest })
    assert.equal(backedUp.getMetrics().eventCount, 300)
    backedUp.close()
  })
})
