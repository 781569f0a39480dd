'use strict'
// consume(): named, durable readers of the log. Positions and leases live in the file
// (src/consumer.rs); reading goes through a stream of lib/stream.js (the same reader, woken by
// this queue's appends, polling for other processes', ended by close() or the signal), with a
// group member's partition as one more filter. Unlike streamEvents, a consumer reads no batch
// ahead: the batch in hand is committed when the loop asks for the next one, and only then is
// the next read started.
//
// The synchronous queue (lib/queue.js) and the async one (lib/async-queue.js) share this
// logic; each gives it its operations (see `nativeOperations`): the synchronous queue's answer
// at once, the async queue's writes answer with Promises, from its writer.
const os = require('node:os')
const { randomUUID } = require('node:crypto')
const { coded, describe } = require('./errors')
const { readOptions, checkBoolean, checkInteger } = require('./options')
const { checkFilter, checkSignal } = require('./stream')
const { rowsOfSets } = require('./rows')
const { consumerLeaseMs } = require('./native')
const { defaults } = require('./constants')

const CONSUME_KEYS = ['batchSize', 'follow', 'signal', 'filter', 'group']
const FILTER_KEYS = ['correlationId', 'user', 'cmd']
const GROUP_KEYS = ['member', 'size']
/** Each member of a group has a row of its own, made when the group is first used. */
const MAX_GROUP_SIZE = 1024
/** Renewed three times per lease, so that a renewal that fails (the file busy) has two more chances. */
const RENEW_MS = Math.floor(consumerLeaseMs() / 3)

const HOST = os.hostname()
/** Owner tokens of the leases this process holds now, by any queue. */
const held = new Set()
/** `pid@host/uuid`: enough for another process on this host to tell whether the owner is gone. */
const OWNER = /^(\d+)@(.*)\/[0-9a-f-]{36}$/

const newOwner = () => `${process.pid}@${HOST}/${randomUUID()}`
const noop = () => {}

/**
 * `next(answer)` for the answer of `run()`, or `failed(err)` for its throw or rejection: at
 * once for an answer given at once (the synchronous queue's operations), once it settles for a
 * Promise (the async queue's).
 */
function attempt(run, next, failed) {
  let answer
  try {
    answer = run()
  } catch (err) {
    return failed(err)
  }
  return answer instanceof Promise ? answer.then(next, failed) : next(answer)
}

const rethrow = (err) => {
  throw err
}

/**
 * A synchronous queue's consumer operations, on its native queue (`db()`, which throws once it
 * is closed) and its streams. The async queue takes `position` and `attach`, its reads, from
 * its reader, and has its writer run the rest (lib/async-queue.js):
 * - `answer(run)`: what a method of a consumer returns for `run()`: its result (here), or a
 *   Promise of it, a throw being a rejection (the async queue);
 * - `position(name, member)` → the stored position, or null for a name never used (or a
 *   Promise of it, from a backend whose reads answer later);
 * - `attach(options, signal)` → a reading stream state of lib/stream.js (`Streams.attach`) on
 *   the events from `options.startId` with the filters and partition of `options`, or null;
 * - `acquire(name, member, size, owner, gone)` → the position, or the owner token of the
 *   reader that holds the lease; `commit(name, member, owner, position)`;
 *   `renew(name, member, owner)` → whether `owner` still holds the lease;
 *   `release(name, member, owner)`; `reset(name, position, gone)` → null, or the owner token
 *   of a reader that holds a lease. These write, and may answer with Promises.
 */
function nativeOperations(db, streams) {
  return {
    answer: (run) => run(),
    position: (name, member) => db().consumerPosition(name, member),
    attach: (options, signal) => streams.attach(() => db().stream(options), signal),
    acquire: (name, member, size, owner, gone) => db().consumerAcquire(name, member, size, owner, gone),
    commit: (name, member, owner, position) => db().consumerCommit(name, member, owner, position),
    renew: (name, member, owner) => db().consumerRenew(name, member, owner),
    release: (name, member, owner) => db().consumerRelease(name, member, owner),
    reset: (name, position, gone) => db().resetConsumer(name, position, gone),
  }
}

/**
 * Whether the reader that owns a lease is known to be gone, so that its lease is free before
 * it expires: a process of this host that no longer exists, or a reader of this process that
 * holds the lease no more. An owner on another host, or a process id that the system gave to
 * a new process, counts as alive: its lease frees itself when it expires.
 */
function isGone(owner) {
  const match = OWNER.exec(owner)
  if (match === null || match[2] !== HOST) return false
  const pid = Number(match[1])
  if (pid === process.pid) return !held.has(owner)
  try {
    process.kill(pid, 0)
    return false
  } catch (err) {
    return err.code === 'ESRCH'
  }
}

function argError(message) {
  return coded(TypeError, 'ERR_INVALID_ARG', message)
}

/** `member` undefined: some member of the consumer, as resetConsumer finds it. */
function busyError(name, member, owner) {
  const who = member === undefined ? JSON.stringify(name) : `${JSON.stringify(name)} (member ${member})`
  return coded(Error, 'ERR_CONSUMER_BUSY', `consumer ${who} is being read by another reader (${owner}); one reader per consumer at a time`, { consumer: name, member })
}

function checkName(method, name) {
  if (typeof name !== 'string' || name === '') throw argError(`${method}: name must be a non-empty string, got ${describe(name)}`)
  return name
}

/** `consume`'s options, validated: the native reader's and the ones that stay on this side. */
function consumeOptions(given) {
  const options = given === undefined ? {} : readOptions(given, CONSUME_KEYS, '')
  const { batchSize = defaults.batchSize, follow = true, filter = null, group = null } = options
  const only = filter === null ? {} : readOptions(filter, FILTER_KEYS, 'filter.')
  let member = 0
  let size = 1
  if (group !== null) {
    const g = readOptions(group, GROUP_KEYS, 'group.')
    size = checkInteger(g.size, 'group.size', 1, MAX_GROUP_SIZE)
    member = checkInteger(g.member, 'group.member', 0, size - 1)
  }
  return {
    batchSize: checkInteger(batchSize, 'batchSize', 1, Number.MAX_SAFE_INTEGER),
    follow: checkBoolean(follow, 'follow'),
    signal: checkSignal(options.signal ?? null),
    correlationId: checkFilter(only.correlationId, 'filter.correlationId'),
    user: checkFilter(only.user, 'filter.user'),
    cmd: checkFilter(only.cmd, 'filter.cmd'),
    member,
    size,
  }
}

/**
 * One consumer: an async iterator of row batches (single use, like a generator) with
 * `commit()` and `position`. `ops` are its queue's operations (see `nativeOperations`); `live`
 * the queue's open consumers.
 */
class Consumer {
  #ops
  #live
  #name
  #options
  #owner = null
  #position = 0
  /** The position of the batch yielded last, until it is committed. */
  #inHand = null
  /** Set when the lease went to another reader: this one must stop. */
  #lost = false
  #generator = null

  constructor(ops, live, name, options) {
    this.#ops = ops
    this.#live = live
    this.#name = name
    this.#options = options
    // Unless the lease was taken first: then the lease's position is the newer.
    const read = attempt(() => ops.position(name, options.member), (stored) => {
      if (this.#owner === null) this.#position = stored ?? 0
    }, rethrow)
    // A read answered later that fails: iterating reports what is wrong.
    if (read instanceof Promise) read.catch(noop)
  }

  get name() {
    return this.#name
  }

  get member() {
    return this.#options.member
  }

  get size() {
    return this.#options.size
  }

  /** The last committed id: every event up to it that this consumer is to see was handled. */
  get position() {
    return this.#position
  }

  [Symbol.asyncIterator]() {
    return this
  }

  next() {
    return this.#iterator().next()
  }

  return(value) {
    return this.#iterator().return(value)
  }

  throw(err) {
    return this.#iterator().throw(err)
  }

  #iterator() {
    this.#generator ??= this.#batches()
    return this.#generator
  }

  /** Commits the batch yielded last, if it is not committed yet. */
  commit() {
    return this.#ops.answer(() => {
      const position = this.#inHand
      if (position === null) return undefined
      return attempt(() => this.#store(position), () => {
        if (this.#inHand === position) this.#inHand = null
      }, rethrow)
    })
  }

  #store(position) {
    const { member } = this.#options
    return attempt(() => this.#ops.commit(this.#name, member, this.#owner, position), () => {
      this.#position = position
    }, (err) => {
      if (err.code === 'ERR_CONSUMER_BUSY') this.#lost = true
      throw err
    })
  }

  async * #batches() {
    const { batchSize, follow, signal, correlationId, user, cmd, member, size } = this.#options
    await this.#acquire()
    let state = null
    let timer = null
    try {
      const group = size > 1 ? { groupMember: member, groupSize: size } : {}
      state = this.#ops.attach({ startId: this.#position + 1, batchSize, correlationId, user, cmd, ...group }, signal)
      if (state === null) return
      timer = setInterval(() => this.#renew(state), RENEW_MS)
      if (typeof timer.unref === 'function') timer.unref()
      for (;;) {
        // The loop asked for the next batch: the one in hand is done.
        await this.commit()
        const parts = await state.read()
        this.#checkLease()
        if (parts === null || state.ended) return
        if (parts === '') {
          // Nothing in hand, and every event up to the reader's position was seen or not
          // meant for this consumer: moving the position there costs nothing to redo.
          const passed = state.position()
          if (passed > this.#position) await this.#store(passed)
          if (!follow) return
          await state.idle()
          this.#checkLease()
          if (state.ended) return
          continue
        }
        this.#inHand = state.position()
        yield rowsOfSets(parts)
      }
    } catch (err) {
      // The queue closed under the consumer (a commit, or a read in flight): it ends as a
      // stream does, the batch in hand uncommitted.
      if (err.code !== 'ERR_QUEUE_CLOSED') throw err
    } finally {
      // Leaving the loop early lands here too: the batch in hand stays uncommitted.
      this.#inHand = null
      clearInterval(timer)
      if (state !== null) {
        state.end()
        await state.released
      }
      this.release()
    }
  }

  async #acquire() {
    const owner = newOwner()
    const { member, size } = this.#options
    let gone = []
    for (;;) {
      const got = await this.#ops.acquire(this.#name, member, size, owner, gone)
      if (typeof got === 'number') {
        this.#owner = owner
        this.#position = got
        held.add(owner)
        this.#live.add(this)
        return
      }
      if (gone.length > 0 || !isGone(got)) throw busyError(this.#name, member, got)
      gone = [got]
    }
  }

  #checkLease() {
    if (this.#lost) throw busyError(this.#name, this.#options.member, 'its lease expired and went to another reader')
  }

  #renew(state) {
    const owner = this.#owner
    if (owner === null) return
    attempt(() => this.#ops.renew(this.#name, this.#options.member, owner), (still) => {
      if (still || this.#owner !== owner) return
      this.#lost = true
      state.wake()
    }, noop) // The file was busy, or the queue closed: the lease outlives two more attempts, and close() releases it.
  }

  /** Gives the lease up (the queue's close() calls it). Idempotent. */
  release() {
    const owner = this.#owner
    if (owner === null) return
    this.#owner = null
    held.delete(owner)
    this.#live.delete(this)
    // A lease that cannot be released (the queue closed under a read, the file busy) expires
    // on its own; no reader of this process holds it any more, so another reader of this
    // process takes it at once.
    attempt(() => this.#ops.release(this.#name, this.#options.member, owner), noop, noop)
  }
}

/** The consumers of one queue, over its operations (see `nativeOperations`). */
class Consumers {
  #ops
  #live = new Set()

  constructor(ops) {
    this.#ops = ops
  }

  open(name, options) {
    return new Consumer(this.#ops, this.#live, checkName('consume', name), consumeOptions(options))
  }

  /** `resetConsumer`: every member at `position`, unless a live reader holds one. */
  reset(name, position = 0) {
    const ops = this.#ops
    return ops.answer(() => {
      checkName('resetConsumer', name)
      if (!Number.isSafeInteger(position) || position < 0) {
        throw coded(RangeError, 'ERR_INVALID_ARG', `resetConsumer: position must be an integer id >= 0, got ${describe(position)}`)
      }
      const gone = []
      const reset = () => attempt(() => ops.reset(name, position, [...gone]), (owner) => {
        if (owner === null || owner === undefined) return undefined
        if (gone.includes(owner) || !isGone(owner)) throw busyError(name, undefined, owner)
        gone.push(owner)
        return reset()
      }, rethrow)
      return reset()
    })
  }

  /** Releases every lease; called by the queue's close() before the file closes. */
  close() {
    for (const consumer of [...this.#live]) consumer.release()
  }
}

module.exports = { Consumers, nativeOperations }
