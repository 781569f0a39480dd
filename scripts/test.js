'use strict'
// `npm test`: every stage runs, whether or not an earlier one failed, and the end says which
// failed. Each stage is an npm script of package.json, so it can also be run alone
// (`npm run test:clippy`). `node scripts/test.js rust node` runs only the stages named.
const { spawnSync } = require('node:child_process')

/** In order: the addon first, so that the JavaScript stages test the sources as they are. */
const STAGES = [
  'build', 'test:rust', 'test:fmt', 'test:clippy', 'test:types', 'test:docs', 'test:pack', 'test:bun', 'test:node',
]

/** The npm that runs this script (npm_execpath), so that no shell has to find one. */
function npmRun(script) {
  const npmCli = process.env.npm_execpath
  const [command, args] = npmCli && npmCli.endsWith('.js')
    ? [process.execPath, [npmCli, 'run', script]]
    : ['npm', ['run', script]]
  const run = spawnSync(command, args, { stdio: 'inherit' })
  return run.error ? 1 : run.status ?? 1
}

const wanted = process.argv.slice(2)
const unknown = wanted.filter((name) => !STAGES.includes(name) && !STAGES.includes(`test:${name}`))
if (unknown.length > 0) {
  console.error(`unknown stage ${unknown.join(', ')}; the stages: ${STAGES.join(', ')}`)
  process.exit(2)
}
const stages = wanted.length === 0 ? STAGES : STAGES.filter((s) => wanted.includes(s) || wanted.includes(s.replace(/^test:/, '')))

const failed = []
for (const stage of stages) {
  const started = Date.now()
  const status = npmRun(stage)
  const seconds = ((Date.now() - started) / 1000).toFixed(1)
  console.log(`\n[${stage}] ${status === 0 ? 'passed' : `FAILED (exit ${status})`} in ${seconds} s\n`)
  if (status !== 0) failed.push(stage)
}

if (failed.length > 0) console.log(`failed stages: ${failed.join(', ')}`)
console.log(`stages: ${stages.length - failed.length} passed, ${failed.length} failed`)
process.exitCode = failed.length > 0 ? 1 : 0
