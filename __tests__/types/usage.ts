// Compiled (never run) by `npm run test:types`: the public types must describe every call the
// README shows, under --strict, with neither the DOM library nor @types/node.
import { initQueue, eventCallbacks, type EventRow, type Page, type CacheStats, type WriteMetrics, type PendingEventRow, type PendingStatus } from '../..'
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
q._model = { _queries: {}, ship: (d: { id: number }) => d.id }
q._cb = eventCallbacks.stub
const waiting = q.storeWhen({
  cmd: 'ship', data: { id: 1 }, correlationId: 'o', timeout: 60000,
  waitFor: { all: [{ pattern: 'paid', correlationId: 'o', where: { amount: { $gte: 10 } } }], count: { correlationId: 'o', count: 2 }, sequence: [{ pattern: 'a', correlationId: 'o', minCount: 1 }] },
})
const ready: PendingEventRow[] = q.checkAllPendingEvents()
const executed = q.executeReadyEvents(undefined, { _error: (e) => e.pendingEvent?.id })
const expired: PendingStatus[] = q.expirePendingEvents().map((r) => r.status)
const cancelled: boolean = q.cancelPendingEvent(1)
const byCorrelation = q.getPendingEventsByCorrelation('o').map((r) => JSON.parse(r.event_data) as unknown)
q.reset?.()
q.close()
void [row, out, next, stats, metrics, lineage, run, waiting, ready, executed, expired, cancelled, byCorrelation]
