'use strict'
// npm run example: a bank account kept as an event log. Events are stored through a model
// (which keeps the current state), replayed from the log into a fresh model (which arrives at
// the same state), then read back: one transaction, a user's events page by page, and the
// whole log as a stream.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { initQueue, eventCallbacks } = require('..')

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'eventlite-example-'))
const queue = initQueue({ dbName: path.join(dir, 'bank.sqlite') })

function accountModel() {
  const balances = new Map()
  return {
    balances,
    _queries: {},
    _migrations: {},
    open({ account }) {
      balances.set(account, 0)
      return `opened ${account}`
    },
    deposit({ account, amount }) {
      balances.set(account, balances.get(account) + amount)
      return balances.get(account)
    },
    withdraw({ account, amount }) {
      const balance = balances.get(account)
      if (balance < amount) throw new Error(`insufficient funds in ${account}: ${balance} < ${amount}`)
      balances.set(account, balance - amount)
      return balances.get(account)
    },
    _default() {},
    _done() {},
    _error() {},
  }
}

const live = accountModel()
const callbacks = {
  _default(result, row) {
    console.log(`  #${row.id} ${row.cmd.padEnd(8)} -> ${result}`)
  },
  _error(err) {
    console.log(`  refused: ${err.msg}`)
  },
}

console.log('Storing events:')
queue.store({ cmd: 'open', data: { account: 'alice' }, user: 'alice' }, live, callbacks)
const first = queue.getLastRow()
queue.store({ cmd: 'deposit', data: { account: 'alice', amount: 100 }, causationId: first.id }, live, callbacks)
queue.storeBulk([
  { cmd: 'open', data: { account: 'bob' }, user: 'bob' },
  { cmd: 'deposit', data: { account: 'bob', amount: 40 }, user: 'bob' },
  { cmd: 'withdraw', data: { account: 'alice', amount: 30 }, causationId: first.id },
  { cmd: 'withdraw', data: { account: 'bob', amount: 500 }, user: 'bob' },
], live, callbacks)
console.log('  (the refused withdrawal stays in the log: events record what was asked)')

console.log('\nReplaying the log into a fresh model:')
const replayed = accountModel()
queue.cycleThrough(replayed, () => console.log('  replay done'), eventCallbacks.void)
console.log('  live state:    ', Object.fromEntries(live.balances))
console.log('  replayed state:', Object.fromEntries(replayed.balances))

console.log(`\nAlice's transaction (correlation id ${first.correlation_id.slice(0, 8)}…):`)
for (const row of queue.getTransaction(first.correlation_id)) {
  console.log(`  #${row.id} ${row.cmd} ${JSON.stringify(row.data)}${row.causation_id ? ` (caused by #${row.causation_id})` : ''}`)
}

console.log("\nBob's events, two per page, newest first:")
let page = queue.getEventsByUserPaginated('bob', { limit: 2 })
for (let n = 1; ; n++) {
  console.log(`  page ${n} of ${Math.ceil(page.totalCount / 2)}: ${page.events.map((row) => `#${row.id} ${row.cmd}`).join(', ')}`)
  if (!page.nextCursor) break
  page = queue.getEventsByUserPaginated('bob', { limit: 2, cursor: page.nextCursor })
}

async function streamTheLog() {
  console.log('\nThe whole log as a stream, in batches of 4 (read off the JavaScript thread):')
  for await (const batch of queue.streamEvents({ batchSize: 4 })) {
    console.log(`  ${batch.map((row) => `#${row.id} ${row.cmd}`).join(', ')}`)
  }
}

streamTheLog().finally(() => {
  queue.close()
  fs.rmSync(dir, { recursive: true, force: true })
})
