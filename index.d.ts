// Type definitions for eventlite-native. The contract they describe is docs/api.md.

/** SQLite's `synchronous` setting. */
export type SynchronousMode = 'OFF' | 'NORMAL' | 'FULL' | 'EXTRA'

/** Which optional indexes exist. `true` creates, an explicit `false` drops, a key left out keeps its default. */
export interface IndexOptions {
  /** `idx_correlation_id`; default `true`. */
  correlation_id?: boolean
  /** `idx_causation_id`; default `true`. */
  causation_id?: boolean
  /** `idx_cmd`; default `false`. */
  cmd?: boolean
  /** `idx_user`; default `false`. */
  user?: boolean
  /** `idx_datetime`; default `false`. */
  datetime?: boolean
  /** `idx_version`; default `false`. */
  version?: boolean
  /** `idx_composite_correlation_cmd` on `(correlation_id, cmd)`; default `false`. */
  correlation_cmd?: boolean
  /** `idx_composite_user_datetime` on `(user, datetime)`; default `false`. */
  user_datetime?: boolean
}

/** The query cache behind `retrieveByIDCached` and `getTransactionCached`. */
export interface CacheOptions {
  /** Default `true`. */
  enabled?: boolean
  /** Entries kept, at least 1. Default `1000`. */
  maxSize?: number
  /** Milliseconds an entry lives, at least 1. Default `300000`. */
  ttl?: number
}

export interface QueueOptions {
  /** File path; missing parent folders are created. `":memory:"` gives a private in-memory store. Default `"data/events.sqlite"`. */
  dbName?: string
  /** `journal_mode=WAL` when `true` (the default), the rollback journal (`DELETE`) when `false`. */
  WAL?: boolean
  /** Default `'NORMAL'` with WAL, `'FULL'` without. Lower case is accepted. */
  synchronous?: SynchronousMode | Lowercase<SynchronousMode>
  /** Milliseconds a writer waits on a lock held by another connection or process; integer ≥ 0. Default `5000`. */
  busyTimeout?: number
  indexes?: IndexOptions
  cache?: CacheOptions
  /** The timestamp stored with each event, called once per stored event, in order. Must return an integer. Default `Date.now`. */
  datetime?: () => number
  /** Drop and recreate the event table when opening. Default `false`. */
  reset?: boolean
  /** Adds `reset()` to the queue. Default `false`. */
  risky?: boolean
  /** Accepted and ignored, for EventLite compatibility. */
  init?: unknown
  /** Accepted and ignored, for EventLite compatibility. */
  hash?: unknown
}

/**
 * `openQueue`'s options for PostgreSQL 13 or newer (see docs/postgres.md). The SQLite-only
 * options (`dbName`, `WAL`, `synchronous`, `busyTimeout`, `reset`, `risky`) are refused with
 * `ERR_INVALID_OPTION`.
 */
export interface PostgresQueueOptions {
  /** `postgres://user:pass@host:port/db`, or a libpq key=value connection string; `sslmode` (disable … verify-full) and `sslrootcert` as libpq reads them (TLS by rustls). */
  url: string
  /** The schema of the queue's tables, created when missing; 1 to 63 bytes. Default `'public'`. */
  schema?: string
  /** Connections open at once, the writer's included; 1 to 1000. Default `10`. */
  poolSize?: number
  /** Milliseconds connecting (TCP, TLS, authentication) may take before `ERR_CONNECTION`. Default `10000`. */
  connectTimeout?: number
  indexes?: IndexOptions
  cache?: CacheOptions
  /** As `QueueOptions.datetime`. */
  datetime?: () => number
}

/** A connection that could not be made or was lost (`ERR_CONNECTION`), or a statement the server refused (`ERR_POSTGRES`). */
export interface PostgresError extends Error {
  code: 'ERR_CONNECTION' | 'ERR_POSTGRES'
  /** The SQLSTATE, when the server sent one (`'28P01'` for a wrong password). */
  pgCode?: string
}

/**
 * An event id as the reads take it: an integer, or a string of digits (SQLite compares the two
 * alike). Anything else matches no event: a read by id answers `null` or `[]`.
 */
export type EventId = number | string | bigint

/** A correlation id as the reads take it: a string, or a number, which SQLite compares as its text. */
export type CorrelationKey = string | number

/** A stored event, as every read returns it. */
export interface EventRow<Data = any, Metadata = any> {
  id: number
  version: number
  /** What the `datetime` option returned when the event was stored. */
  datetime: number
  user: string | null
  ip: string | null
  cmd: string
  data: Data
  correlation_id: string | null
  causation_id: number | null
  metadata: Metadata
}

/** What `store` and `storeBulk` take. */
export interface EventInput<Data = any, Metadata = any> {
  /** Required, non-empty. */
  cmd: string
  /** Any JSON-representable value; default `{}`. */
  data?: Data
  /** Default `""`. */
  user?: string | null
  /** Default `""`. */
  ip?: string | null
  /** Positive integer; default `1`. Migrations run from this version up. */
  version?: number
  /** Groups events into one transaction. When neither id is given a new UUID v4 is used. */
  correlationId?: string | null
  /** Id of the event that caused this one; without a `correlationId`, the parent's is inherited. */
  causationId?: number | null
  /** Any JSON-representable value; default `{}`. */
  metadata?: Metadata
  /**
   * Append only if the event's stream (its correlation id, own or inherited) holds exactly this
   * many events; otherwise throw `ERR_VERSION_CONFLICT` and store nothing. An integer >= 0.
   */
  expectedVersion?: number | null
  /**
   * 1 to 256 characters. A later append with the same key stores nothing, runs nothing, and
   * returns the row stored the first time.
   */
  idempotencyKey?: string | null
}

/** What `storeBulk` returns for each event. */
export interface BulkResult {
  row: EventRow
  /** What the model returned; `null` without a model, and for a repeat. */
  result: unknown
  /** Present, `true`, for an event whose `idempotencyKey` was used before: `row` is the event stored then. */
  duplicate?: true
}

/** `ERR_VERSION_CONFLICT`: an event's `expectedVersion` did not hold. */
export interface VersionConflictError extends Error {
  code: 'ERR_VERSION_CONFLICT'
  correlationId: string
  expectedVersion: number
  actualVersion: number
  /** The event's position, for `storeBulk`. */
  index?: number
}

/** The second argument handlers receive. */
export interface EventMeta<Metadata = any> {
  datetime: number
  user: string | null
  ip: string | null
  cmd: string
  id: number
  version: number
  correlationId: string | null
  causationId: number | null
  metadata: Metadata
}

/**
 * What `callbacks._error` and `model._error` receive when executing a row throws (or an async
 * handler rejects), what `callbacks._error` receives for an event without `cmd`
 * (`{ msg: 'No command given; aborting', priority: 2, user, ip, cmd, data }`), and, from
 * `executeReadyEvents`, for a ready event that could not be stored (with `pendingEvent`).
 */
export interface ExecuteError extends Partial<EventRow> {
  msg: string
  error?: unknown
  res?: unknown
  priority?: number
  pendingEvent?: PendingEventRow
}

/**
 * A model, as in EventLite: a handler per cmd (a method named after it), plus optional hooks.
 * Handlers run when an event is stored and again when it is replayed. Any object is a model,
 * a class instance included: the handlers are looked up by name at run time. A handler may be
 * `async`: `store` then returns a Promise of its value, and a rejection goes to the `_error`
 * hooks as a throw does.
 */
export type Model = ModelHooks & { [cmd: string]: any }

/** The hooks a model may have; when present they must have these shapes. */
export interface ModelHooks {
  /** `_migrations[cmd][v - 1]` turns data of version `v` into version `v + 1`. */
  _migrations?: Record<string, Array<(data: any) => any>>
  /** Cmds answered by `get(cmd, data)` instead of a handler of their own. */
  _queries?: Record<string, unknown>
  get?(cmd: string, data: any): unknown
  /** Runs for a cmd with neither a handler nor a query. */
  _default?(data: any, meta: EventMeta): unknown
  /** Runs after each successful execution. */
  _done?(row: EventRow, result: unknown): void
  _error?(errObj: ExecuteError): void
}

/** Called after a row is executed: `callbacks[cmd]`, else `callbacks._default`. */
export interface Callbacks {
  _default?(result: any, row: EventRow): void
  _error?(errObj: ExecuteError): void
  [cmd: string]: ((result: any, row: EventRow) => void) | ((errObj: ExecuteError) => void) | undefined
}

export interface StoreContext {
  /** Wins over the event's own. */
  correlationId?: string
  /** Wins over the event's own. */
  causationId?: number
  /** A synonym of `causationId`. */
  parentEventId?: number
  /** Merged over the event's metadata. */
  metadata?: Record<string, unknown>
}

export interface EventLineage {
  event: EventRow
  parent: EventRow | null
  children: EventRow[]
}

/** What `getCacheStats()` returns. With the cache disabled every counter is `0`. */
export interface CacheStats {
  /** The `cache.enabled` option. */
  enabled: boolean
  /** Entries cached now (rows by id and transactions); entries past their `ttl` are not counted. */
  size: number
  /** The `cache.maxSize` option. */
  maxSize: number
  /** The `cache.ttl` option: milliseconds an entry is served after it was read from SQLite. */
  ttl: number
  /** Cached reads served from the cache. */
  hits: number
  /** Cached reads that went to SQLite: never cached, expired, forgotten, or no such event. */
  misses: number
  /** Entries dropped at `maxSize` to make room, least recently used first. */
  evictions: number
  /** Entries dropped because their `ttl` ran out. */
  expirations: number
  /** `hits / (hits + misses)`; `0` before any lookup. */
  hitRate: number
}

/** Write latency percentiles, in milliseconds, over every write since the queue was opened. */
export interface LatencyPercentiles {
  p50: number
  p95: number
  p99: number
}

/**
 * What `getMetrics()` returns: the writes of this queue since it was opened (all `0` before
 * the first), and what SQLite reports about the file.
 */
export interface WriteMetrics {
  /** Events stored, by `store` and `storeBulk` alike. */
  writesTotal: number
  /** `storeBulk` calls that stored their events. */
  batchWritesTotal: number
  /** Events stored by `storeBulk`. */
  batchEventsTotal: number
  /**
   * Duration of the last `store`'s write, from the core receiving the event to the commit;
   * validation in JavaScript and running the model are not included.
   */
  lastWriteMs: number
  /** Duration of the last `storeBulk`'s write, measured the same way. */
  lastBatchMs: number
  /** Events of the last `storeBulk`. */
  lastBatchSize: number
  /** `batchEventsTotal / batchWritesTotal`; `0` before the first `storeBulk`. */
  avgBatchSize: number
  /** `lastBatchSize` per second of `lastBatchMs`. */
  lastBatchThroughputEps: number
  /**
   * `store`/`storeBulk` calls that stored nothing because of an error: an invalid event
   * (including one without `cmd`), or a write SQLite refused. An error thrown by a model
   * after the commit does not count: the event was stored.
   */
  errorsTotal: number
  /** One sample per `store` or `storeBulk`, from a fixed-size histogram (about 3 % resolution). */
  writeLatencyMs: LatencyPercentiles
  /** `PRAGMA journal_mode` as SQLite reports it, upper case: `'WAL'`, `'DELETE'`, `'MEMORY'`, … */
  journalMode: string
  /** `PRAGMA synchronous` as SQLite reports it. */
  synchronous: SynchronousMode
  /** Events in the file now, whoever stored them. */
  eventCount: number
}

export interface CycleRange {
  /** First id replayed. Default `0`. */
  start?: number
  /** Replay stops before this id; `null` (the default) replays to the end. */
  stop?: number | null
}

/** The last argument of the paginated reads. */
export interface PageOptions {
  /** Rows per page, an integer from 1 to 10,000. Default `100`. */
  limit?: number
  /** Rows of the result to skip, an integer ≥ 0. Default `0`. Not together with a non-zero `cursor`. */
  offset?: number
  /**
   * The `nextCursor` of an earlier page of the same method with the same key arguments: the
   * page after it, found by an index seek however deep it is. `null` or absent: no cursor.
   */
  cursor?: string | null
  /** Count the whole result into `totalCount`. Default `true`. */
  withCount?: boolean
}

/** One page of a paginated read. */
export interface Page<Row = EventRow> {
  events: Row[]
  /** Rows in the whole result; `null` with `withCount: false`. */
  totalCount: number | null
  /** Whether rows follow this page (exact, counted or not). */
  hasMore: boolean
  /** `offset + limit` when rows follow, else `null`. Along a walk by cursor, the rows passed so far. */
  nextOffset: number | null
  /** An opaque cursor for the next page when rows follow, else `null`. */
  nextCursor: string | null
}

/** The options of `streamEvents`. */
export interface StreamOptions {
  /** Rows per batch at most, any integer from 1 (no upper bound, as in EventLite). Default `1000`. */
  batchSize?: number
  /** First id, inclusive. Default `0`. */
  startId?: number
  /** Last id, inclusive; `null` (the default) has no end. */
  endId?: number | null
  /** Only events of this correlation id. Filters combine with AND. */
  correlationId?: string | null
  /** Only events of this user. */
  user?: string | null
  /** Only events of this cmd. */
  cmd?: string | null
  /** After the last event, wait for new ones (appended by this queue or another process) instead of ending. Default `false`. */
  follow?: boolean
  /** Aborting it ends the stream; the loop ends normally. An `AbortController`'s `signal`. */
  signal?: AbortSignalLike | null
}

/** The options of `consume`. */
export interface ConsumeOptions {
  /** Rows per batch at most, an integer from 1 to 10,000. Default `1000`. */
  batchSize?: number
  /** After the last event, wait for new ones (of this queue and other processes). Default `true`; `false` ends at the end of the log. */
  follow?: boolean
  /** Aborting it ends the loop normally. */
  signal?: AbortSignalLike | null
  /** Only matching events; the filters combine with AND. The position passes over the others. */
  filter?: { correlationId?: string | null; user?: string | null; cmd?: string | null } | null
  /**
   * One member of a group of `size` (1 to 1,024) readers that share the consumer: member `m`
   * receives the events whose correlation id's FNV-1a 32-bit hash (of its UTF-8 bytes) modulo
   * `size` is `m`; events without a correlation id go to member 0.
   */
  group?: { member: number; size: number } | null
}

/**
 * A named, durable reader: an async iterator of row batches (single use, like a generator).
 * A batch's position is committed when the loop asks for the next batch (and when the log ends
 * for `follow: false`), never when it is yielded; leaving the loop early commits nothing for
 * the batch in hand.
 * @throws Error with `code: 'ERR_CONSUMER_BUSY'` from the first `next()` while another reader holds the consumer.
 */
export interface Consumer extends AsyncIterableIterator<EventRow[]> {
  readonly name: string
  readonly member: number
  readonly size: number
  /** The last committed id. */
  readonly position: number
  /** Commits the batch yielded last, now. */
  commit(): void
}

/** A consumer of an `AsyncEventQueue`: a {@link Consumer} whose `commit()` returns a Promise. */
export interface AsyncConsumer extends AsyncIterableIterator<EventRow[]> {
  readonly name: string
  readonly member: number
  readonly size: number
  /** The last committed id. */
  readonly position: number
  /** Commits the batch yielded last; resolves once the writer stored its position. */
  commit(): Promise<void>
}

/** One row of `getConsumers()`. */
export interface ConsumerInfo {
  name: string
  member: number
  size: number
  /** The last committed id. */
  position: number
  /** Events in the log after the position (for a group member or a filtered consumer, including those it passes over). */
  lag: number
}

/**
 * What `streamEvents` uses of an `AbortSignal`, spelled out so that these types compile
 * without the DOM library or `@types/node`; a real `AbortSignal` is one.
 */
export interface BackupOptions {
  /** Called after each step with the pages copied so far and the pages in all. */
  onProgress?: (progress: { done: number; total: number }) => void
}

export interface BackupResult {
  totalPages: number
  remainingPages: number
}

export interface ExportRange {
  /** First id (default 0: from the first event). */
  from?: number
  /** Last id (default: the last event). */
  to?: number | null
}

export interface ImportOptions {
  /** Keep the exported ids; the log must be empty. */
  keepIds?: boolean
  /** Called after each batch; `total` is `null` (a stream's length is not known ahead). */
  onProgress?: (progress: { done: number; total: number | null }) => void
}

/** What `PRAGMA wal_checkpoint(TRUNCATE)` reports; -1 frames when the file is not in WAL mode. */
export interface CheckpointResult {
  busy: boolean
  walFrames: number
  checkpointedFrames: number
}

export interface AbortSignalLike {
  readonly aborted: boolean
  addEventListener(type: 'abort', listener: () => void): void
  removeEventListener(type: 'abort', listener: () => void): void
}

/**
 * One condition of a `waitFor`: met when the log holds at least `minCount` events of
 * `correlationId` whose `cmd` is `pattern` (when given) and whose `data` matches `where`.
 * A condition without `correlationId` is never met.
 */
export interface WaitCondition {
  /** The `cmd` the events must have; any cmd when absent. */
  pattern?: string
  /** The transaction whose events count. */
  correlationId?: string
  /**
   * Top-level `data` fields: a value (strict equality), or operators that must all hold
   * (`$eq $ne $gt $gte $lt $lte`, compared as JavaScript compares; any other never matches).
   */
  where?: Record<string, unknown>
  /** How many matching events are needed, a number ≥ 0. Default `1`. */
  minCount?: number
}

/** The `count` group: at least `count` matching events. */
export interface CountCondition extends Omit<WaitCondition, 'minCount'> {
  /** A number ≥ 0. */
  count: number
}

/** What a pending event waits for: every group given must be satisfied. */
export interface WaitFor {
  /** Every condition must be met. */
  all?: WaitCondition[]
  /** At least one condition must be met. */
  any?: WaitCondition[]
  /** At least `count` matching events. */
  count?: CountCondition
  /** Each condition counts as met only once every one before it is. */
  sequence?: WaitCondition[]
}

/** What `storeWhen` takes: a `store` event, plus what it waits for. */
export interface WhenInput<Data = any, Metadata = any> extends EventInput<Data, Metadata> {
  /** Without it, `storeWhen` is `store`. */
  waitFor?: WaitFor | null
  /** Milliseconds (an integer ≥ 0) after which `expirePendingEvents` expires it; `0` or absent: never. */
  timeout?: number | null
}

export type PendingStatus = 'pending' | 'ready' | 'expired' | 'executed' | 'cancelled'

/** A row of `pending_events`, as stored (and as EventLite returns it). */
export interface PendingEventRow {
  id: number
  /** The event to store, as JSON text. */
  event_data: string
  /** The `waitFor`, as JSON text. */
  wait_conditions: string
  /** The `datetime` option's clock when `storeWhen` was called. */
  created_at: number
  /** `created_at + timeout`, or `null`. */
  expires_at: number | null
  correlation_id: string | null
  status: PendingStatus
}

export interface EventQueue {
  /**
   * The model of every write (and of `executeReadyEvents`) that is given none, as in
   * EventLite. Set it; it is not set by default.
   */
  _model?: Model
  /** The callbacks of every write (and of `executeReadyEvents`) that is given none. */
  _cb?: Callbacks

  /**
   * Stores one event and returns the stored row (or, when the queue's `_model` is set, what
   * that model returned). An event with no `cmd` is reported to `callbacks._error`
   * (EventLite's message), nothing is stored and `undefined` is returned. A repeat of an
   * `idempotencyKey` returns the row stored the first time, and runs nothing.
   * @throws TypeError with `code: 'ERR_INVALID_EVENT'` for a field of the wrong type or data JSON cannot hold, and for an event without `cmd` when there are no callbacks to report it to.
   */
  store(event: EventInput, model?: null, callbacks?: Callbacks): EventRow | undefined
  /**
   * Stores one event, then executes it through `model` and returns what the model returned,
   * or `undefined` when the model threw (reported to `callbacks._error` and `model._error`)
   * or the event has no `cmd` (nothing is stored).
   * @throws TypeError with `code: 'ERR_INVALID_EVENT'` for a field of the wrong type or data JSON cannot hold.
   * @throws {@link VersionConflictError} when `expectedVersion` did not hold; nothing is stored.
   */
  store(event: EventInput, model: Model, callbacks?: Callbacks): unknown
  /**
   * Stores every event in one transaction, or none; then executes each row through `model`,
   * in order. `result` is `null` without a model.
   * Events whose `idempotencyKey` was used before are not stored: `{ row, result: null, duplicate: true }`.
   * @throws Error with `code: 'ERR_INVALID_EVENT'` and `index` for an invalid event; nothing is stored.
   * @throws {@link VersionConflictError} when an `expectedVersion` did not hold; nothing is stored.
   */
  storeBulk(events: EventInput[], model?: Model, callbacks?: Callbacks): BulkResult[]
  /** Runs a row through a model and callbacks, as `store` does after storing. */
  execute(row: EventRow, model: Model, callbacks?: Callbacks): unknown
  /** `store` with ids and metadata taken from a context. */
  storeWithContext(event: EventInput, context: StoreContext, model?: null, callbacks?: Callbacks): EventRow | undefined
  storeWithContext(event: EventInput, context: StoreContext, model: Model, callbacks?: Callbacks): unknown
  /**
   * Stores the event once its `waitFor` is satisfied; until then it is a pending event, and
   * `status` is `'pending'`. Without `waitFor`, it is `store` (and returns what `store` returns).
   * @throws TypeError or RangeError with `code: 'ERR_INVALID_EVENT'` for a `waitFor` or `timeout` of the wrong shape, Error with that code for an event without `cmd`; nothing is stored.
   */
  storeWhen(event: WhenInput, model?: Model | null, callbacks?: Callbacks): { pendingEventId: number; status: 'pending' } | unknown
  /** Evaluates every pending event; returns the ready ones, oldest first. */
  checkAllPendingEvents(): PendingEventRow[]
  /**
   * Stores each ready event, oldest first, and marks it executed in the same transaction
   * (so that two processes never both store it). One that cannot be stored stays ready and is
   * reported to `callbacks._error`.
   */
  executeReadyEvents(model?: Model, callbacks?: Callbacks): Array<{ pendingEvent: PendingEventRow; result: unknown }>
  /** Marks expired every pending event whose `expires_at` is before now (the `datetime` clock); returns them. */
  expirePendingEvents(): PendingEventRow[]
  /** `true` (and it is cancelled) when the event was pending; else `false`. */
  cancelPendingEvent(id: number): boolean
  /** The pending events (status `'pending'`) of one correlation id, oldest first. */
  getPendingEventsByCorrelation(correlationId: string): PendingEventRow[]

  /** Replays stored events in id order through `model`, then calls `doneCB`. Memory stays bounded. */
  cycleThrough(model: Model, doneCB?: () => void, whileCB?: Callbacks, range?: CycleRange): void

  retrieveByID(id: EventId): EventRow | null
  getLastRow(): EventRow | null
  /** Events of one correlation id, in id order. */
  getTransaction(correlationId: CorrelationKey): EventRow[]
  /** Events whose `causation_id` is `id`, in id order. */
  getChildEvents(id: EventId): EventRow[]
  getEventLineage(id: EventId): EventLineage | null

  /**
   * Events of one correlation id, id ascending, a page at a time.
   * @throws RangeError with `code: 'ERR_INVALID_OPTION'` for a limit or offset out of range, or a cursor of another query.
   */
  getByCorrelationIdPaginated(correlationId: CorrelationKey, options?: PageOptions): Page
  /** Events whose `causation_id` is `eventId`, id ascending, a page at a time. */
  getChildEventsPaginated(eventId: EventId, options?: PageOptions): Page
  /** Events of one user, newest first (datetime descending, then id descending). */
  getEventsByUserPaginated(user: string, options?: PageOptions): Page
  /** Events of one cmd, newest first (datetime descending, then id descending). */
  getEventsByCmdPaginated(cmd: string, options?: PageOptions): Page
  /** Events with `startTime <= datetime <= endTime`, newest first. Bounds may be `±Infinity` or `Date`s. */
  getEventsInTimeRangePaginated(startTime: number | Date, endTime: number | Date, options?: PageOptions): Page

  /**
   * Batches of events in id order, read off the JavaScript thread, one batch ahead of the loop.
   * Leaving the loop early releases the reader; `close()` ends the stream.
   * @throws TypeError or RangeError with `code: 'ERR_INVALID_OPTION'` for a bad option, when called.
   */
  streamEvents(options?: StreamOptions): AsyncGenerator<EventRow[], void, undefined>

  /**
   * `retrieveByID` served from the query cache: the same result, as a fresh object each call.
   * A missing event is not cached.
   */
  retrieveByIDCached(id: EventId): EventRow | null
  /**
   * `getTransaction` served from the query cache: the same rows, fresh objects each call.
   * Storing an event in the transaction, from this queue or another connection, refreshes it.
   */
  getTransactionCached(correlationId: CorrelationKey): EventRow[]
  /** Empties the query cache. The counters of `getCacheStats()` keep counting. */
  clearCache(): void
  getCacheStats(): CacheStats
  getMetrics(): WriteMetrics

  /** Names of the optional indexes present, sorted. */
  getIndexes(): string[]

  /** How many events the stream of `correlationId` holds, whoever appended them. */
  getStreamVersion(correlationId: string | number): number
  /**
   * A named, durable reader of the log; see {@link Consumer}.
   * @throws TypeError or RangeError with `code: 'ERR_INVALID_OPTION'` for a bad option, when called.
   */
  consume(name: string, options?: ConsumeOptions): Consumer
  /** Every consumer of the file, by name then member. */
  getConsumers(): ConsumerInfo[]
  /**
   * Moves every member of a consumer to `position` (default `0`); a name never used becomes a consumer there.
   * @throws Error with `code: 'ERR_CONSUMER_BUSY'` while a reader holds it.
   */
  resetConsumer(name: string, position?: number): void

  /**
   * Copies the live database into `destination` (replaced if it exists) with SQLite's online
   * backup, a step of pages at a time off the JavaScript thread. The copy holds every event
   * committed before the call, and the queue (and other processes) keep writing meanwhile.
   */
  backup(destination: string, options?: BackupOptions): Promise<BackupResult>
  /** The events with `from <= id <= to` as JSONL lines (each ending in `\n`), in id order. */
  exportEvents(range?: ExportRange): AsyncIterable<string>
  /**
   * Appends the rows of an export, `1000` per transaction; causation ids that point at an
   * imported row follow it to its new id. Strings are lines (one or several), byte chunks
   * (a file stream's Buffers) are cut anywhere, objects are rows. Resolves to the count; a
   * bad row rejects with `code: 'ERR_INVALID_EVENT'`, its `line`, and `imported` (the rows of
   * the batches before it, which were stored).
   */
  importEvents(source: Iterable<string | Uint8Array | object> | AsyncIterable<string | Uint8Array | object>, options?: ImportOptions): Promise<number>
  /** `PRAGMA wal_checkpoint(TRUNCATE)`: copies the WAL into the database and empties it. */
  checkpoint(): CheckpointResult
  /** `PRAGMA optimize`: refreshes the query planner's statistics where they are stale. */
  optimize(): void
  /** `VACUUM`: rebuilds the file without its free pages. */
  vacuum(): void
  /** `PRAGMA integrity_check`: `['ok']`, or the problems SQLite found. */
  integrityCheck(): string[]
  /** `getMetrics()` and `getCacheStats()` in Prometheus' text exposition format. */
  metricsText(): string

  /**
   * Drops and recreates the event table and the pending events' tables, and empties the query
   * cache. Present only on queues opened with `risky: true`.
   */
  reset?(): void
  /** Closes the file. Idempotent; any later call throws `ERR_QUEUE_CLOSED`. */
  close(): void
}

/** Opens (creating if needed) an event queue. */
export declare function initQueue(options?: QueueOptions): EventQueue

/** What `getMetrics()` of an async queue returns: its writer's metrics. */
export interface AsyncWriteMetrics extends WriteMetrics {
  /**
   * Transactions the writer committed: one per group of writes that arrived together, so fewer
   * than the calls when producers write concurrently.
   */
  commitsTotal: number
}

/**
 * The queue `openQueue` resolves to: `EventQueue`'s methods, each returning a Promise of what
 * the synchronous method returns (`execute` stays synchronous, `streamEvents` an async
 * iterable), with the same validation, error codes and rows. Invalid input rejects; nothing
 * throws synchronously. Writes that arrive while another commits share its successor's
 * commit; each call still succeeds or fails on its own, its Promise resolves after its commit,
 * and Promises resolve, and models run, in the order of the calls. See docs/async.md.
 */
export interface AsyncEventQueue {
  /** The model of every write that is given none, as on `EventQueue`. */
  _model?: Model
  /** The callbacks of every write that is given none. */
  _cb?: Callbacks

  /**
   * Resolves, after the commit, with the stored row (or, when the queue's `_model` is set,
   * what that model returned); `undefined` for an event with no `cmd`, reported to
   * `callbacks._error`. Rejects with `ERR_INVALID_EVENT` for an invalid event.
   */
  store(event: EventInput, model?: null, callbacks?: Callbacks): Promise<EventRow | undefined>
  /** Resolves, after the commit, with what `model` returned for the stored row. */
  store(event: EventInput, model: Model, callbacks?: Callbacks): Promise<unknown>
  storeBulk(events: EventInput[], model?: Model, callbacks?: Callbacks): Promise<BulkResult[]>
  /** Synchronous, as it runs user code only. */
  execute(row: EventRow, model: Model, callbacks?: Callbacks): unknown
  storeWithContext(event: EventInput, context: StoreContext, model?: null, callbacks?: Callbacks): Promise<EventRow | undefined>
  storeWithContext(event: EventInput, context: StoreContext, model: Model, callbacks?: Callbacks): Promise<unknown>
  /** Resolves after `doneCB`; the event loop turns between batches of the replay. */
  cycleThrough(model: Model, doneCB?: () => void, whileCB?: Callbacks, range?: CycleRange): Promise<void>

  retrieveByID(id: EventId): Promise<EventRow | null>
  getLastRow(): Promise<EventRow | null>
  getTransaction(correlationId: CorrelationKey): Promise<EventRow[]>
  getChildEvents(id: EventId): Promise<EventRow[]>
  getEventLineage(id: EventId): Promise<EventLineage | null>

  getByCorrelationIdPaginated(correlationId: CorrelationKey, options?: PageOptions): Promise<Page>
  getChildEventsPaginated(eventId: EventId, options?: PageOptions): Promise<Page>
  getEventsByUserPaginated(user: string, options?: PageOptions): Promise<Page>
  getEventsByCmdPaginated(cmd: string, options?: PageOptions): Promise<Page>
  getEventsInTimeRangePaginated(startTime: number | Date, endTime: number | Date, options?: PageOptions): Promise<Page>

  /** As `EventQueue.streamEvents`; a bad option, or a closed queue, rejects the first step. */
  streamEvents(options?: StreamOptions): AsyncGenerator<EventRow[], void, undefined>

  retrieveByIDCached(id: EventId): Promise<EventRow | null>
  getTransactionCached(correlationId: CorrelationKey): Promise<EventRow[]>
  clearCache(): Promise<void>
  getCacheStats(): Promise<CacheStats>
  getMetrics(): Promise<AsyncWriteMetrics>
  getIndexes(): Promise<string[]>

  /** As `EventQueue.getStreamVersion`. */
  getStreamVersion(correlationId: CorrelationKey): Promise<number>
  /**
   * As `EventQueue.consume`; its leases and positions are written by the writer thread. A bad
   * option, or a closed queue, rejects the first step.
   */
  consume(name: string, options?: ConsumeOptions): AsyncConsumer
  getConsumers(): Promise<ConsumerInfo[]>
  /** As `EventQueue.resetConsumer`; rejects with `ERR_CONSUMER_BUSY` while a reader holds the consumer. */
  resetConsumer(name: string, position?: number): Promise<void>

  /** As `EventQueue.backup`. */
  backup(destination: string, options?: BackupOptions): Promise<BackupResult>
  /** As `EventQueue.exportEvents`; a bad option or a closed queue rejects the first step. */
  exportEvents(range?: ExportRange): AsyncIterable<string>
  /** As `EventQueue.importEvents`: each batch of 1,000 commits on the JavaScript thread. */
  importEvents(source: Iterable<string | Uint8Array | object> | AsyncIterable<string | Uint8Array | object>, options?: ImportOptions): Promise<number>
  checkpoint(): Promise<CheckpointResult>
  optimize(): Promise<void>
  vacuum(): Promise<void>
  integrityCheck(): Promise<string[]>
  /** `getMetrics()` (with `eventlite_commits_total`) and `getCacheStats()` in Prometheus' text format. */
  metricsText(): Promise<string>

  /**
   * Resolves once the writes issued before it are committed and settled and the file is
   * closed. Idempotent; any later call rejects with `ERR_QUEUE_CLOSED`.
   */
  close(): Promise<void>
}

/**
 * Opens (creating if needed) an async event queue on the SQLite file: the options of
 * `initQueue` (`risky` adds no `reset()` here). A bad option rejects. Given a `url`, the queue
 * lives on PostgreSQL instead (`PostgresQueueOptions`); a connection that cannot be made
 * rejects with `ERR_CONNECTION`. There, the methods of a SQLite file (`backup`, `exportEvents`,
 * `importEvents`, `checkpoint`, `optimize`, `vacuum`, `integrityCheck`) reject with
 * `ERR_NOT_SUPPORTED`.
 */
export declare function openQueue(options?: QueueOptions | PostgresQueueOptions): Promise<AsyncEventQueue>

/**
 * EventLite's stock callbacks: `void` swallows everything, `error` logs errors, `stub` logs both
 * (through `console.log`, with EventLite's arguments), `done` is a no-op.
 */
export declare const eventCallbacks: {
  stub: Required<Pick<Callbacks, '_default' | '_error'>>
  void: Required<Pick<Callbacks, '_default' | '_error'>>
  error: Required<Pick<Callbacks, '_default' | '_error'>>
  done: () => void
}

/** The `code` of every error this package throws. */
export type ErrorCode =
  | 'ERR_INVALID_EVENT'
  | 'ERR_INVALID_OPTION'
  | 'ERR_INVALID_ARG'
  | 'ERR_QUEUE_CLOSED'
  | 'ERR_SCHEMA_MISMATCH'
  | 'ERR_CORRUPT_ROW'
  | 'ERR_ROW_TOO_LARGE'
  | 'ERR_VERSION_CONFLICT'
  | 'ERR_CONSUMER_BUSY'
  | 'ERR_CONNECTION'
  | 'ERR_POSTGRES'
  | 'ERR_NOT_SUPPORTED'
  | `SQLITE_${string}`
