'use strict'
// `npm run test:docs`: runs every ```js block of README.md and docs/*.md as a program of its
// own under Node, in a fresh folder, where `require('eventlite-native')` (and `import`) finds
// this repository, and fails if any block exits non-zero (a throw, an unhandled rejection).
// A block whose fence reads ```js no-run is a fragment and is skipped.
// `node scripts/check-docs.js --print` also shows what each block printed.
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const root = path.join(__dirname, '..')
const print = process.argv.includes('--print')
/** Long enough for any example on a loaded machine; a block that hangs fails instead of stalling the suite. */
const TIMEOUT_MS = 60000

function documents() {
  const docs = path.join(root, 'docs')
  const files = fs.existsSync(docs) ? fs.readdirSync(docs).filter((f) => f.endsWith('.md')).sort().map((f) => path.join('docs', f)) : []
  return ['README.md', ...files]
}

/** The fenced blocks of a Markdown text: `{ info, line, code }`, `line` being the fence's (1-based). */
function blocks(text) {
  const found = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const open = lines[i].match(/^( {0,3})(`{3,}|~{3,})(.*)$/)
    // A backtick fence's info string holds no backtick (CommonMark): "```` ```js ````" is inline code.
    if (!open || (open[2][0] === '`' && open[3].includes('`'))) continue
    const [, indent, fence, info] = open
    const closing = new RegExp(`^ {0,3}${fence[0]}{${fence.length},}\\s*$`)
    const body = []
    let j = i + 1
    while (j < lines.length && !closing.test(lines[j])) body.push(lines[j++].slice(indent.length))
    found.push({ info: info.trim(), line: i + 1, code: body.join('\n') + '\n' })
    i = j
  }
  return found
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'eventlite-docs-'))
try {
  fs.mkdirSync(path.join(work, 'node_modules'))
  fs.symlinkSync(root, path.join(work, 'node_modules', 'eventlite-native'), 'dir')
  // Examples that stand for another program on the same file use the runtime's raw driver
  // (better-sqlite3, a devDependency), as an application that has it installed would.
  fs.symlinkSync(path.join(root, 'node_modules', 'better-sqlite3'), path.join(work, 'node_modules', 'better-sqlite3'), 'dir')
  let ran = 0
  let skipped = 0
  const failed = []
  for (const doc of documents()) {
    for (const block of blocks(fs.readFileSync(path.join(root, doc), 'utf8'))) {
      const [lang, ...flags] = block.info.split(/\s+/)
      if (lang !== 'js') continue
      if (flags.includes('no-run')) {
        skipped++
        continue
      }
      const where = `${doc}:${block.line}`
      const dir = fs.mkdtempSync(path.join(work, 'block-'))
      const esm = /^\s*(import\s[^(]|export\s)/m.test(block.code)
      const file = path.join(dir, esm ? 'example.mjs' : 'example.js')
      fs.writeFileSync(file, block.code)
      const run = spawnSync(process.execPath, [file], { cwd: dir, encoding: 'utf8', timeout: TIMEOUT_MS })
      ran++
      if (run.status === 0) {
        console.log(`ok ${where}`)
        if (print && run.stdout) console.log(run.stdout.replace(/^/gm, '    ').trimEnd())
      } else {
        failed.push(where)
        const why = run.error ? run.error.message : run.signal ? `killed by ${run.signal}` : `exit ${run.status}`
        console.log(`FAILED ${where} (${why})\n${`${run.stdout}${run.stderr}`.replace(/^/gm, '    ').trimEnd()}`)
      }
    }
  }
  console.log(`docs: ${ran} examples run, ${skipped} fragments skipped${failed.length ? `; failed: ${failed.join(', ')}` : ''}`)
  process.exitCode = failed.length > 0 || ran === 0 ? 1 : 0
} finally {
  fs.rmSync(work, { recursive: true, force: true })
}
