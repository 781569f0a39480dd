'use strict'
// openQueue({ url }) and TLS: `sslmode` and `sslrootcert` as libpq means them, against a server
// of this file's own that serves TLS with a certificate for localhost and 127.0.0.1 signed by a
// CA made for it (__tests__/pg-server.js, scripts/postgres.js start({ tls: true })). Whether a
// queue's connections are encrypted is read from the server's pg_stat_ssl, by their
// application_name. Reported as skipped, with the reason, when no server can run.
const assert = require('node:assert/strict')
const { describe, after, tempDir, test } = require('./helpers')
const { pgUrl, pgTest, pgTlsServer, pgTlsTest, freshSchema } = require('./pg-server')
const { makeCa } = require('../scripts/postgres')
const { openQueue } = require('..')

const TLS = pgTlsServer()

/** A superuser connection of node-postgres to the TLS server, without TLS. */
let adminClient = null
async function admin() {
  if (adminClient === null) {
    const { Client } = require('pg')
    adminClient = new Client({ connectionString: TLS.url })
    await adminClient.connect()
  }
  return adminClient
}

/** The TLS server's URL with `host` and the query `params` (an object), a libpq URL. */
function tlsUrl({ host = '127.0.0.1', ...params } = {}) {
  const url = new URL(TLS.url)
  url.hostname = host
  for (const [key, value] of Object.entries(params)) url.searchParams.set(key, value)
  return url.toString()
}

let apps = 0

/**
 * Opens a queue at `url` (plus a fresh schema, dropped when the suite ends, and an
 * application_name of its own), stores and reads back an event, and returns whether its
 * connections are encrypted, as the server sees them.
 */
async function storeAndReadOver(url) {
  const schema = freshSchema('tls')
  const app = `eventlite_tls_${process.pid}_${++apps}`
  const named = url.includes('://') ? `${url}${url.includes('?') ? '&' : '?'}application_name=${app}` : `${url} application_name=${app}`
  after(async () => (await admin()).query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`))
  const q = await openQueue({ url: named, schema })
  try {
    await q.store({ cmd: 'over-tls', data: { n: 1 } })
    const row = await q.retrieveByID(1)
    assert.equal(row.cmd, 'over-tls')
    assert.deepEqual(row.data, { n: 1 })
    const { rows } = await (await admin()).query(
      'SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = $1', [app])
    assert.ok(rows.length > 0, 'the queue keeps its connections open in its pool')
    const encrypted = [...new Set(rows.map((r) => r.ssl))]
    assert.equal(encrypted.length, 1, 'every connection of the queue is alike')
    return encrypted[0]
  } finally {
    await q.close()
  }
}

/** Asserts that `promise` rejects with `code` and a message matching `pattern`; returns the error. */
async function rejectsWith(promise, code, pattern) {
  const err = await promise.then(() => assert.fail(`expected ${code}, the Promise resolved`), (e) => e)
  assert.equal(err.code, code, err.message)
  assert.match(err.message, pattern)
  return err
}

describe('openQueue on PostgreSQL with TLS (sslmode, sslrootcert)', () => {
  after(() => adminClient?.end())

  pgTlsTest('sslmode=require encrypts without checking the certificate (a CA nobody trusts)', async () => {
    assert.equal(await storeAndReadOver(tlsUrl({ sslmode: 'require' })), true)
  })

  pgTlsTest('the default (prefer) encrypts when the server offers TLS, and disable does not', async () => {
    assert.equal(await storeAndReadOver(tlsUrl()), true)
    assert.equal(await storeAndReadOver(tlsUrl({ sslmode: 'disable' })), false)
  })

  pgTlsTest('verify-full with sslrootcert=<the CA> connects to localhost and to 127.0.0.1, both named by the certificate, in both forms', async () => {
    assert.equal(await storeAndReadOver(tlsUrl({ host: 'localhost', sslmode: 'verify-full', sslrootcert: TLS.ca })), true)
    assert.equal(await storeAndReadOver(tlsUrl({ sslmode: 'verify-full', sslrootcert: TLS.ca })), true)
    const { username, password, port } = new URL(TLS.url)
    const pairs = `host=localhost port=${port} user=${username} password='${decodeURIComponent(password)}' dbname=postgres sslmode=verify-full sslrootcert='${TLS.ca}'`
    assert.equal(await storeAndReadOver(pairs), true)
  })

  pgTlsTest('verify-full refuses a host name the certificate does not name; verify-ca accepts it', async () => {
    // hostaddr reaches the server; host is the name the certificate is checked against.
    const wrongName = { host: 'wrong-name.invalid', hostaddr: '127.0.0.1', sslrootcert: TLS.ca }
    await rejectsWith(openQueue({ url: tlsUrl({ ...wrongName, sslmode: 'verify-full' }), schema: freshSchema('tls') }),
      'ERR_CONNECTION', /TLS refused \(sslmode=verify-full\): the server's certificate is not issued for the host name/)
    assert.equal(await storeAndReadOver(tlsUrl({ ...wrongName, sslmode: 'verify-ca' })), true)
  })

  pgTlsTest('verify-ca and verify-full refuse a certificate signed by a CA they do not trust: another file, or the Mozilla roots by default', async () => {
    const unknown = makeCa(tempDir(), 'unknown CA')
    for (const sslmode of ['verify-ca', 'verify-full']) {
      await rejectsWith(openQueue({ url: tlsUrl({ host: 'localhost', sslmode, sslrootcert: unknown.cert }), schema: freshSchema('tls') }),
        'ERR_CONNECTION', new RegExp(`TLS refused \\(sslmode=${sslmode}\\): the server's certificate is not signed by a trusted CA \\(sslrootcert=`))
    }
    await rejectsWith(openQueue({ url: tlsUrl({ host: 'localhost', sslmode: 'verify-full' }), schema: freshSchema('tls') }),
      'ERR_CONNECTION', /not signed by a trusted CA \(the Mozilla roots/)
  })

  pgTlsTest('require with sslrootcert checks the chain, as libpq does when it has a root file', async () => {
    const unknown = makeCa(tempDir(), 'unknown CA')
    await rejectsWith(openQueue({ url: tlsUrl({ sslmode: 'require', sslrootcert: unknown.cert }), schema: freshSchema('tls') }),
      'ERR_CONNECTION', /TLS refused \(sslmode=require\): the server's certificate is not signed by a trusted CA/)
    assert.equal(await storeAndReadOver(tlsUrl({ host: 'wrong-name.invalid', hostaddr: '127.0.0.1', sslmode: 'require', sslrootcert: TLS.ca })), true)
  })

  pgTest('sslmode=require against a server without TLS rejects with ERR_CONNECTION saying so', async () => {
    const url = new URL(pgUrl().url)
    url.searchParams.set('sslmode', 'require')
    await rejectsWith(openQueue({ url: url.toString(), schema: freshSchema('tls') }),
      'ERR_CONNECTION', /TLS refused \(sslmode=require\): the server does not support TLS/)
  })

  test('a bad sslmode or sslrootcert rejects with ERR_INVALID_OPTION before connecting', async () => {
    // Port 1 on a name that does not resolve: anything that tried to connect would fail otherwise.
    const base = 'postgres://u:p@nowhere.invalid:1/db'
    const missing = `${tempDir()}/missing-ca.pem`
    for (const [url, pattern] of [
      [`${base}?sslmode=verify`, /sslmode must be disable, allow, prefer, require, verify-ca or verify-full, got "verify"/],
      ['host=nowhere.invalid port=1 sslmode=REQUIRE', /got "REQUIRE"/],
      [`${base}?sslmode=require&sslrootcert=system`, /sslrootcert=system requires sslmode=verify-full/],
      [`${base}?sslmode=verify-ca&sslrootcert=${encodeURIComponent(missing)}`, /sslrootcert ".*missing-ca\.pem" cannot be read/],
    ]) {
      await rejectsWith(openQueue({ url }), 'ERR_INVALID_OPTION', pattern)
    }
  })
})
