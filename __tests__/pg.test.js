'use strict'
// openQueue({ url }): the async queue on PostgreSQL: opening, every write path, the point reads,
// the rows read back byte for byte, the connection errors and the options. Runs against the
// test server of __tests__/pg-server.js (a superuser's URL: the tests create schemas and a
// role), and is reported as skipped, with the reason, when no server can run. Each test has a
// schema of its own.
const assert = require('node:assert/strict')
const net = require('node:net')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { describe, test, after, rejectsCode } = require('./helpers')
const { pgUrl, pgTest, freshSchema: schemaName } = require('./pg-server')
const { openQueue } = require('..')

const URL = pgUrl().url ?? ''
const OPENER = path.join(__dirname, 'fixtures', 'pg-open.js')

/** A superuser connection of node-postgres, for what the tests look at or set up behind the queue. */
let adminClient = null
async function admin() {
  if (adminClient === null) {
    const { Client } = require('pg')
    adminClient = new Client({ connectionString: URL })
    await adminClient.connect()
  }
  return adminClient
}

/** A schema name no other test (nor another run) uses, dropped when the suite ends. */
function freshSchema() {
  const schema = schemaName('eventlite_test')
  after(async () => (await admin()).query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`))
  return schema
}

async function open(options = {}) {
  const q = await openQueue({ url: URL, schema: freshSchema(), ...options })
  after(() => q.close())
  return q
}

/** The schema's events as stored, straight from the table: data and metadata as their text. */
async function stored(schema) {
  const { rows } = await (await admin()).query(`SELECT id, cmd, correlation_id, data, metadata FROM "${schema}".queue ORDER BY id`)
  return rows.map((row) => ({ ...row, id: Number(row.id) }))
}

/** A loopback port nothing listens on. */
function closedPort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    }).on('error', reject)
  })
}

describe('openQueue on PostgreSQL', () => {
  after(() => adminClient?.end())

  pgTest('opens a new schema with its tables, and every call after close() rejects with ERR_QUEUE_CLOSED', async () => {
    const schema = freshSchema()
    const q = await openQueue({ url: URL, schema })
    const { rows } = await (await admin()).query(
      `SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = $1 ORDER BY table_name, ordinal_position`, [schema])
    const queue = rows.filter((r) => r.table_name === 'queue').map((r) => `${r.column_name} ${r.data_type}`)
    assert.deepEqual(queue, [
      'id bigint', 'version integer', 'datetime bigint', 'user text', 'ip text', 'cmd text', 'data text',
      'correlation_id text', 'causation_id bigint', 'metadata text', 'tx_id xid8',
    ])
    assert.deepEqual(await q.getIndexes(), ['idx_causation_id', 'idx_correlation_id'])
    assert.equal(await q.getLastRow(), null)
    await q.close()
    await q.close()
    await rejectsCode(q.store({ cmd: 'late' }), Error, 'ERR_QUEUE_CLOSED')
    await rejectsCode(q.retrieveByID(1), Error, 'ERR_QUEUE_CLOSED')
    // Opening it again finds the tables as they are.
    const again = await openQueue({ url: URL, schema, indexes: { cmd: true } })
    assert.deepEqual(await again.getIndexes(), ['idx_causation_id', 'idx_cmd', 'idx_correlation_id'])
    await again.close()
  })

  pgTest('two processes opening the same new schema at once both succeed', async () => {
    const schema = freshSchema()
    const run = () => {
      const child = spawn(process.execPath, [OPENER, URL, schema], { stdio: ['pipe', 'pipe', 'pipe'] })
      let out = ''
      let err = ''
      child.stdout.on('data', (d) => { out += d })
      child.stderr.on('data', (d) => { err += d })
      const exited = new Promise((resolve) => child.on('close', (code) => resolve({ code, out, err })))
      return { child, exited }
    }
    const both = [run(), run()]
    // Neither opens until both are running.
    for (const { child } of both) child.stdin.write('go\n')
    const results = await Promise.all(both.map((r) => r.exited))
    for (const { code, err } of results) assert.equal(code, 0, err)
    assert.deepEqual(results.map((r) => r.out).sort(), ['stored 1\n', 'stored 2\n'])
    assert.deepEqual((await stored(schema)).map((r) => r.id), [1, 2])
  })

  pgTest('a role that may only read and write the tables opens a queue whose schema is there', async () => {
    const schema = freshSchema()
    const owner = await openQueue({ url: URL, schema })
    await owner.store({ cmd: 'by the owner' })
    await owner.close()
    const db = await admin()
    const role = `eventlite_rw_${process.pid}`
    await db.query(`DROP ROLE IF EXISTS ${role}`)
    await db.query(`CREATE ROLE ${role} LOGIN PASSWORD 'rw-secret'`)
    after(async () => {
      await db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
      await db.query(`DROP ROLE IF EXISTS ${role}`)
    })
    await db.query(`GRANT USAGE ON SCHEMA "${schema}" TO ${role};
      GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA "${schema}" TO ${role};
      GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA "${schema}" TO ${role};`)
    const url = new globalThis.URL(URL)
    url.username = role
    url.password = 'rw-secret'
    const q = await openQueue({ url: url.href, schema })
    after(() => q.close())
    assert.equal((await q.store({ cmd: 'by the app' })).id, 2)
    assert.deepEqual((await q.getTransaction((await q.retrieveByID(1)).correlation_id)).map((r) => r.cmd), ['by the owner'])
    // Asking for an index it lacks needs the right to create one.
    const err = await rejectsCode(openQueue({ url: url.href, schema, indexes: { cmd: true } }), Error, 'ERR_POSTGRES')
    assert.equal(err.pgCode, '42501')
  })

  pgTest('store, storeBulk and storeWithContext resolve with the rows as stored, and a child inherits its parent\'s correlation id', async () => {
    const q = await open()
    const first = await q.store({ cmd: 'open', data: { n: 1 }, user: 'ann', ip: '10.0.0.1', correlationId: 'order-1', metadata: { source: 'web' } })
    assert.deepEqual(first, {
      id: 1, version: 1, datetime: first.datetime, user: 'ann', ip: '10.0.0.1', cmd: 'open', data: { n: 1 },
      correlation_id: 'order-1', causation_id: null, metadata: { source: 'web' },
    })
    assert.deepEqual(await q.retrieveByID(1), first)
    const child = await q.store({ cmd: 'child', causationId: 1 })
    assert.equal(child.correlation_id, 'order-1', 'inherited from the parent')
    assert.deepEqual(await q.retrieveByID(child.id), child)
    const bulk = await q.storeBulk([{ cmd: 'b1', correlationId: 'bulk' }, { cmd: 'b2', causationId: 1 }, { cmd: 'b3' }])
    assert.deepEqual(bulk.map((r) => [r.row.id, r.row.cmd, r.row.correlation_id]).slice(0, 2), [[3, 'b1', 'bulk'], [4, 'b2', 'order-1']])
    assert.equal(bulk[2].row.id, 5)
    const ctx = await q.storeWithContext({ cmd: 'ctx', metadata: { a: 1 } }, { correlationId: 'order-1', causationId: 3, metadata: { b: 2 } })
    assert.deepEqual([ctx.id, ctx.correlation_id, ctx.causation_id, ctx.metadata], [6, 'order-1', 3, { a: 1, b: 2 }])
    for (const row of [first, child, ...bulk.map((r) => r.row), ctx]) assert.deepEqual(await q.retrieveByID(row.id), row)
    const metrics = await q.getMetrics()
    assert.deepEqual([metrics.writesTotal, metrics.batchWritesTotal, metrics.eventCount, metrics.errorsTotal], [6, 1, 6, 0])
  })

  pgTest('a group with a call the server refuses in the middle: that call fails alone, the others are stored in one commit without a gap', async () => {
    const schema = freshSchema()
    const q = await openQueue({ url: URL, schema })
    after(() => q.close())
    await (await admin()).query(`
      CREATE FUNCTION "${schema}".refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'boom refused'; END $$;
      CREATE TRIGGER refuse BEFORE INSERT ON "${schema}".queue FOR EACH ROW WHEN (NEW.cmd = 'boom') EXECUTE FUNCTION "${schema}".refuse();`)
    // Issued in one turn of the event loop: one group, one commit.
    const calls = [
      q.store({ cmd: 'a' }),
      q.storeBulk([{ cmd: 'b1' }, { cmd: 'boom' }]),
      q.store({ cmd: 'c' }),
      q.storeBulk([{ cmd: 'd1' }, { cmd: 'd2' }]),
    ]
    const [a, boom, c, d] = await Promise.allSettled(calls)
    assert.equal(a.value.id, 1)
    assert.equal(boom.reason.code, 'ERR_POSTGRES')
    assert.equal(boom.reason.pgCode, 'P0001')
    assert.match(boom.reason.message, /boom refused/)
    assert.equal(c.value.id, 2)
    assert.deepEqual(d.value.map((r) => r.row.id), [3, 4])
    assert.deepEqual((await stored(schema)).map((r) => `${r.id} ${r.cmd}`), ['1 a', '2 c', '3 d1', '4 d2'])
    const metrics = await q.getMetrics()
    assert.equal(metrics.commitsTotal, 1)
    assert.equal(metrics.errorsTotal, 1)
    // The next group takes the next id; an id is never handed out twice, even when its event was deleted.
    assert.equal((await q.store({ cmd: 'e' })).id, 5)
    await (await admin()).query(`DELETE FROM "${schema}".queue WHERE id = 5`)
    assert.equal((await q.store({ cmd: 'f' })).id, 6)
  })

  pgTest('an expectedVersion that does not hold rejects with ERR_VERSION_CONFLICT and its fields, storing nothing of the call', async () => {
    const schema = freshSchema()
    const q = await openQueue({ url: URL, schema })
    after(() => q.close())
    assert.equal((await q.store({ cmd: 'a', correlationId: 's', expectedVersion: 0 })).id, 1)
    const err = await rejectsCode(q.storeBulk([{ cmd: 'b', correlationId: 's' }, { cmd: 'c', correlationId: 's', expectedVersion: 1 }]), Error, 'ERR_VERSION_CONFLICT')
    assert.deepEqual([err.correlationId, err.expectedVersion, err.actualVersion, err.index], ['s', 1, 2, 1])
    assert.equal(err.message, 'storeBulk(events)[1]: stream "s" is at version 2, not the expected 1; nothing was stored')
    const single = await rejectsCode(q.store({ cmd: 'd', correlationId: 's', expectedVersion: 5 }), Error, 'ERR_VERSION_CONFLICT')
    assert.equal(single.message, 'store(event): stream "s" is at version 1, not the expected 5; nothing was stored')
    assert.equal('index' in single, false, 'as the synchronous queue: a single store has no index')
    assert.deepEqual((await stored(schema)).map((r) => r.cmd), ['a'])
    assert.equal((await q.store({ cmd: 'b', correlationId: 's', expectedVersion: 1 })).id, 2)
  })

  pgTest('an idempotent repeat stores nothing and resolves with the row stored the first time', async () => {
    const schema = freshSchema()
    const q = await openQueue({ url: URL, schema })
    after(() => q.close())
    const first = await q.store({ cmd: 'pay', data: { amount: 5 }, correlationId: 'p', idempotencyKey: 'pay-1' })
    const repeat = await q.store({ cmd: 'pay', data: { amount: 5 }, correlationId: 'p', idempotencyKey: 'pay-1' })
    assert.deepEqual(repeat, first)
    const bulk = await q.storeBulk([{ cmd: 'x', idempotencyKey: 'pay-1' }, { cmd: 'y', idempotencyKey: 'new' }])
    assert.deepEqual(bulk.map((r) => [r.row.id, r.row.cmd, r.duplicate === true]), [[1, 'pay', true], [2, 'y', false]])
    assert.deepEqual((await stored(schema)).map((r) => r.cmd), ['pay', 'y'])
  })

  pgTest('the point reads and their cached variants', async () => {
    const q = await open({ indexes: { user: true, cmd: false } })
    const root = await q.store({ cmd: 'root', correlationId: 't' })
    const kids = await q.storeBulk([{ cmd: 'k1', causationId: root.id }, { cmd: 'k2', causationId: root.id }])
    const grandchild = await q.store({ cmd: 'g', causationId: kids[0].row.id })
    assert.deepEqual(await q.getLastRow(), grandchild)
    assert.deepEqual((await q.getTransaction('t')).map((r) => r.cmd), ['root', 'k1', 'k2', 'g'])
    assert.deepEqual(await q.getTransaction('none'), [])
    assert.deepEqual(await q.getTransaction(undefined), [])
    assert.deepEqual((await q.getChildEvents(root.id)).map((r) => r.cmd), ['k1', 'k2'])
    assert.deepEqual(await q.getChildEvents(99), [])
    const lineage = await q.getEventLineage(kids[0].row.id)
    assert.deepEqual([lineage.event.cmd, lineage.parent.cmd, lineage.children.map((r) => r.cmd)], ['k1', 'root', ['g']])
    assert.equal((await q.getEventLineage(root.id)).parent, null)
    assert.equal(await q.getEventLineage(99), null)
    assert.equal(await q.retrieveByID(99), null)
    assert.equal(await q.retrieveByID('not an id'), null)
    assert.deepEqual(await q.getIndexes(), ['idx_causation_id', 'idx_correlation_id', 'idx_user'])

    // Cached: the same rows, fresh objects, and a transaction that grows is read again.
    const cached = await q.retrieveByIDCached(root.id)
    assert.deepEqual(cached, root)
    cached.data.changed = true
    assert.deepEqual(await q.retrieveByIDCached(root.id), root, 'a mutated copy does not change the cache')
    assert.equal(await q.retrieveByIDCached(99), null)
    assert.equal((await q.getTransactionCached('t')).length, 4)
    assert.equal((await q.getTransactionCached('t')).length, 4)
    await q.store({ cmd: 'more', correlationId: 't' })
    assert.deepEqual((await q.getTransactionCached('t')).map((r) => r.cmd), ['root', 'k1', 'k2', 'g', 'more'])
    const stats = await q.getCacheStats()
    assert.deepEqual([stats.enabled, stats.hits, stats.misses, stats.size], [true, 2, 4, 2])
    await q.clearCache()
    assert.equal((await q.getCacheStats()).size, 0)
  })

  pgTest('a cached transaction is never older than the table, whoever wrote to it', async () => {
    const schema = freshSchema()
    const q = await openQueue({ url: URL, schema })
    after(() => q.close())
    await q.store({ cmd: 'a', correlationId: 't' })
    assert.equal((await q.getTransactionCached('t')).length, 1)
    // Another queue (as another process would) appends to the transaction.
    const other = await openQueue({ url: URL, schema })
    await other.store({ cmd: 'b', correlationId: 't' })
    await other.close()
    assert.deepEqual((await q.getTransactionCached('t')).map((r) => r.cmd), ['a', 'b'])
  })

  pgTest('data and metadata read back exactly as stored: key order, white space, unicode', async () => {
    const schema = freshSchema()
    const q = await openQueue({ url: URL, schema })
    after(() => q.close())
    const data = { z: 1, a: [1, 2, { y: null, b: 'é' }], '': 'empty key', emoji: '😀\u2028\u0000"\\', n: -0.5e-7, big: 12345678901234567890 }
    const metadata = { zz: { nested: { deeper: [] } }, aa: 'x'.repeat(10000) }
    const row = await q.store({ cmd: 'exact', data, metadata })
    const back = await q.retrieveByID(row.id)
    assert.equal(JSON.stringify(back.data), JSON.stringify(data))
    assert.equal(JSON.stringify(back.metadata), JSON.stringify(metadata))
    assert.deepEqual(Object.keys(back.data), Object.keys(data))
    const [inTable] = await stored(schema)
    assert.equal(inTable.data, JSON.stringify(data), 'the text JSON.stringify wrote, byte for byte')
    assert.equal(inTable.metadata, JSON.stringify(metadata))
  })

  pgTest('a bad URL, a refused port, a wrong password and a silent server reject with ERR_CONNECTION', async () => {
    const bad = await rejectsCode(openQueue({ url: 'postgres://user@localhost:notaport/db' }), Error, 'ERR_CONNECTION')
    assert.equal(bad.pgCode, undefined)
    const port = await closedPort()
    const refused = await rejectsCode(openQueue({ url: `postgres://postgres@127.0.0.1:${port}/postgres` }), Error, 'ERR_CONNECTION')
    assert.match(refused.message, /refused/i)

    // A role whose password the server checks (the test server may trust everyone else).
    const db = await admin()
    const role = `eventlite_pw_${process.pid}`
    await db.query(`DROP ROLE IF EXISTS ${role}`)
    await db.query(`CREATE ROLE ${role} LOGIN PASSWORD 'right'`)
    after(() => db.query(`DROP ROLE IF EXISTS ${role}`))
    await requirePassword(db, role)
    const server = new globalThis.URL(URL)
    const as = (password) => `postgres://${role}:${password}@${server.host}${server.pathname}`
    const wrong = await rejectsCode(openQueue({ url: as('wrong'), schema: freshSchema() }), Error, 'ERR_CONNECTION')
    assert.equal(wrong.pgCode, '28P01')
    assert.match(wrong.message, /password/)

    // A server that accepts the connection and never answers: the connect timeout ends the wait.
    const silent = net.createServer(() => {}).listen(0, '127.0.0.1')
    await new Promise((resolve) => silent.once('listening', resolve))
    after(() => silent.close())
    const { port: silentPort } = silent.address()
    const timedOut = await rejectsCode(openQueue({ url: `postgres://u@127.0.0.1:${silentPort}/db`, connectTimeout: 50 }), Error, 'ERR_CONNECTION')
    assert.match(timedOut.message, /connectTimeout/)
  })

  pgTest('connections the server ends are replaced: the calls on them reject with ERR_CONNECTION, the next ones succeed, nothing resolved is lost', async () => {
    const schema = freshSchema()
    // Its own application name, so that only its connections are ended.
    const name = `eventlite_kill_${process.pid}`
    const q = await openQueue({ url: `${URL}${URL.includes('?') ? '&' : '?'}application_name=${name}`, schema, poolSize: 2 })
    after(() => q.close())
    const resolved = [(await q.store({ cmd: 'before' })).id]
    const db = await admin()
    const { rows } = await db.query('SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity WHERE application_name = $1', [name])
    assert.ok(rows.length > 0 && rows.every((r) => r.ended), 'the queue\'s connections were ended')
    // A call may still find the ended connection (its end not yet noticed): then it rejects.
    for (const outcome of await Promise.allSettled([q.store({ cmd: 'during' }), q.retrieveByID(1)])) {
      if (outcome.status === 'rejected') assert.equal(outcome.reason.code, 'ERR_CONNECTION', outcome.reason.message)
      else if (outcome.value?.cmd === 'during') resolved.push(outcome.value.id)
    }
    // By now every ended connection has been seen to fail: the pool opens new ones.
    const after1 = await q.store({ cmd: 'after' })
    resolved.push(after1.id)
    assert.equal((await q.retrieveByID(1)).cmd, 'before')
    const ids = (await stored(schema)).map((r) => r.id)
    for (const id of resolved) assert.ok(ids.includes(id), `event ${id} resolved and must be stored`)
  })

  pgTest('the methods of a SQLite file reject with ERR_NOT_SUPPORTED, saying what to use instead, and store nothing', async () => {
    const schema = freshSchema()
    const q = await openQueue({ url: URL, schema })
    after(() => q.close())
    await q.store({ cmd: 'kept' })
    const calls = {
      backup: () => q.backup('/tmp/never-written.sqlite'),
      exportEvents: () => q.exportEvents()[Symbol.asyncIterator]().next(),
      importEvents: () => q.importEvents(['{"cmd":"x"}']),
      checkpoint: () => q.checkpoint(),
      optimize: () => q.optimize(),
      vacuum: () => q.vacuum(),
      integrityCheck: () => q.integrityCheck(),
    }
    for (const [method, call] of Object.entries(calls)) {
      const err = await rejectsCode(call(), Error, 'ERR_NOT_SUPPORTED')
      assert.match(err.message, new RegExp(`^${method}\\(\\) works on a SQLite file, not on PostgreSQL: .+`))
    }
    assert.deepEqual((await stored(schema)).map((r) => r.cmd), ['kept'])
    assert.equal((await q.store({ cmd: 'still works' })).id, 2)
  })

  test('options that mean nothing on PostgreSQL, and bad PostgreSQL options, reject with ERR_INVALID_OPTION before connecting', async () => {
    // Nothing listens here: an option error must come before any connection attempt.
    const url = 'postgres://nobody@127.0.0.1:1/none'
    for (const key of ['WAL', 'synchronous', 'busyTimeout', 'dbName', 'reset']) {
      const value = { WAL: true, synchronous: 'FULL', busyTimeout: 10, dbName: 'x.sqlite', reset: true }[key]
      const err = await rejectsCode(openQueue({ url, [key]: value }), TypeError, 'ERR_INVALID_OPTION')
      assert.match(err.message, new RegExp(`^${key} means nothing on PostgreSQL`))
    }
    await rejectsCode(openQueue({ url: '' }), RangeError, 'ERR_INVALID_OPTION')
    await rejectsCode(openQueue({ url: 5 }), TypeError, 'ERR_INVALID_OPTION')
    await rejectsCode(openQueue({ url, schema: '' }), RangeError, 'ERR_INVALID_OPTION')
    await rejectsCode(openQueue({ url, schema: 'é'.repeat(32) }), RangeError, 'ERR_INVALID_OPTION')
    await rejectsCode(openQueue({ url, poolSize: 0 }), RangeError, 'ERR_INVALID_OPTION')
    await rejectsCode(openQueue({ url, poolSize: 2.5 }), RangeError, 'ERR_INVALID_OPTION')
    await rejectsCode(openQueue({ url, connectTimeout: '1s' }), TypeError, 'ERR_INVALID_OPTION')
    await rejectsCode(openQueue({ url, indexes: { colour: true } }), TypeError, 'ERR_INVALID_OPTION')
    await rejectsCode(openQueue({ url, cache: { maxSize: 0 } }), RangeError, 'ERR_INVALID_OPTION')
    await rejectsCode(openQueue({ url, schema: 'x', unknown: 1 }), TypeError, 'ERR_INVALID_OPTION')
  })
})

/**
 * Makes the server check `role`'s password: a rule for it ahead of the others in pg_hba.conf,
 * written through the server (it may run as another user) and loaded with pg_reload_conf().
 */
async function requirePassword(db, role) {
  const { rows: [{ hba_file: file }] } = await db.query('SHOW hba_file')
  const { rows: [{ text }] } = await db.query('SELECT pg_read_file($1) AS text', [file])
  const rules = [`host all ${role} 127.0.0.1/32 scram-sha-256`, `host all ${role} ::1/128 scram-sha-256`]
  if (text.includes(rules[0])) return
  await db.query('CREATE TEMP TABLE hba (n serial, line text)')
  await db.query('INSERT INTO hba (line) SELECT unnest($1::text[])', [[...rules, ...text.split('\n')]])
  await db.query(`COPY (SELECT line FROM hba ORDER BY n) TO '${file.replace(/'/g, "''")}'`)
  await db.query('DROP TABLE hba')
  await db.query('SELECT pg_reload_conf()')
}
