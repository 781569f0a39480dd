'use strict'
// The backends the async queue's acceptance tests run on (issue 15): every test of
// async.test.js and async-streams.test.js that is not about SQLite files runs once per entry
// of BACKENDS, on a log of its own (SQLite: a temp file; PostgreSQL: a fresh schema of the
// test server, __tests__/pg-server.js, whose suites are reported skipped, with the reason,
// when no server can run). What differs between them (how another program reaches the log,
// how a lock is held, the error codes of the engine) is said here, once.
const { describe, after, tempDb, sqlElsewhere, holdWriteLock, holdReadLock } = require('./helpers')
const { pgUrl, pgDescribe, freshSchema } = require('./pg-server')
const { openQueue, initQueue } = require('..')

/** A superuser connection of node-postgres, for what a test sets up behind the queue. */
async function pgClient() {
  const { Client } = require('pg')
  const client = new Client({ connectionString: pgUrl().url })
  await client.connect()
  return client
}

/** Runs SQL on the test server as its superuser. */
async function pgRun(sql) {
  const client = await pgClient()
  try {
    await client.query(sql)
  } finally {
    await client.end()
  }
}

/** The schema-qualified queue table of a PostgreSQL place. */
const pgTable = (place) => `"${place.schema}".queue`

/**
 * Each backend:
 * - `name`, `sqlite` (whether it is the SQLite file), `describe` (skips with the reason when the
 *   backend cannot run);
 * - `place()`: the openQueue options of a new, empty log;
 * - `other(place)`: another queue on the same log, as another program would use it (SQLite:
 *   initQueue; PostgreSQL: a second openQueue): its methods return values or Promises, so
 *   callers await them;
 * - `refuse(place, cmd)`: from now on the log refuses events whose cmd is `cmd` ('<cmd> refused'),
 *   with the error code `refusedCode`; the log must exist (open a queue first);
 * - `holdWriteLock(place)`: another program takes the log's write lock, so that commits wait and
 *   reads do not; resolves to `release()`. `lockWaitOptions`: what a queue needs to wait for it;
 * - `failCommits(place)`: from now on every commit fails (a write lock that is never given, a
 *   check at commit), with `commitFailure.code`; resolves to `release()`.
 *   `commitFailure.options`: what a queue needs for it;
 * - `synchronous`: getMetrics().synchronous of a queue opened with the defaults.
 */
const BACKENDS = [
  {
    name: 'SQLite',
    sqlite: true,
    describe,
    place: () => ({ dbName: tempDb() }),
    other(place) {
      const q = initQueue({ dbName: place.dbName })
      after(() => q.close())
      return q
    },
    async refuse(place, cmd) {
      sqlElsewhere(place.dbName, `CREATE TRIGGER refuse_${cmd} BEFORE INSERT ON queue WHEN NEW.cmd = '${cmd}' BEGIN SELECT RAISE(ABORT, '${cmd} refused'); END`)
    },
    refusedCode: 'SQLITE_CONSTRAINT',
    holdWriteLock: (place) => holdWriteLock(place.dbName),
    lockWaitOptions: { busyTimeout: 60000 },
    // With the rollback journal a reader's SHARED lock lets the writer begin and insert, but
    // not commit: the COMMIT itself fails, with SQLITE_BUSY once the busy timeout runs out.
    failCommits: (place) => holdReadLock(place.dbName),
    commitFailure: { options: { WAL: false, busyTimeout: 50 }, code: 'SQLITE_BUSY' },
    synchronous: 'NORMAL',
  },
  {
    name: 'PostgreSQL',
    sqlite: false,
    describe: pgDescribe,
    place: () => ({ url: pgUrl().url, schema: freshSchema('async') }),
    async other(place) {
      const q = await openQueue(place)
      after(() => q.close())
      return q
    },
    async refuse(place, cmd) {
      const fn = `"${place.schema}".refuse_${cmd}`
      await pgRun(`
        CREATE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '${cmd} refused'; END $$;
        CREATE TRIGGER refuse_${cmd} BEFORE INSERT ON ${pgTable(place)} FOR EACH ROW WHEN (NEW.cmd = '${cmd}') EXECUTE FUNCTION ${fn}();`)
    },
    refusedCode: 'ERR_POSTGRES',
    async holdWriteLock(place) {
      // Inserts wait for this lock; reads do not.
      const client = await pgClient()
      await client.query(`BEGIN; LOCK TABLE ${pgTable(place)} IN SHARE ROW EXCLUSIVE MODE`)
      return async () => {
        await client.query('COMMIT')
        await client.end()
      }
    },
    lockWaitOptions: {},
    async failCommits(place) {
      // A check deferred to the commit, which refuses any row: the COMMIT itself fails.
      const fn = `"${place.schema}".refuse_commit`
      await pgRun(`
        CREATE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused at commit'; END $$;
        CREATE CONSTRAINT TRIGGER refuse_commit AFTER INSERT ON ${pgTable(place)} DEFERRABLE INITIALLY DEFERRED
          FOR EACH ROW EXECUTE FUNCTION ${fn}();`)
      return () => pgRun(`DROP TRIGGER refuse_commit ON ${pgTable(place)}`)
    },
    commitFailure: { options: {}, code: 'ERR_POSTGRES' },
    synchronous: 'ON',
  },
]

module.exports = { BACKENDS, pgClient }
