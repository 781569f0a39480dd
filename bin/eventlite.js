#!/usr/bin/env node
'use strict'
// eventlite: look inside an event store, follow it, move its events in and out, back it up,
// check and maintain it, and expose its figures to Prometheus. Commands that only read open
// the file read-only. Errors are one line on stderr: exit 2 for a bad command line, 1 for
// anything else (a missing file, a file that is not an event store, a failed check).
const fs = require('node:fs')
const { once } = require('node:events')
const { parseArgs } = require('node:util')
const { resolveOptions } = require('../lib/options')
const { EventQueue, NATIVE } = require('../lib/queue')
const { ProgressBar } = require('../lib/progress')

class UsageError extends Error {}
class Failure extends Error {}

const JSON_FLAG = { json: { type: 'boolean', description: 'print JSON instead of text' } }

const COMMANDS = {
  inspect: {
    usage: 'eventlite inspect <db> [--json]',
    summary: 'events, first and last, sizes, journal mode, indexes, top commands, pending events, consumers',
    options: JSON_FLAG,
    positionals: ['db'],
    run: inspect,
  },
  tail: {
    usage: 'eventlite tail <db> [-n 20] [--follow] [--cmd C] [--user U] [--correlation ID] [--json]',
    summary: 'the last events, newest last; --follow keeps printing new ones until interrupted',
    options: {
      lines: { type: 'string', short: 'n', description: 'how many events (default 20)' },
      follow: { type: 'boolean', short: 'f', description: 'keep printing new events until Ctrl-C' },
      cmd: { type: 'string', description: 'only events with this cmd' },
      user: { type: 'string', description: 'only events of this user' },
      correlation: { type: 'string', description: 'only events of this correlation id' },
      ...JSON_FLAG,
    },
    positionals: ['db'],
    run: tail,
  },
  export: {
    usage: 'eventlite export <db> [--out FILE] [--from ID] [--to ID]',
    summary: 'the events as JSONL (one row per line, id order) to FILE or stdout',
    options: {
      out: { type: 'string', short: 'o', description: 'write to FILE instead of stdout' },
      from: { type: 'string', description: 'first id (default: the first event)' },
      to: { type: 'string', description: 'last id (default: the last event)' },
    },
    positionals: ['db'],
    run: exportCommand,
  },
  import: {
    usage: 'eventlite import <db> <FILE> [--keep-ids] [--json]',
    summary: 'appends the events of a JSONL export, atomically per batch, causation ids remapped',
    options: { 'keep-ids': { type: 'boolean', description: 'keep the exported ids (the log must be empty)' }, ...JSON_FLAG },
    positionals: ['db', 'file'],
    run: importCommand,
  },
  backup: {
    usage: 'eventlite backup <db> <dest> [--json]',
    summary: "a consistent copy of the live database (SQLite's online backup)",
    options: JSON_FLAG,
    positionals: ['db', 'dest'],
    run: backup,
  },
  check: {
    usage: 'eventlite check <db> [--json]',
    summary: 'PRAGMA integrity_check, the schema and the indexes; exit 1 when anything is wrong',
    options: JSON_FLAG,
    positionals: ['db'],
    run: check,
  },
  maintain: {
    usage: 'eventlite maintain <db> [--optimize] [--vacuum] [--checkpoint] [--json]',
    summary: 'PRAGMA optimize, VACUUM, WAL checkpoint (truncate), in that order; all three when none is named',
    options: {
      checkpoint: { type: 'boolean', description: 'copy the WAL into the database and truncate it' },
      optimize: { type: 'boolean', description: "refresh the query planner's statistics" },
      vacuum: { type: 'boolean', description: 'rebuild the file without its free pages' },
      ...JSON_FLAG,
    },
    positionals: ['db'],
    run: maintain,
  },
  metrics: {
    usage: 'eventlite metrics <db>',
    summary: "the store's figures in Prometheus' text exposition format",
    options: {},
    positionals: ['db'],
    run: metrics,
  },
}

function mainHelp() {
  const width = Math.max(...Object.keys(COMMANDS).map((name) => name.length))
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`)
  return `Usage: eventlite <command> <db> [options]\n\nCommands:\n${lines.join('\n')}\n\n` +
    'Run `eventlite <command> --help` for the options of a command.\n'
}

function commandHelp(command) {
  const flags = Object.entries(command.options).map(([name, o]) => {
    const flag = (o.short ? `-${o.short}, ` : '    ') + `--${name}${o.type === 'string' ? ' VALUE' : ''}`
    return [flag, o.description]
  })
  flags.push(['-h, --help', 'show this help'])
  const width = Math.max(...flags.map(([flag]) => flag.length))
  return `Usage: ${command.usage}\n\n${command.summary[0].toUpperCase()}${command.summary.slice(1)}.\n\nOptions:\n` +
    flags.map(([flag, text]) => `  ${flag.padEnd(width)}  ${text}`).join('\n') + '\n'
}

/** Opens an event store; `readOnly` for commands that only read, which need the file to exist. */
function open(file, { readOnly }) {
  if (readOnly && !fs.existsSync(file)) throw new Failure(`no such file: ${file}`)
  const settings = resolveOptions({ dbName: file, cache: { enabled: false } })
  try {
    return new EventQueue({ ...settings, open: { ...settings.open, readOnly } })
  } catch (err) {
    if (err.code === 'SQLITE_NOTADB' || err.code === 'ERR_SCHEMA_MISMATCH') {
      throw new Failure(`${file} is not an event store (${err.message})`)
    }
    throw err
  }
}

/** Runs `work(queue)` on the store and closes it, whatever happens. */
async function withStore(file, readOnly, work) {
  const queue = open(file, { readOnly })
  try {
    return await work(queue)
  } finally {
    queue.close()
  }
}

function integer(value, name, min) {
  if (value === undefined) return undefined
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value)) || Number(value) < min) {
    throw new UsageError(`--${name} must be an integer ≥ ${min}, got '${value}'`)
  }
  return Number(value)
}

const print = (text) => process.stdout.write(text + '\n')
const printJson = (value) => print(JSON.stringify(value, null, 2))
const number = (n) => n.toLocaleString('en-US')
const when = (ms) => (Number.isFinite(ms) && Math.abs(ms) <= 8.64e15 ? new Date(ms).toISOString() : String(ms))

function bytes(n) {
  const units = ['B', 'KB', 'MB', 'GB', 'TB']
  let value = n
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(1)} ${units[unit]}`
}

const fileSize = (path) => {
  try {
    return fs.statSync(path).size
  } catch {
    return 0
  }
}

/** Label / value lines, the labels padded to one width. */
function table(pairs) {
  const width = Math.max(...pairs.map(([label]) => label.length))
  return pairs.map(([label, value]) => `${label.padEnd(width)}  ${value}`).join('\n')
}

async function inspect({ db }, options) {
  const info = await withStore(db, true, (queue) => JSON.parse(queue[NATIVE]().inspect()))
  const report = { file: db, fileBytes: fileSize(db), walBytes: fileSize(`${db}-wal`), ...info }
  if (options.json) return printJson(report)
  const end = (e) => (e ? `#${e.id}  ${when(e.datetime)}` : '(none)')
  const pending = info.pendingEvents === null
    ? '(no pending_events table)'
    : info.pendingEvents.map((p) => `${p.status} ${number(p.count)}`).join(', ') || '(none)'
  print(table([
    ['file', db],
    ['events', number(info.events)],
    ['first', end(info.first)],
    ['last', end(info.last)],
    ['file size', `${bytes(report.fileBytes)} (${number(info.pageCount)} pages of ${info.pageSize} bytes, ${number(info.freelistCount)} free)`],
    ['WAL size', bytes(report.walBytes)],
    ['journal mode', info.journalMode],
    ['indexes', info.indexes.join(', ') || '(none)'],
    ['pending events', pending],
  ]))
  if (info.topCmds.length > 0) {
    print(`\ntop commands\n${table(info.topCmds.map((c) => [`  ${c.cmd}`, number(c.count)]))}`)
  }
  if (info.consumers !== null && info.consumers.length > 0) {
    const rows = info.consumers.map((c) => [`  ${c.name}${c.size > 1 ? ` (member ${c.member} of ${c.size})` : ''}`, `position #${c.position}, lag ${number(c.lag)}`])
    print(`\nconsumers\n${table(rows)}`)
  }
}

function formatRow(row) {
  const parts = [`#${row.id}`, when(row.datetime), row.cmd]
  if (row.user) parts.push(`user=${row.user}`)
  if (row.correlation_id !== null) parts.push(`correlation=${row.correlation_id}`)
  if (row.causation_id !== null) parts.push(`causation=#${row.causation_id}`)
  parts.push(JSON.stringify(row.data))
  return parts.join('  ')
}

async function tail({ db }, options) {
  const count = integer(options.lines, 'lines', 0) ?? 20
  const filter = { cmd: options.cmd, user: options.user, correlationId: options.correlation }
  await withStore(db, true, async (queue) => {
    const native = queue[NATIVE]()
    const start = count > 0 ? native.tailStart(filter, count) : 0
    if (start === 0 && !options.follow) return
    const startId = start === 0 ? (queue.getLastRow()?.id ?? 0) + 1 : start
    const controller = new AbortController()
    const stop = () => controller.abort()
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
    try {
      const stream = queue.streamEvents({ ...filter, startId, follow: Boolean(options.follow), signal: controller.signal })
      for await (const rows of stream) {
        print(rows.map((row) => (options.json ? JSON.stringify(row) : formatRow(row))).join('\n'))
      }
    } finally {
      process.off('SIGINT', stop)
      process.off('SIGTERM', stop)
    }
  })
}

/** Writes `text` to `out`, waiting when it asks to (a slow pipe or disk). */
async function write(out, text) {
  if (!out.write(text)) await once(out, 'drain')
}

/** Lines are written this many at a time: one write per line costs more than the export. */
const LINES_PER_WRITE = 1000

async function exportCommand({ db }, options) {
  const from = integer(options.from, 'from', 0) ?? 0
  const to = integer(options.to, 'to', 0) ?? null
  await withStore(db, true, async (queue) => {
    const total = queue[NATIVE]().countBetween(from, to ?? Number.MAX_SAFE_INTEGER)
    const out = options.out ? fs.createWriteStream(options.out) : process.stdout
    const bar = new ProgressBar('export', 'events')
    let done = 0
    let chunk = ''
    for await (const line of queue.exportEvents({ from, to })) {
      chunk += line
      if (++done % LINES_PER_WRITE === 0) {
        await write(out, chunk)
        chunk = ''
        bar.update(done, total)
      }
    }
    await write(out, chunk)
    bar.update(done, total)
    bar.clear()
    if (out !== process.stdout) {
      out.end()
      await once(out, 'close')
    }
  })
}

/** How many non-empty lines `file` holds: the total the progress bar counts towards. */
async function countLines(file) {
  let lines = 0
  let last = 10
  for await (const chunk of fs.createReadStream(file)) {
    for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) lines++
    last = chunk[chunk.length - 1]
  }
  return last === 10 ? lines : lines + 1
}

async function importCommand({ db, file }, options) {
  if (!fs.existsSync(file)) throw new Failure(`no such file: ${file}`)
  const bar = new ProgressBar('import', 'events')
  const total = process.stderr.isTTY ? await countLines(file) : null
  const started = Date.now()
  const imported = await withStore(db, false, (queue) => queue.importEvents(fs.createReadStream(file), {
    keepIds: Boolean(options['keep-ids']),
    onProgress: ({ done }) => bar.update(done, total),
  }))
  bar.clear()
  const seconds = (Date.now() - started) / 1000
  if (options.json) return printJson({ imported, seconds })
  print(`imported ${number(imported)} events into ${db} in ${seconds.toFixed(1)} s`)
}

async function backup({ db, dest }, options) {
  const bar = new ProgressBar('backup', 'pages')
  const result = await withStore(db, true, (queue) => queue.backup(dest, { onProgress: ({ done, total }) => bar.update(done, total) }))
  bar.clear()
  if (options.json) return printJson({ destination: dest, pages: result.totalPages, bytes: fileSize(dest) })
  print(`backed up ${db} to ${dest}: ${number(result.totalPages)} pages, ${bytes(fileSize(dest))}`)
}

async function check({ db }, options) {
  const report = await withStore(db, true, (queue) => ({
    integrity: queue.integrityCheck(),
    schema: 'ok',
    indexes: queue.getIndexes(),
    indexProblems: queue[NATIVE]().indexProblems(),
  }))
  const ok = report.integrity.length === 1 && report.integrity[0] === 'ok' && report.indexProblems.length === 0
  if (options.json) printJson({ ok, ...report })
  else {
    print(table([
      ['integrity', report.integrity.join('; ')],
      ['schema', report.schema],
      ['indexes', `${report.indexes.join(', ') || '(none)'}${report.indexProblems.length ? ` (${report.indexProblems.join('; ')})` : ' (ok)'}`],
    ]))
  }
  if (!ok) process.exitCode = 1
}

async function maintain({ db }, options) {
  // The checkpoint last: VACUUM in WAL mode writes the rebuilt file into the WAL first.
  const order = ['optimize', 'vacuum', 'checkpoint']
  const chosen = order.filter((step) => options[step])
  const steps = chosen.length > 0 ? chosen : order
  const sizes = () => ({ file: fileSize(db), wal: fileSize(`${db}-wal`) })
  const report = await withStore(db, false, (queue) => steps.map((step) => {
    const before = sizes()
    const reported = queue[step]()
    return { step, before, after: sizes(), reported: reported ?? null }
  }))
  if (options.json) return printJson(report)
  for (const { step, before, after, reported } of report) {
    const change = `file ${bytes(before.file)} → ${bytes(after.file)}, WAL ${bytes(before.wal)} → ${bytes(after.wal)}`
    const extra = step === 'checkpoint' && reported && reported.busy ? ' (busy: another connection held it back)' : ''
    print(`${step}: ${change}${extra}`)
  }
}

async function metrics({ db }) {
  process.stdout.write(await withStore(db, true, (queue) => queue.metricsText()))
}

function parse(command, name, args) {
  let parsed
  try {
    parsed = parseArgs({ args, options: { ...command.options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true })
  } catch (err) {
    // Node's messages go on to explain `--`; the first sentence is the one line we print.
    throw new UsageError(err.message.split('\n')[0].split('. ')[0])
  }
  if (parsed.values.help) return null
  const { positionals } = parsed
  if (positionals.length < command.positionals.length) {
    throw new UsageError(`missing <${command.positionals[positionals.length]}>`)
  }
  if (positionals.length > command.positionals.length) throw new UsageError(`unexpected argument '${positionals[command.positionals.length]}'`)
  const named = Object.fromEntries(command.positionals.map((key, i) => [key, positionals[i]]))
  return { named, values: parsed.values }
}

async function main(argv) {
  const [name, ...args] = argv
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(mainHelp())
    return
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : null
  if (!command) throw new UsageError(`unknown command '${name}' (commands: ${Object.keys(COMMANDS).join(', ')})`)
  try {
    const parsed = parse(command, name, args)
    if (parsed === null) {
      process.stdout.write(commandHelp(command))
      return
    }
    await command.run(parsed.named, parsed.values)
  } catch (err) {
    if (err instanceof UsageError) err.message = `${name}: ${err.message} (see eventlite ${name} --help)`
    throw err
  }
}

main(process.argv.slice(2)).catch((err) => {
  const message = String(err && err.message ? err.message : err).split('\n')[0]
  const code = err && typeof err.code === 'string' ? `${err.code}: ` : ''
  process.stderr.write(`eventlite: ${code}${message}\n`)
  process.exitCode = err instanceof UsageError ? 2 : 1
})
