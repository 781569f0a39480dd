'use strict'
// `npm run bench`: the benchmark bench/README.md describes. Runs bench/workload.js under
// Node and under Bun (node_modules/.bin/bun, when present), each in processes of its own,
// prints the machine, one table per runtime (ours, raw, ratio, target, pass or MISS) and the
// index-cost table, and writes the figures to bench/results/latest.json. It reports; it is
// not a test: a missed target is printed and the exit code stays 0. It is 1 only when the
// workload itself failed.
//
// Options, as flags or environment variables:
//   --smoke            BENCH_SMOKE=1       a few hundred events per figure and 1 round, in
//                                          seconds, written to bench/results/smoke.json
//   --rounds N         BENCH_ROUNDS=N      rounds per figure; the median is reported (default 5)
//   --only a,b         BENCH_ONLY=a,b      only these figures (the names of figures.js, indexCost,
//                                          asyncScaling or streamCost)
//   --runtime NAME     BENCH_RUNTIME=NAME  only node, or only bun
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { parseArgs } = require('node:util')
const { FIGURES, targetOf, INDEX_COST, ASYNC_SCALING, STREAM_COST, STREAM_COST_TARGET, RSS_FIGURE, parseOnly, parseRounds } = require('./figures')

const ROOT = path.join(__dirname, '..')
const WORKLOAD = path.join(__dirname, 'workload.js')
const RESULTS = path.join(__dirname, 'results')
const DEFAULT_ROUNDS = 5

const RUNTIMES = {
  // --expose-gc: the workload collects garbage before each timed run and before the stream.
  node: { label: 'Node', command: process.execPath, flags: ['--expose-gc'] },
  bun: { label: 'Bun', command: path.join(ROOT, 'node_modules', '.bin', 'bun'), flags: [] },
}

function settings() {
  const { values } = parseArgs({
    options: {
      smoke: { type: 'boolean' },
      rounds: { type: 'string' },
      only: { type: 'string' },
      runtime: { type: 'string' },
    },
  })
  const env = process.env
  const smoke = values.smoke ?? ['1', 'true'].includes(env.BENCH_SMOKE)
  const runtime = values.runtime ?? env.BENCH_RUNTIME
  if (runtime !== undefined && !(runtime in RUNTIMES)) {
    throw new RangeError(`--runtime must be ${Object.keys(RUNTIMES).join(' or ')}, got ${runtime}`)
  }
  return {
    smoke,
    rounds: parseRounds(values.rounds ?? env.BENCH_ROUNDS, smoke ? 1 : DEFAULT_ROUNDS),
    names: parseOnly(values.only ?? env.BENCH_ONLY),
    runtimes: runtime ? [runtime] : Object.keys(RUNTIMES),
  }
}

/**
 * Runs the workload under one runtime and returns what it wrote. The RSS figure gets a process
 * of its own, so that the heap the other figures grew cannot hide what streaming adds.
 */
function runWorkload(runtime, { names, rounds, smoke }) {
  const { command, flags } = RUNTIMES[runtime]
  const groups = [names.filter((n) => n !== RSS_FIGURE), names.filter((n) => n === RSS_FIGURE)]
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'eventlite-bench-out-')), 'result.json')
  const merged = { figures: {} }
  try {
    for (const group of groups.filter((g) => g.length > 0)) {
      const args = [...flags, WORKLOAD, '--out', out, '--rounds', String(rounds), '--only', group.join(',')]
      if (smoke) args.push('--smoke')
      const child = spawnSync(command, args, { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] })
      if (child.error || child.status !== 0) {
        throw new Error(`the ${runtime} workload failed (${child.error ? child.error.message : `exit ${child.status ?? child.signal}`})`)
      }
      const { figures, ...rest } = JSON.parse(fs.readFileSync(out, 'utf8'))
      Object.assign(merged, rest)
      Object.assign(merged.figures, figures)
    }
  } finally {
    fs.rmSync(path.dirname(out), { recursive: true, force: true })
  }
  return merged
}

/** The pass/fail of one figure on `runtime`: 'pass', 'MISS', or 'n/a' when ours was not measured. */
function verdict(figure, entry, runtime) {
  const { ratio, max } = targetOf(figure, runtime)
  if (max !== undefined) return entry.ours === null ? 'n/a' : entry.ours <= max ? 'pass' : 'MISS'
  return entry.ratio === null ? 'n/a' : entry.ratio >= ratio ? 'pass' : 'MISS'
}

const targetText = ({ ratio, max }) => (max !== undefined ? `≤ ${max} MB` : `≥ ${ratio.toFixed(1)}×`)
const rate = (n) => (n === null || n === undefined ? 'n/a' : Math.round(n).toLocaleString('en-US'))
const figureValue = (figure, n) => (figure.unit === 'MB' ? (n === null ? 'n/a' : `${n.toFixed(1)} MB`) : rate(n))

function table(header, rows) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
  const line = (cells) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ')
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}

function figureTable(result, runtime) {
  const rows = FIGURES.filter((f) => f.name in result.figures).map((figure) => {
    const entry = result.figures[figure.name]
    return [
      figure.name,
      figureValue(figure, entry.ours),
      'raw' in entry ? figureValue(figure, entry.raw) : '—',
      'ratio' in entry ? (entry.ratio === null ? 'n/a' : `${entry.ratio.toFixed(2)}×`) : '—',
      entry.ratioRange ? entry.ratioRange.map((r) => r.toFixed(2)).join('–') : '',
      targetText(targetOf(figure, runtime)),
      verdict(figure, entry, runtime),
    ]
  })
  return table(['figure', 'ours', 'raw', 'ratio', 'rounds', 'target', 'result'], rows)
}

function indexCostTable(indexCost) {
  const core = indexCost.core
  const percent = (n) => (n < 10 ? n.toFixed(1) : Math.round(n))
  const share = (n, base) => (n === null || !base ? '' : ` (${percent((n / base) * 100)} %)`)
  const rows = Object.values(indexCost).map((set) => [
    set.label,
    String(set.indexes),
    set.wal ? 'WAL' : 'DELETE',
    rate(set.store_eps) + share(set.store_eps, core && core.store_eps),
    rate(set.storeBulk_eps) + share(set.storeBulk_eps, core && core.storeBulk_eps),
  ])
  return table(['index set', 'indexes', 'journal', 'store() events/s', 'storeBulk() events/s'], rows)
}

function asyncScalingTable(scaling) {
  const ms = (n) => n.toFixed(2)
  const rows = Object.values(scaling).map((s) => [s.producers.toLocaleString('en-US'), rate(s.eps), ms(s.p50Ms), ms(s.p99Ms)])
  return table(['producers', 'events/s', 'p50 ms', 'p99 ms'], rows)
}

const percent = (share) => `${share >= 0 ? '+' : ''}${(share * 100).toFixed(1)} %`

function streamCostTable(streamCost) {
  const rows = Object.values(streamCost).map((entry) => [
    entry.streamLength.toLocaleString('en-US'),
    ...['store_eps', 'storeBulk_eps'].flatMap((kind) => [rate(entry[kind].plain), rate(entry[kind].expected), percent(entry[kind].cost)]),
  ])
  return table(['stream length', 'store() without', 'with', 'cost', 'storeBulk() without', 'with', 'cost'], rows)
}

/** The appends with expectedVersion that cost more than the target allows, as lines of the misses. */
function streamCostMisses(runtime, streamCost) {
  return Object.values(streamCost).flatMap((entry) => ['store_eps', 'storeBulk_eps']
    .filter((kind) => entry[kind].cost > STREAM_COST_TARGET.maxCost)
    .map((kind) => `${runtime} ${STREAM_COST} ${kind} at ${entry.streamLength} events: ${percent(entry[kind].cost)}, target ≤ +${STREAM_COST_TARGET.maxCost * 100} %`))
}

function machine() {
  const cpus = os.cpus()
  return {
    cpu: cpus.length > 0 ? cpus[0].model : 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    date: new Date().toISOString(),
  }
}

/** The 1-minute load average: other work on the machine shows up as noise in the figures. */
const load = () => Math.round(os.loadavg()[0] * 100) / 100

function main() {
  const options = settings()
  const started = Date.now()
  const output = { machine: { ...machine(), rounds: options.rounds, smoke: options.smoke, load: { start: load() }, runtimes: {} } }
  let failed = false
  for (const runtime of options.runtimes) {
    if (!fs.existsSync(RUNTIMES[runtime].command)) {
      console.log(`\n${RUNTIMES[runtime].label}: not installed at ${path.relative(ROOT, RUNTIMES[runtime].command)}; its figures are skipped.`)
      failed ||= options.runtimes.length === 1
      continue
    }
    try {
      const result = runWorkload(runtime, options)
      output[runtime] = {
        ...result.figures,
        ...(result.indexCost ? { [INDEX_COST]: result.indexCost } : {}),
        ...(result.asyncScaling ? { [ASYNC_SCALING]: result.asyncScaling } : {}),
        ...(result.streamCost ? { [STREAM_COST]: result.streamCost } : {}),
      }
      output.machine.runtimes[runtime] = { version: result.version, rawDriver: result.driver, ...(result.pgDriver ? { pgDriver: result.pgDriver } : {}) }
    } catch (err) {
      console.error(`\n${err.message}`)
      failed = true
    }
  }
  output.machine.load.end = load()
  report(output)
  const file = path.join(RESULTS, options.smoke ? 'smoke.json' : 'latest.json')
  fs.mkdirSync(RESULTS, { recursive: true })
  fs.writeFileSync(file, JSON.stringify(output, null, 2) + '\n')
  console.log(`\nWritten to ${path.relative(ROOT, file)} in ${Math.round((Date.now() - started) / 1000)} s.`)
  if (failed) process.exitCode = 1
}

function report(output) {
  const m = output.machine
  console.log(`\nMachine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, ${m.os}`)
  console.log(`Load average (1 min): ${m.load.start} at the start, ${m.load.end} at the end${Math.max(m.load.start, m.load.end) >= 1 ? ': other work competed for the cores, expect noise' : ''}.`)
  console.log(`Medians of ${m.rounds} round${m.rounds === 1 ? '' : 's'}${m.smoke ? ', smoke sizes (not figures to quote)' : ''}; ratio: median of the per-round ours / raw; rounds: their lowest–highest.`)
  const misses = []
  const missing = []
  for (const runtime of Object.keys(RUNTIMES).filter((r) => output[r])) {
    const { version, rawDriver, pgDriver } = m.runtimes[runtime]
    const { [INDEX_COST]: indexCost, [ASYNC_SCALING]: scaling, [STREAM_COST]: streamCost, ...figures } = output[runtime]
    console.log(`\n${RUNTIMES[runtime].label} ${version}: eventlite-native vs ${rawDriver}${pgDriver ? `; pg… figures vs ${pgDriver}` : ''}`)
    if (Object.keys(figures).length > 0) console.log(figureTable({ figures }, runtime))
    if (indexCost) {
      console.log(`\nIndex cost on ${RUNTIMES[runtime].label} (eventlite-native; % of the core set)`)
      console.log(indexCostTable(indexCost))
    }
    if (scaling) {
      const [first] = Object.values(scaling)
      console.log(`\nopenQueue store() by concurrent producers on ${RUNTIMES[runtime].label} (${first.events.toLocaleString('en-US')} events each; latency from the call to its resolution)`)
      console.log(asyncScalingTable(scaling))
    }
    if (streamCost) {
      console.log(`\nStream cost on ${RUNTIMES[runtime].label} (eventlite-native: events/s appending to one stream of each length, without and with expectedVersion)`)
      console.log(streamCostTable(streamCost))
      misses.push(...streamCostMisses(runtime, streamCost))
    }
    for (const figure of FIGURES.filter((f) => f.name in figures)) {
      const entry = figures[figure.name]
      const outcome = verdict(figure, entry, runtime)
      if (outcome === 'MISS') {
        const target = targetOf(figure, runtime)
        const got = target.max !== undefined ? `${entry.ours.toFixed(1)} MB` : `${entry.ratio.toFixed(2)}×`
        misses.push(`${runtime} ${figure.name}: ${got}, target ${targetText(target)}`)
      }
      if (outcome === 'n/a') missing.push(`${runtime} ${figure.name} (${entry.reason ?? 'the queue lacks the method'})`)
    }
  }
  console.log('')
  if (misses.length > 0) console.log(`TARGETS MISSED (${misses.length}):\n  ${misses.join('\n  ')}`)
  else console.log('Every measured target holds.')
  if (missing.length > 0) console.log(`Not measured:\n  ${missing.join('\n  ')}`)
}

try {
  main()
} catch (err) {
  console.error(err.message)
  process.exitCode = 1
}
