// Compiled (never run) by `npm run test:types`: the public types must describe every call
// docs/api.md shows, under --strict, with neither the DOM library nor @types/node.
import { initQueue, openQueue, eventCallbacks, type EventRow, type Page, type CacheStats, type WriteMetrics, type PendingEventRow, type PendingStatus, type ErrorCode, type AsyncEventQueue, type AsyncConsumer, type Consumer, type ConsumerInfo, type VersionConflictError, type PostgresError } from '../..'
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
async function operate() {
  const copied: number = (await q.backup('copy.sqlite', { onProgress: ({ done, total }) => done / total })).totalPages
  const lines: string[] = []
  for await (const line of q.exportEvents({ from: 1, to: null })) lines.push(line)
  const imported: number = await q.importEvents(lines, { keepIds: false, onProgress: ({ done }) => done })
  const wal: number = q.checkpoint().walFrames
  const problems: string[] = q.integrityCheck()
  q.optimize()
  q.vacuum()
  const text: string = q.metricsText()
  void [copied, imported, wal, problems, text]
}

// A model may be a class instance; `store` with a model returns what the model returned.
class Account {
  balance = 0
  deposit(data: { amount: number }) {
    this.balance += data.amount
    return this.balance
  }
}
const account = new Account()
const result: unknown = q.store({ cmd: 'deposit', data: { amount: 5 } }, account)
const balance = q.store({ cmd: 'deposit', data: { amount: 5 } }, account, eventCallbacks.void) as number | undefined
// @ts-expect-error with a model, the result is the model's, not a row
const notARow: EventRow | undefined = q.store({ cmd: 'deposit', data: { amount: 5 } }, account)
const stored: EventRow | undefined = q.store({ cmd: 'x' })
const withContext: unknown = q.storeWithContext({ cmd: 'deposit', data: { amount: 1 } }, { correlationId: 'c' }, account)
q.cycleThrough(account, () => {})
q.storeBulk([{ cmd: 'deposit', data: { amount: 1 } }], account)
// Ids as strings of digits, correlation ids as numbers: the reads take them as SQLite compares them.
const byStringId: EventRow | null = q.retrieveByID('7')
const children: EventRow[] = q.getChildEvents('7')
const transaction: EventRow[] = q.getTransaction(7)
void [result, balance, notARow, stored, withContext, byStringId, children, transaction]
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
async function runAsync() {
  const aq: AsyncEventQueue = await openQueue({ dbName: ':memory:', busyTimeout: 100 })
  const pq: AsyncEventQueue = await openQueue({ url: 'postgres://app@db/events', schema: 'billing', poolSize: 4, connectTimeout: 5000 }).catch((err: PostgresError) => {
    const state: string | undefined = err.pgCode
    throw new Error(`${err.code} ${state}`)
  })
  for await (const batch of await pq.consume('projection', { group: { member: 0, size: 3 } })) void batch.length
  const lagging: number[] = (await pq.getConsumers()).map((c) => c.lag)
  await pq.resetConsumer('projection', 0)
  const pgVersion: number = await pq.getStreamVersion('order-1')
  const pgPage: Page = await pq.getEventsInTimeRangePaginated(0, new Date(), { cursor: 'c', withCount: false })
  void [pq, lagging, pgVersion, pgPage]
  const storedAsync: EventRow | undefined = await aq.store({ cmd: 'x' })
  const deposited: unknown = await aq.store({ cmd: 'deposit', data: { amount: 5 } }, account)
  const bulk = await aq.storeBulk([{ cmd: 'y' }], { y: (d: unknown) => d })
  const asyncPage: Page = await aq.getEventsByCmdPaginated('x', { limit: 5 })
  const commits: number = (await aq.getMetrics()).commitsTotal
  const asyncVersion: number = await aq.getStreamVersion('o')
  const asyncRepeat: boolean = (await aq.storeBulk([{ cmd: 'x', correlationId: 'o', expectedVersion: asyncVersion, idempotencyKey: 'k' }]))[0].duplicate === true
  const asyncConsumer: AsyncConsumer = aq.consume('p', { follow: false, group: { member: 0, size: 1 } })
  for await (const batch of asyncConsumer) await asyncConsumer.commit().then(() => batch.length)
  const asyncConsumers: ConsumerInfo[] = await aq.getConsumers()
  await aq.resetConsumer('p', asyncConsumer.position)
  void [asyncRepeat, asyncConsumers]
  for await (const batch of aq.streamEvents({ follow: false })) batch.forEach((r) => r.id)
  await aq.cycleThrough({ _queries: {} }, () => {}, eventCallbacks.void, { start: 1 })
  aq._cb = eventCallbacks.error
  const pages: number = (await aq.backup('copy.sqlite')).totalPages
  for await (const line of aq.exportEvents({ from: 1 })) await aq.importEvents([line])
  const healthy: string[] = await aq.integrityCheck()
  const scraped: string = await aq.metricsText()
  void [pages, healthy, scraped, await aq.checkpoint(), await aq.optimize(), await aq.vacuum()]
  await aq.close()
  void [storedAsync, deposited, bulk, asyncPage, commits]
}
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
const unreadable: ErrorCode[] = ['ERR_CORRUPT_ROW', 'ERR_ROW_TOO_LARGE']
const onPostgres: ErrorCode[] = ['ERR_CONNECTION', 'ERR_POSTGRES', 'ERR_NOT_SUPPORTED']
q.close()
void [row, out, next, stats, metrics, lineage, run, operate, waiting, ready, executed, expired, cancelled, byCorrelation, unreadable, onPostgres, repeated, conflict, project]
