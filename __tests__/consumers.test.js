'use strict'
// Consumers: named, durable readers whose position lives in the file. When a batch's position
// is committed (when the loop asks for the next one, never when it is yielded), filters and
// group partitions, one reader per name and member (leases, also across processes and hosts),
// getConsumers and resetConsumer; and three group members killed at random points while two
// processes write, restarted until every event was handled by its member.
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { describe, test, after, tempDb, throwsCode, sqlElsewhere } = require('./helpers')
const { initQueue } = require('..')

const CONSUMER = path.join(__dirname, 'fixtures', 'group-consumer.js')
const WRITER = path.join(__dirname, 'fixtures', 'stream-writer.js')

function open(options = {}) {
  const q = initQueue({ dbName: tempDb(), ...options })
  after(() => q.close())
  return q
}

/** Stores `count` events: event n (id n + 1 in a fresh queue) has user `u{n % 2}` and correlation id `k{n % 7}`. */
function fill(q, count, from = 0) {
  q.storeBulk(Array.from({ length: count }, (_, k) => {
    const n = from + k
    return { cmd: 'e', data: { n }, user: `u${n % 2}`, correlationId: `k${n % 7}` }
  }))
}

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i)

/** Every batch a consumer yields, as arrays of ids. */
async function batchesOf(consumer) {
  const batches = []
  for await (const batch of consumer) batches.push(batch.map((r) => r.id))
  return batches
}

/** The member of a group of `size` that handles `correlationId`: FNV-1a 32 of its UTF-8 bytes, modulo size; 0 for none. */
function memberOf(correlationId, size) {
  if (correlationId === null) return 0
  let hash = 0x811c9dc5
  for (const byte of Buffer.from(correlationId, 'utf8')) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0
  return hash % size
}

/** A lease as a reader on another host holds it, written into the file by another process. */
function foreignLease(file, name, until) {
  const owner = '4242@elsewhere.example/00000000-0000-4000-8000-000000000000'
  sqlElsewhere(file, `UPDATE eventlite_consumers SET owner = '${owner}', lease_until = ${until} WHERE name = '${name}'`)
}

/** Starts a fixture in a process of this runtime; `lines` fill as it prints, `closed` settles when it is gone. */
function start(script, args) {
  const child = spawn(process.execPath, [script, ...args.map(String)], { stdio: ['pipe', 'pipe', 'pipe'] })
  const lines = []
  const waiters = []
  let pending = ''
  let stderr = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (chunk) => {
    pending += chunk
    const parts = pending.split('\n')
    pending = parts.pop()
    for (const line of parts) {
      lines.push(line)
      for (const waiter of [...waiters]) waiter(line)
    }
  })
  child.stderr.on('data', (chunk) => { stderr += chunk })
  // A line written to a child that already died is lost, as it would be on a real pipe.
  child.stdin.on('error', () => {})
  const closed = new Promise((resolve) => child.once('close', (code, signal) => resolve({ code, signal, stderr })))
  /** Resolves when the child prints `line` (at once if it did). */
  const printed = (line) => new Promise((resolve) => {
    if (lines.includes(line)) return resolve()
    const waiter = (got) => {
      if (got !== line) return
      waiters.splice(waiters.indexOf(waiter), 1)
      resolve()
    }
    waiters.push(waiter)
  })
  return { child, lines, closed, printed }
}

describe('consume', () => {
  test('a new consumer starts at the beginning, and resumes after its position', async () => {
    const q = open()
    fill(q, 25)
    const consumer = q.consume('projection', { batchSize: 10, follow: false })
    assert.deepEqual([consumer.name, consumer.member, consumer.size, consumer.position], ['projection', 0, 1, 0])
    assert.deepEqual(await batchesOf(consumer), [range(1, 10), range(11, 20), range(21, 25)])
    assert.equal(consumer.position, 25, 'the log ended: the last batch is committed')
    assert.deepEqual(q.getConsumers(), [{ name: 'projection', member: 0, size: 1, position: 25, lag: 0 }])
    fill(q, 2, 25)
    assert.deepEqual(q.getConsumers()[0].lag, 2)
    assert.deepEqual(await batchesOf(q.consume('projection', { follow: false })), [[26, 27]])
    assert.deepEqual(await batchesOf(q.consume('projection', { follow: false })), [])
  })

  test('a batch is committed when the loop asks for the next one, never when it is yielded', async () => {
    const q = open()
    fill(q, 30)
    const consumer = q.consume('p', { batchSize: 10, follow: false })
    const seen = []
    for await (const batch of consumer) seen.push([batch[0].id, consumer.position, q.getConsumers()[0].position])
    assert.deepEqual(seen, [[1, 0, 0], [11, 10, 10], [21, 20, 20]])
    assert.equal(q.getConsumers()[0].position, 30)
  })

  test('leaving the loop early commits nothing for the batch in hand; commit() first keeps it', async () => {
    const q = open()
    fill(q, 40)
    for await (const batch of q.consume('p', { batchSize: 10, follow: false })) if (batch[0].id === 11) break
    assert.equal(q.getConsumers()[0].position, 10, 'the first batch was committed when the second was asked for')
    await assert.rejects(async () => {
      for await (const batch of q.consume('p', { batchSize: 10, follow: false })) {
        assert.equal(batch[0].id, 11, 'the batch in hand at the break comes again')
        throw new Error('handler failed')
      }
    }, /handler failed/)
    const consumer = q.consume('p', { batchSize: 10, follow: false })
    for await (const batch of consumer) {
      assert.equal(batch[0].id, 11, 'and again after a throw')
      consumer.commit()
      break
    }
    assert.equal(consumer.position, 20)
    assert.deepEqual(await batchesOf(q.consume('p', { batchSize: 10, follow: false })), [range(21, 30), range(31, 40)])
  })

  test('follow waits for events of this queue and of other processes; aborting ends the loop', async () => {
    const file = tempDb()
    const q = initQueue({ dbName: file })
    after(() => q.close())
    q.store({ cmd: 'first', correlationId: 'c' })
    const controller = new AbortController()
    const consumer = q.consume('live', { signal: controller.signal })
    const seen = []
    for await (const batch of consumer) {
      seen.push(...batch.map((r) => r.cmd))
      if (seen.length === 1) q.store({ cmd: 'own', correlationId: 'c' })
      if (seen.length === 2) {
        sqlElsewhere(file, "INSERT INTO queue (datetime, cmd, data, correlation_id, metadata) VALUES (0, 'foreign', '{}', 'c', '{}')")
      }
      if (seen.length === 3) controller.abort()
    }
    assert.deepEqual(seen, ['first', 'own', 'foreign'])
    assert.equal(consumer.position, 3, 'the loop asked for a batch after the last one: it is committed')
  })

  test('a filter yields only matching events, and the position passes the others', async () => {
    const q = open()
    fill(q, 30)
    const consumer = q.consume('odd', { batchSize: 4, follow: false, filter: { user: 'u1', cmd: 'e' } })
    const ids = (await batchesOf(consumer)).flat()
    assert.deepEqual(ids, range(1, 15).map((i) => i * 2))
    assert.deepEqual(q.getConsumers(), [{ name: 'odd', member: 0, size: 1, position: 30, lag: 0 }])
    const none = q.consume('none', { follow: false, filter: { correlationId: 'nothing' } })
    assert.deepEqual(await batchesOf(none), [])
    assert.equal(none.position, 30)
  })

  test('group members each get their partition: every event once, a correlation id at one member in order', async () => {
    const q = open()
    q.storeBulk(Array.from({ length: 90 }, (_, n) => (n % 15 === 14 ? { cmd: 'orphan', causationId: 9999 } : { cmd: 'e', correlationId: `order-${n % 19}` })))
    const byMember = []
    for (let member = 0; member < 3; member++) {
      const rows = []
      for await (const batch of q.consume('g', { group: { member, size: 3 }, batchSize: 5, follow: false })) rows.push(...batch)
      byMember.push(rows)
      for (const row of rows) assert.equal(memberOf(row.correlation_id, 3), member, `event ${row.id} (${row.correlation_id})`)
      assert.deepEqual(rows.map((r) => r.id), [...rows.map((r) => r.id)].sort((a, b) => a - b), 'in id order')
    }
    assert.ok(byMember.every((rows) => rows.length > 0))
    assert.deepEqual(byMember.flat().map((r) => r.id).sort((a, b) => a - b), range(1, 90))
    assert.ok(byMember[0].some((r) => r.correlation_id === null), 'events without a correlation id go to member 0')
    assert.deepEqual(q.getConsumers().map((c) => [c.member, c.size, c.position, c.lag]), [[0, 3, 90, 0], [1, 3, 90, 0], [2, 3, 90, 0]])
  })

  test('a :memory: queue has consumers too', async () => {
    const q = initQueue({ dbName: ':memory:' })
    after(() => q.close())
    fill(q, 5)
    assert.deepEqual(await batchesOf(q.consume('m', { batchSize: 3, follow: false })), [[1, 2, 3], [4, 5]])
    assert.equal(q.getConsumers()[0].position, 5)
  })

  test('reset puts every consumer back at the start of the new log', async () => {
    const q = open({ risky: true })
    fill(q, 5)
    await batchesOf(q.consume('p', { follow: false }))
    q.reset()
    fill(q, 2)
    assert.deepEqual(await batchesOf(q.consume('p', { follow: false })), [[1, 2]])
  })

  test('options and arguments are checked when consume is called', () => {
    const q = open()
    throwsCode(() => q.consume(''), TypeError, 'ERR_INVALID_ARG')
    throwsCode(() => q.consume(5), TypeError, 'ERR_INVALID_ARG')
    throwsCode(() => q.consume('p', { batchSize: 0 }), RangeError, 'ERR_INVALID_OPTION')
    throwsCode(() => q.consume('p', { follow: 'yes' }), TypeError, 'ERR_INVALID_OPTION')
    throwsCode(() => q.consume('p', { colour: 1 }), TypeError, 'ERR_INVALID_OPTION')
    throwsCode(() => q.consume('p', { filter: { user: 5 } }), TypeError, 'ERR_INVALID_OPTION')
    throwsCode(() => q.consume('p', { filter: { name: 'x' } }), TypeError, 'ERR_INVALID_OPTION')
    throwsCode(() => q.consume('p', { group: { member: 3, size: 3 } }), RangeError, 'ERR_INVALID_OPTION')
    throwsCode(() => q.consume('p', { group: { size: 3 } }), TypeError, 'ERR_INVALID_OPTION')
    throwsCode(() => q.consume('p', { group: { member: 0, size: 0 } }), RangeError, 'ERR_INVALID_OPTION')
    throwsCode(() => q.consume('p', { signal: {} }), TypeError, 'ERR_INVALID_OPTION')
    throwsCode(() => q.resetConsumer(''), TypeError, 'ERR_INVALID_ARG')
    throwsCode(() => q.resetConsumer('p', -1), RangeError, 'ERR_INVALID_ARG')
    throwsCode(() => q.resetConsumer('p', 1.5), RangeError, 'ERR_INVALID_ARG')
    assert.deepEqual(q.getConsumers(), [], 'nothing was created')
  })

  test('close() ends a consumer and releases its lease', async () => {
    const file = tempDb()
    const first = initQueue({ dbName: file })
    first.store({ cmd: 'a', correlationId: 'c' })
    const consumer = first.consume('p')
    const seen = []
    for await (const batch of consumer) {
      seen.push(...batch.map((r) => r.id))
      first.close()
    }
    assert.deepEqual(seen, [1])
    const second = initQueue({ dbName: file })
    after(() => second.close())
    assert.deepEqual(await batchesOf(second.consume('p', { follow: false })), [[1]], 'taken at once, the batch in hand at the close again')
  })
})

describe('resetConsumer and getConsumers', () => {
  test('resetConsumer moves every member; an unknown name becomes a consumer at that position', async () => {
    const q = open()
    fill(q, 20)
    await batchesOf(q.consume('p', { follow: false }))
    q.resetConsumer('p', 5)
    assert.deepEqual(q.getConsumers(), [{ name: 'p', member: 0, size: 1, position: 5, lag: 15 }])
    assert.deepEqual((await batchesOf(q.consume('p', { follow: false }))).flat(), range(6, 20))
    q.resetConsumer('p')
    assert.equal(q.getConsumers()[0].position, 0)
    q.resetConsumer('late', 18)
    assert.deepEqual(await batchesOf(q.consume('late', { follow: false })), [[19, 20]])
  })

  test('a group changes size only once resetConsumer put every member at one position', async () => {
    const q = open()
    fill(q, 12)
    await batchesOf(q.consume('g', { group: { member: 0, size: 3 }, follow: false }))
    const err = await q.consume('g', { group: { member: 0, size: 2 }, follow: false }).next().catch((e) => e)
    assert.equal(err.code, 'ERR_INVALID_OPTION')
    q.resetConsumer('g', 12)
    fill(q, 6, 12)
    const members = []
    for (let member = 0; member < 2; member++) {
      members.push((await batchesOf(q.consume('g', { group: { member, size: 2 }, follow: false }))).flat())
    }
    assert.deepEqual(members.flat().sort((a, b) => a - b), range(13, 18))
    assert.deepEqual(q.getConsumers().map((c) => [c.member, c.size, c.position]), [[0, 2, 18], [1, 2, 18]])
  })
})

describe('one reader per consumer', () => {
  test('a second reader gets ERR_CONSUMER_BUSY until the first ends; other members and names read meanwhile', async () => {
    const q = open()
    fill(q, 6)
    const first = q.consume('p', { batchSize: 2, follow: false })
    assert.deepEqual((await first.next()).value.map((r) => r.id), [1, 2])
    const err = await q.consume('p', { follow: false }).next().catch((e) => e)
    assert.equal(err.code, 'ERR_CONSUMER_BUSY')
    assert.equal(err.consumer, 'p')
    throwsCode(() => q.resetConsumer('p', 0), Error, 'ERR_CONSUMER_BUSY')
    assert.equal((await batchesOf(q.consume('other', { follow: false }))).flat().length, 6)
    await first.return()
    assert.deepEqual((await batchesOf(q.consume('p', { follow: false }))).flat(), range(1, 6), 'the batch first left in hand comes again')
  })

  test('a reader in another process holds its lease until it ends, or at once when it is killed', async () => {
    const file = tempDb()
    const q = initQueue({ dbName: file })
    after(() => q.close())
    fill(q, 4)
    const log = path.join(path.dirname(file), 'reader.log')
    const reader = start(CONSUMER, [file, 0, 1, 2, log, 'wait'])
    await reader.printed('batch 1')
    const busy = await q.consume('projection', { follow: false }).next().catch((e) => e)
    assert.equal(busy.code, 'ERR_CONSUMER_BUSY')
    reader.child.kill('SIGKILL')
    assert.equal((await reader.closed).signal, 'SIGKILL')
    // Its process is gone from this host: the lease is free before it expires, and reading
    // resumes after what the killed reader committed, wherever it was.
    const { position } = q.getConsumers()[0]
    assert.deepEqual((await batchesOf(q.consume('projection', { follow: false }))).flat(), range(position + 1, 4))
  })

  test('a lease held by a reader on another host holds until it expires', async () => {
    const file = tempDb()
    const q = initQueue({ dbName: file })
    after(() => q.close())
    fill(q, 3)
    q.resetConsumer('remote', 0)
    foreignLease(file, 'remote', Date.now() + 60_000)
    const busy = await q.consume('remote', { follow: false }).next().catch((e) => e)
    assert.equal(busy.code, 'ERR_CONSUMER_BUSY')
    assert.match(busy.message, /elsewhere\.example/)
    throwsCode(() => q.resetConsumer('remote', 0), Error, 'ERR_CONSUMER_BUSY')
    foreignLease(file, 'remote', Date.now() - 1)
    assert.deepEqual(await batchesOf(q.consume('remote', { follow: false })), [[1, 2, 3]])
  })

  test('a reader whose lease went to another commits nothing more', async () => {
    const file = tempDb()
    const q = initQueue({ dbName: file })
    after(() => q.close())
    fill(q, 4)
    const consumer = q.consume('p', { batchSize: 2, follow: false })
    const err = await (async () => {
      for await (const batch of consumer) {
        assert.deepEqual(batch.map((r) => r.id), [1, 2])
        // Its lease expired meanwhile, and a reader elsewhere took it.
        foreignLease(file, 'p', Date.now() + 60_000)
      }
    })().catch((e) => e)
    assert.equal(err.code, 'ERR_CONSUMER_BUSY')
    assert.equal(consumer.position, 0)
    assert.equal(q.getConsumers()[0].position, 0)
  })
})

describe('a consumer group under crashes', () => {
  test('three members killed at random points and restarted while two processes write: each event reaches its member, none is skipped', async () => {
    const file = tempDb()
    const dir = path.dirname(file)
    initQueue({ dbName: file }).close()
    const SIZE = 3
    const BATCH = 7
    let seed = 20251126
    const random = () => ((seed = (seed * 1664525 + 1013904223) >>> 0) / 2 ** 32)
    const int = (from, to) => from + Math.floor(random() * (to - from + 1))
    // Per member: twice killed mid-batch (each run's first batch whole, so that what the run
    // before had in hand is seen again), then killed from outside wherever it is (it may have
    // read all there is by then), then a last run that follows until the writers are done and
    // reads to the end. Kill points come early, so that a member's events outlast them.
    const share = () => Math.floor(random() * 100) / 100
    const plans = range(0, SIZE - 1).map(() => [`die:${int(2, 4)}:${share()}`, `die:${int(2, 4)}:${share()}`, 'wait', 'last'])
    const killAt = range(0, SIZE - 1).map(() => int(2, 4))
    const logs = range(0, SIZE - 1).map((member) => path.join(dir, `member-${member}.log`))
    let writersDone = false
    const lastRuns = []
    // A run that waits for events that never come would hang the suite: past a minute (the
    // work takes seconds), every process still running is killed, and the test fails on it.
    const running = new Set()
    let stuck = false
    const watchdog = setTimeout(() => {
      stuck = true
      for (const child of running) child.kill('SIGKILL')
    }, 60_000)
    after(() => clearTimeout(watchdog))
    const runMember = async (member) => {
      const ends = []
      for (const plan of plans[member]) {
        const run = start(CONSUMER, [file, member, SIZE, BATCH, logs[member], plan])
        running.add(run.child)
        run.closed.then(() => running.delete(run.child))
        if (plan === 'wait') run.printed(`batch ${killAt[member]}`).then(() => run.child.kill('SIGKILL'))
        if (plan === 'last') {
          lastRuns.push(run.child)
          if (writersDone) run.child.stdin.end('stop\n')
        }
        const end = await run.closed
        ends.push([plan, end.code, end.signal])
        assert.equal(stuck, false, `member ${member}'s ${plan} run never ended`)
        if (plan === 'last') assert.equal(end.code, 0, end.stderr)
      }
      return ends
    }
    const members = range(0, SIZE - 1).map(runMember)
    const writers = [['w1', 11], ['w2', 22]].map(([name, writerSeed]) => start(WRITER, [file, name, 300, writerSeed]))
    for (const writer of writers) {
      running.add(writer.child)
      const end = await writer.closed
      assert.equal(end.code, 0, end.stderr)
    }
    writersDone = true
    for (const child of lastRuns) child.stdin.end('stop\n')
    const ends = await Promise.all(members)
    clearTimeout(watchdog)
    for (const memberEnds of ends) {
      assert.deepEqual(memberEnds.map(([plan, code, signal]) => [plan, plan === 'last' ? code : signal]), [
        [memberEnds[0][0], 'SIGKILL'], [memberEnds[1][0], 'SIGKILL'], ['wait', 'SIGKILL'], ['last', 0],
      ])
    }

    const q = initQueue({ dbName: file })
    after(() => q.close())
    const events = []
    for await (const batch of q.streamEvents()) events.push(...batch)
    assert.equal(events.length, 600)
    const handled = new Map(events.map((e) => [e.id, []]))
    for (let member = 0; member < SIZE; member++) {
      // The runs of this member, in order, from its log.
      const runs = []
      for (const line of fs.readFileSync(logs[member], 'utf8').split('\n').filter(Boolean)) {
        const [word, rest] = line.split(' ')
        if (word === 'start') runs.push({ plan: rest, batches: [], events: [], ended: false })
        else if (word === 'batch') runs.at(-1).batches.push(rest.split(',').map(Number))
        else if (word === 'event') runs.at(-1).events.push(Number(rest))
        else if (word === 'end') runs.at(-1).ended = true
      }
      assert.equal(runs.length, 4)
      runs.forEach((run, r) => {
        assert.equal(run.ended, run.plan === 'last')
        assert.deepEqual(run.events, [...run.events].sort((a, b) => a - b), `member ${member} run ${r}: in id order`)
        for (const id of run.events) handled.get(id).push({ member, run: r })
        // A run that died mid-batch had not committed that batch: the next run starts with it.
        if (run.plan.startsWith('die:')) {
          const inHand = run.batches.at(-1)
          assert.deepEqual(runs[r + 1].events.slice(0, inHand.length), inHand, `member ${member} run ${r}`)
        }
      })
      // Each event handled twice was in the hand of a run that was killed.
      const killedInHand = runs.filter((run) => !run.ended).map((run) => new Set(run.batches.at(-1) ?? []))
      for (const event of events) {
        const times = handled.get(event.id).filter((h) => h.member === member).length
        if (times > 1) assert.ok(times - 1 <= killedInHand.filter((batch) => batch.has(event.id)).length, `event ${event.id} handled ${times} times by member ${member}`)
      }
    }
    for (const event of events) {
      const members = new Set(handled.get(event.id).map((h) => h.member))
      assert.deepEqual([...members], [memberOf(event.correlation_id, SIZE)], `event ${event.id} (${event.correlation_id})`)
    }
    assert.deepEqual(q.getConsumers().map((c) => [c.name, c.member, c.size, c.position, c.lag]), range(0, SIZE - 1).map((m) => ['projection', m, SIZE, 600, 0]))
  })
})
