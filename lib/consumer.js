'use strict'
// consume(): named, durable readers of the log. Positions and leases live in the file
// (src/consumer.rs); reading goes through a stream of lib/stream.js (the same reader, woken by
// this queue's appends, polling for other processes', ended by close() or the signal), with a
// group member's partition as one more filter. Unlike streamEvents, a consumer reads no batch
// ahead: the batch in hand is committed when the loop asks for the next one, and only then is
// the next read started.
const os = require('node:os')
const { randomUUID } = require('node:crypto')
const { coded, describe } = require('./errors')
const { readOptions, checkBoolean, checkInteger } = require('./options')
const { checkFilter, checkSignal } = require('./stream')
const { toRows } = require('./rows')
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

/**
 * `then(value)` of a native call's result: at once for a value (SQLite's calls), after it for a
 * Promise (PostgreSQL's), whose result is then a Promise too.
 */
const after = (value, then) => (value instanceof Promise ? value.then(then) : then(value))

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
 * `commit()` and `position`. `db()` is the open native queue (it throws once the queue is
 * closed); `streams` the queue's readers; `live` the queue's open consumers.
 */
class Consumer {
  #db
  #streams
  #live
  #name
  #options
  #owner = null
  #position
  /** The position of the batch yielded last, until it is committed. */
  #inHand = null
  /** Set when the lease went to another reader: this one must stop. */
  #lost = false
  #generator = null

  /** `position`: the consumer's stored position, when the caller read it already (an async backend). */
  constructor(db, streams, live, name, options, position = db().consumerPosition(name, options.member)) {
    this.#db = db
    this.#streams = streams
    this.#live = live
    this.#name = name
    this.#options = options
    this.#position = position ?? 0
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

  /** Commits the batch yielded last, if it is not committed yet (a Promise on an async backend). */
  commit() {
    if (this.#inHand === null) return undefined
    const position = this.#inHand
    this.#inHand = null
    return this.#store(position)
  }

  #store(position) {
    const { member } = this.#options
    const lost = (err) => {
      if (err.code === 'ERR_CONSUMER_BUSY') this.#lost = true
      throw err
    }
    let stored
    try {
      stored = this.#db().consumerCommit(this.#name, member, this.#owner, position)
    } catch (err) {
      lost(err)
    }
    const done = () => {
      this.#position = position
    }
    return stored instanceof Promise ? stored.then(done, lost) : done()
  }

  async * #batches() {
    const { batchSize, follow, signal, correlationId, user, cmd, member, size } = this.#options
    await this.#acquire()
    let state = null
    let timer = null
    try {
      const group = size > 1 ? { groupMember: member, groupSize: size } : {}
      const open = () => this.#db().stream({ startId: this.#position + 1, batchSize, correlationId, user, cmd, ...group })
      state = this.#streams.attach(open, signal)
      if (state === null) return
      timer = setInterval(() => this.#renew(state), RENEW_MS)
      if (typeof timer.unref === 'function') timer.unref()
      for (;;) {
        // The loop asked for the next batch: the one in hand is done. Unless the queue closed
        // meanwhile: then the consumer ends as a stream does, the batch uncommitted.
        try {
          await this.commit()
        } catch (err) {
          if (err.code === 'ERR_QUEUE_CLOSED') return
          throw err
        }
        const text = await state.read()
        this.#checkLease()
        if (text === null || state.ended) return
        if (text === '') {
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
        yield toRows(JSON.parse(text))
      }
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

  /** Takes the lease (a Promise on an async backend). */
  #acquire() {
    const db = this.#db()
    const owner = newOwner()
    const { member, size } = this.#options
    const attempt = (gone) => after(db.consumerAcquire(this.#name, member, size, owner, gone), (got) => {
      if (typeof got === 'number') {
        this.#owner = owner
        this.#position = got
        held.add(owner)
        this.#live.add(this)
        return undefined
      }
      if (gone.length > 0 || !isGone(got)) throw busyError(this.#name, member, got)
      return attempt([got])
    })
    return attempt([])
  }

  #checkLease() {
    if (this.#lost) throw busyError(this.#name, this.#options.member, 'its lease expired and went to another reader')
  }

  #renew(state) {
    if (this.#owner === null) return
    const renewed = (held) => {
      if (!held) {
        this.#lost = true
        state.wake()
      }
    }
    // The file was busy, or the queue closed: the lease outlives two more attempts, and
    // close() releases it.
    const ignore = () => {}
    try {
      const pending = after(this.#db().consumerRenew(this.#name, this.#options.member, this.#owner), renewed)
      if (pending instanceof Promise) pending.catch(ignore)
    } catch {
      ignore()
    }
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
    const ignore = () => {}
    try {
      const released = this.#db().consumerRelease(this.#name, this.#options.member, owner)
      if (released instanceof Promise) released.catch(ignore)
    } catch {
      ignore()
    }
  }
}

/** The consumers of one queue. */
class Consumers {
  #live = new Set()

  /** `position`: see Consumer's constructor. */
  open(db, streams, name, options, position) {
    return new Consumer(db, streams, this.#live, checkName('consume', name), consumeOptions(options), position)
  }

  /** Validates consume's arguments, for a caller that reads the position before `open`: the member's number. */
  static member(name, options) {
    checkName('consume', name)
    return consumeOptions(options).member
  }

  /** Releases every lease; called by the queue's close() before the file closes. */
  close() {
    for (const consumer of [...this.#live]) consumer.release()
  }
}

/** `resetConsumer`: every member at `position`, unless a live reader holds one (a Promise on an async backend). */
function resetConsumer(db, name, position = 0) {
  checkName('resetConsumer', name)
  if (!Number.isSafeInteger(position) || position < 0) {
    throw coded(RangeError, 'ERR_INVALID_ARG', `resetConsumer: position must be an integer id >= 0, got ${describe(position)}`)
  }
  const gone = []
  const attempt = () => after(db.resetConsumer(name, position, gone), (owner) => {
    if (owner === null || owner === undefined) return undefined
    if (gone.includes(owner) || !isGone(owner)) throw busyError(name, undefined, owner)
    gone.push(owner)
    return attempt()
  })
  return attempt()
}

module.exports = { Consumers, resetConsumer }
