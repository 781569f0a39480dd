// Compiled (never run) by `npm run test:types`: the public types must describe every call the
// README shows, under --strict, with neither the DOM library nor @types/node.
import { initQueue, eventCallbacks, type EventRow, type Page, type CacheStats, type WriteMetrics, type Consumer, type ConsumerInfo, type VersionConflictError } from '../..'
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
const versioned = q.storeBulk([{ cmd: 'x', correlationId: 'o', expectedVersion: q.getStreamVersion('o'), idempotencyKey: 'k' }])
const repeated: boolean = versioned[0].duplicate === true
const conflict = { code: 'ERR_VERSION_CONFLICT', correlationId: 'o', expectedVersion: 1, actualVersion: 2 } as VersionConflictError
async function project() {
  const consumer: Consumer = q.consume('p', { batchSize: 10, follow: false, filter: { cmd: 'x' }, group: { member: 0, size: 2 } })
  for await (const batch of consumer) {
    batch.forEach((r) => r.id)
    consumer.commit()
  }
  const position: number = consumer.position
  const consumers: ConsumerInfo[] = q.getConsumers()
  q.resetConsumer('p', position)
  void consumers
}
q.reset?.()
q.close()
void [row, out, next, stats, metrics, lineage, run, repeated, conflict, project]
