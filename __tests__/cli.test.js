'use strict'
// The eventlite command line, run as a user runs it: the real bin in a child process, and
// under a pseudo-terminal (util-linux `script`) where the progress bar matters.
const assert = require('node:assert/strict')
const { spawn, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const { describe, test, tempDb, openRaw } = require('./helpers')
const { initQueue } = require('..')

const BIN = path.join(__dirname, '..', 'bin', 'eventlite.js')
const COMMANDS = ['inspect', 'tail', 'export', 'import', 'backup', 'check', 'maintain', 'metrics']

/** Runs the bin with `args` (no terminal: stdout and stderr are pipes). */
function cli(...args) {
  const run = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 })
  return { code: run.status, out: run.stdout, err: run.stderr }
}

function store(count = 30) {
  const file = tempDb()
  const queue = initQueue({ dbName: file, datetime: (() => { let t = 1_700_000_000_000; return () => t++ })() })
  queue.storeBulk(Array.from({ length: count }, (_, i) => ({
    cmd: i % 3 === 0 ? 'opened' : 'paid',
    data: { i },
    user: `u${i % 2}`,
    correlationId: `order-${i % 5}`,
  })))
  queue.close()
  return file
}

describe('eventlite --help', () => {
  test('lists every command, and each command has its own help', () => {
    const main = cli('--help')
    assert.equal(main.code, 0)
    for (const name of COMMANDS) {
      assert.match(main.out, new RegExp(`^  ${name} `, 'm'))
      const help = cli(name, '--help')
      assert.equal(help.code, 0)
      assert.match(help.out, new RegExp(`^Usage: eventlite ${name} <db>`))
    }
  })

  test('bad arguments, missing files and files that are not event stores: one line on stderr, non-zero exit', () => {
    const file = store()
    const cases = [
      [['frobnicate'], 2, /unknown command 'frobnicate'/],
      [['tail', file, '--bogus'], 2, /Unknown option '--bogus'/],
      [['tail', file, '-n', 'many'], 2, /--lines must be an integer/],
      [['inspect'], 2, /missing <db>/],
      [['backup', file], 2, /missing <dest>/],
      [['inspect', file, 'extra'], 2, /unexpected argument 'extra'/],
      [['inspect', path.join(path.dirname(file), 'missing.sqlite')], 1, /no such file/],
      [['import', file, path.join(path.dirname(file), 'missing.jsonl')], 1, /no such file/],
    ]
    const text = path.join(path.dirname(file), 'notes.txt')
    fs.writeFileSync(text, 'not a database, just words\n'.repeat(100))
    cases.push([['check', text], 1, /is not an event store/])
    const foreign = path.join(path.dirname(file), 'foreign.sqlite')
    const raw = openRaw(foreign)
    raw.exec('CREATE TABLE queue (x TEXT)')
    raw.close()
    cases.push([['inspect', foreign], 1, /is not an event store/])
    for (const [args, code, message] of cases) {
      const run = cli(...args)
      assert.equal(run.code, code, `${args.join(' ')}: ${run.err}`)
      assert.match(run.err, message)
      assert.equal(run.err.trim().split('\n').length, 1, `${args.join(' ')} prints one line`)
      assert.equal(run.out, '')
    }
  })
})

describe('reading commands', () => {
  test('inspect: counts, ends, sizes, indexes, top commands and consumers, as text and as JSON; the file is not changed', async () => {
    const file = store()
    const queue = initQueue({ dbName: file })
    for await (const batch of queue.consume('projection', { batchSize: 10, follow: false })) void batch
    queue.close()
    const before = fs.readFileSync(file)
    const text = cli('inspect', file)
    assert.equal(text.code, 0, text.err)
    assert.match(text.out, /^events +30$/m)
    assert.match(text.out, /^first +#1 +2023-11-14T22:13:20\.000Z$/m)
    assert.match(text.out, /^last +#30 /m)
    assert.match(text.out, /^journal mode +WAL$/m)
    assert.match(text.out, /^indexes +idx_causation_id, idx_correlation_id$/m)
    assert.match(text.out, /^ {2}paid +20$/m)
    const json = JSON.parse(cli('inspect', file, '--json').out)
    assert.equal(json.events, 30)
    assert.deepEqual(json.consumers, [{ name: 'projection', member: 0, size: 1, position: 30, lag: 0 }])
    assert.match(text.out, /^ {2}projection +position #30, lag 0$/m)
    assert.deepEqual(json.topCmds, [{ cmd: 'paid', count: 20 }, { cmd: 'opened', count: 10 }])
    assert.deepEqual(fs.readFileSync(file), before)
  })

  test('tail: the last events newest last, with filters', () => {
    const file = store()
    const lines = cli('tail', file, '-n', '3').out.trim().split('\n')
    assert.deepEqual(lines.map((line) => line.split('  ')[0]), ['#28', '#29', '#30'])
    const json = cli('tail', file, '-n', '2', '--cmd', 'opened', '--user', 'u1', '--json').out.trim().split('\n').map(JSON.parse)
    assert.deepEqual(json.map((row) => row.id), [22, 28])
    assert.ok(json.every((row) => row.cmd === 'opened' && row.user === 'u1'))
    const byCorrelation = cli('tail', file, '--correlation', 'order-4', '--json').out.trim().split('\n').map(JSON.parse)
    assert.deepEqual(byCorrelation.map((row) => row.id), [5, 10, 15, 20, 25, 30])
    assert.equal(cli('tail', file, '--cmd', 'nothing').out, '')
  })

  test('tail --follow prints events another process appends, until interrupted', async () => {
    const file = store(3)
    const child = spawn(process.execPath, [BIN, 'tail', file, '--follow', '--json', '-n', '1'], { stdio: ['ignore', 'pipe', 'pipe'] })
    const seen = []
    let buffer = ''
    let waiting = null
    child.stdout.on('data', (chunk) => {
      buffer += chunk
      const lines = buffer.split('\n')
      buffer = lines.pop()
      seen.push(...lines.map((line) => JSON.parse(line).id))
      if (waiting && waiting.until()) waiting.resolve()
    })
    const untilSeen = (count) => new Promise((resolve) => {
      waiting = { until: () => seen.length >= count, resolve }
      if (waiting.until()) resolve()
    })
    const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
    await untilSeen(1)
    const queue = initQueue({ dbName: file })
    queue.storeBulk([{ cmd: 'late' }, { cmd: 'later' }])
    queue.close()
    await untilSeen(3)
    child.kill('SIGINT')
    assert.deepEqual(await exited, { code: 0, signal: null })
    assert.deepEqual(seen, [3, 4, 5])
  })

  test('check passes a healthy file and exits 1 on a broken index', () => {
    const file = store()
    const ok = cli('check', file)
    assert.equal(ok.code, 0, ok.err)
    assert.match(ok.out, /^integrity +ok$/m)
    assert.equal(JSON.parse(cli('check', file, '--json').out).ok, true)
    const raw = openRaw(file)
    raw.exec('DROP INDEX idx_correlation_id; CREATE INDEX idx_correlation_id ON queue(user)')
    raw.close()
    const bad = cli('check', file, '--json')
    assert.equal(bad.code, 1)
    assert.deepEqual(JSON.parse(bad.out).indexProblems, ['index idx_correlation_id is on (user), expected (correlation_id)'])
  })

  test("metrics prints Prometheus' text format", () => {
    const run = cli('metrics', store())
    assert.equal(run.code, 0, run.err)
    assert.match(run.out, /^# TYPE eventlite_events gauge\neventlite_events 30$/m)
  })
})

describe('writing commands', () => {
  test('export then import into a new file reads back equal; --from/--to narrow the export', () => {
    const file = store(2500)
    const out = path.join(path.dirname(file), 'events.jsonl')
    const exported = cli('export', file, '--out', out)
    assert.equal(exported.code, 0, exported.err)
    assert.equal(exported.err, '', 'no progress bar without a terminal')
    assert.equal(fs.readFileSync(out, 'utf8'), cli('export', file).out)
    const copy = path.join(path.dirname(file), 'copy.sqlite')
    const imported = cli('import', copy, out, '--keep-ids', '--json')
    assert.equal(imported.code, 0, imported.err)
    assert.equal(JSON.parse(imported.out).imported, 2500)
    assert.equal(cli('export', copy).out, fs.readFileSync(out, 'utf8'))
    const ids = cli('export', file, '--from', '10', '--to', '12').out.trim().split('\n').map((line) => JSON.parse(line).id)
    assert.deepEqual(ids, [10, 11, 12])
  })

  test('backup makes a copy that passes check; maintain reports each step', () => {
    const file = store(500)
    const dest = path.join(path.dirname(file), 'backup.sqlite')
    const backup = cli('backup', file, dest)
    assert.equal(backup.code, 0, backup.err)
    assert.match(backup.out, /^backed up .* pages/)
    assert.equal(cli('check', dest).code, 0)
    assert.equal(cli('export', dest).out, cli('export', file).out)
    const maintain = cli('maintain', file, '--json')
    assert.equal(maintain.code, 0, maintain.err)
    const steps = JSON.parse(maintain.out)
    assert.deepEqual(steps.map((s) => s.step), ['optimize', 'vacuum', 'checkpoint'])
    assert.equal(steps[2].after.wal, 0)
    assert.deepEqual(JSON.parse(cli('maintain', file, '--checkpoint', '--json').out).map((s) => s.step), ['checkpoint'])
  })
})

/** Runs the bin under a pseudo-terminal; returns what the terminal received. */
function underTerminal(args) {
  const command = [process.execPath, BIN, ...args].map((arg) => `'${arg.replace(/'/g, "'\\''")}'`).join(' ')
  const run = spawnSync('script', ['-qfec', command, '/dev/null'], { encoding: 'utf8' })
  return { code: run.status, screen: run.stdout }
}

const hasScript = spawnSync('script', ['--version']).status === 0
const terminalTest = hasScript ? test : (name, fn) => test.skip(`${name} (skipped: util-linux script is not installed)`, fn)

describe('the progress bar', () => {
  terminalTest('on a terminal, export and import show the bar (done/total, rate, time left) and clear it', () => {
    const file = store(5000)
    const out = path.join(path.dirname(file), 'events.jsonl')
    const exported = underTerminal(['export', file, '--out', out])
    assert.equal(exported.code, 0, exported.screen)
    assert.match(exported.screen, /export \[#+-*\] 1,000\/5,000 events {2}[\d,]+\/s {2}\d+:\d\d left/)
    assert.match(exported.screen, /5,000\/5,000 events/)
    assert.ok(exported.screen.endsWith('\r\x1b[K'), 'the bar is cleared at the end')
    const imported = underTerminal(['import', path.join(path.dirname(file), 'copy.sqlite'), out])
    assert.equal(imported.code, 0, imported.screen)
    assert.match(imported.screen, /import \[#+-*\] [\d,]+\/5,000 events/)
    assert.match(imported.screen, /\r\x1b\[Kimported 5,000 events into /)
  })
})
