// Compiled (never run) by `npm run test:types`: the public types must describe every call the
// README shows, under --strict, with neither the DOM library nor @types/node.
import { initQueue, openQueue, eventCallbacks, type EventRow, type Page, type CacheStats, type WriteMetrics, type AsyncEventQueue } from '../..'
const q = initQueue({ dbName: ':memory:', cache: { maxSize: 10 }, indexes: { cmd: true }, synchronous: 'normal' })
const row = q.store({ cmd: 'x', data: { a: 1 } }) as EventRow | undefined
const out = q.storeBulk([{ cmd: 'y' }], { y: (d: unknown) => d }, eventCallbacks.void)
const page: Page = q.getByCorrelationIdPaginated('c', { limit: 10, withCount: false })
const next = page.nextCursor ? q.getEventsByUserPaginated('u', { cursor: page.nextCursor }) : null
const stats: CacheStats = q.getCacheStats()
const metrics: WriteMetrics = q.getMetrics()
const lineage = q.getEventLineage(1)
async function run() {
  const controller = { aborted: false, addEventListener() {}, removeEventListener() {} }
  for await (const batch of q.streamEvents({ batchSize: 10, follow: false, signal: controller })) batch.forEach((r) => r.id)
}
q.cycleThrough({ _queries: {} }, () => {}, eventCallbacks.error, { start: 1, stop: null })
async function runAsync() {
  const aq: AsyncEventQueue = await openQueue({ dbName: ':memory:', busyTimeout: 100 })
  const stored = (await aq.store({ cmd: 'x' })) as EventRow | undefined
  const bulk = await aq.storeBulk([{ cmd: 'y' }], { y: (d: unknown) => d })
  const asyncPage: Page = await aq.getEventsByCmdPaginated('x', { limit: 5 })
  const commits: number = (await aq.getMetrics()).commitsTotal
  for await (const batch of aq.streamEvents({ follow: false })) batch.forEach((r) => r.id)
  await aq.cycleThrough({ _queries: {} }, () => {}, eventCallbacks.void, { start: 1 })
  await aq.close()
  void [stored, bulk, asyncPage, commits]
}
q.reset?.()
q.close()
void [row, out, next, stats, metrics, lineage, run, runAsync]
