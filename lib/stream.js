'use strict'
// streamEvents: batches of rows read on the libuv thread pool (src/stream.rs), one batch ahead
// of the consumer, so that the event loop keeps turning while a stream reads and memory stays
// bounded whatever the size of the log.
const { optionError, describe } = require('./errors')
const { readOptions, checkBoolean, checkInteger } = require('./options')
const { rowsOfSets } = require('./rows')
const { defaults } = require('./constants')

const STREAM_KEYS = ['batchSize', 'startId', 'endId', 'correlationId', 'user', 'cmd', 'follow', 'signal']
/** How long a following stream waits before it looks for events appended by another process. */
const POLL_MS = 50
const noop = () => {}

function checkFilter(value, name) {
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'string') throw optionError(TypeError, `${name} must be a string, got ${describe(value)}`)
  return value
}

/**
 * The `signal` option: null, or an AbortSignal or an object shaped like one (`aborted` and both
 * listener methods). Reading them may run the caller's getters; a throw there is a bad option,
 * not the caller's own error.
 */
function checkSignal(signal) {
  if (signal === null) return null
  let isSignal
  try {
    isSignal = typeof signal === 'object' && typeof signal.aborted === 'boolean' &&
      typeof signal.addEventListener === 'function' && typeof signal.removeEventListener === 'function'
  } catch (cause) {
    throw Object.assign(optionError(TypeError, `reading signal threw: ${cause && cause.message}`), { cause })
  }
  if (!isSignal) throw optionError(TypeError, `signal must be an AbortSignal, got ${describe(signal)}`)
  return signal
}

/** The native reader's options, plus `follow` and `signal`, which stay on this side. */
function streamOptions(given) {
  const options = given === undefined ? {} : readOptions(given, STREAM_KEYS, '')
  const { batchSize = defaults.batchSize, startId = 0, endId = null, follow = false } = options
  const signal = checkSignal(options.signal ?? null)
  return {
    native: {
      // Any size, as in EventLite: the core reads a batch's rows as they come, never
      // allocating for batchSize ahead.
      batchSize: checkInteger(batchSize, 'batchSize', 1, Number.MAX_SAFE_INTEGER),
      startId: checkInteger(startId, 'startId', 0, Number.MAX_SAFE_INTEGER),
      endId: endId === null ? undefined : checkInteger(endId, 'endId', 0, Number.MAX_SAFE_INTEGER),
      correlationId: checkFilter(options.correlationId, 'correlationId'),
      user: checkFilter(options.user, 'user'),
      cmd: checkFilter(options.cmd, 'cmd'),
    },
    follow: checkBoolean(follow, 'follow'),
    signal,
  }
}

/** One stream's native reader, and whether the stream has ended. */
class StreamState {
  ended = false
  /** Settles once the native reader is closed. */
  released = null
  #native
  #pending = null
  #waiter = null
  /** Set by a wake() that found no waiter: an append during a read, which may not have seen it. */
  #woken = false
  #onEnd
  #pollMs

  constructor(native, onEnd, pollMs) {
    this.#native = native
    this.#onEnd = onEnd
    this.#pollMs = pollMs
  }

  /** Starts reading the next batch: its parts, '' when caught up, null when nothing more can come. */
  read() {
    this.#woken = false
    const pending = this.#native.next()
    // Handled here as well as where it is awaited: a stream abandoned while a read is in
    // flight must not report an unhandled rejection.
    pending.catch(noop)
    this.#pending = pending
    return pending
  }

  /** How far the reader has read (see src/stream.rs): call it once a read has resolved. */
  position() {
    return this.#native.position()
  }

  /** Resolves after the poll interval, or sooner when this queue appends (`wake`) or the stream ends. */
  idle() {
    if (this.#woken) return Promise.resolve()
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, this.#pollMs)
      this.#waiter = () => {
        clearTimeout(timer)
        resolve()
      }
    })
  }

  wake() {
    const waiter = this.#waiter
    this.#waiter = null
    if (waiter) waiter()
    else this.#woken = true
  }

  /** Ends the stream; the reader is closed as soon as no read is in flight. Idempotent. */
  end() {
    if (this.ended) return
    this.ended = true
    this.wake()
    const close = () => this.#native.close()
    this.released = this.#pending ? this.#pending.then(close, close) : Promise.resolve(close())
    this.#onEnd()
  }
}

/**
 * A stream's listener on its signal. It ends the stream when the signal aborts, without keeping
 * the stream alive: a signal often outlives the streams it was given to.
 */
class AbortListener {
  #signal
  #onAbort
  #listening = false

  /** `ref` is a WeakRef of the stream's state. */
  constructor(signal, ref) {
    this.#signal = signal
    this.#onAbort = () => ref.deref()?.end()
  }

  /** Listens, unless the signal has aborted already (then false). */
  start() {
    try {
      if (this.#signal.aborted) return false
      this.#signal.addEventListener('abort', this.#onAbort)
    } catch (cause) {
      throw Object.assign(optionError(TypeError, `signal threw: ${cause && cause.message}`), { cause })
    }
    this.#listening = true
    return true
  }

  stop() {
    if (!this.#listening) return
    this.#listening = false
    try {
      this.#signal.removeEventListener('abort', this.#onAbort)
    } catch {
      // The stream has ended either way; the listener left behind ends nothing once it is gone.
    }
  }
}

/**
 * The streams of one queue: woken when the queue appends, ended when it closes. It holds them
 * weakly: a stream that its consumer let go of unfinished (an iterator read once and dropped)
 * is garbage, and collecting it closes its native reader (src/lib.rs). Held strongly, every
 * such stream would keep a connection and its descriptors open for the life of the queue.
 */
class Streams {
  /** WeakRefs of the live streams' states. */
  #live = new Set()
  /** Forgets a collected stream, and takes its listener off its signal. */
  #collected = new FinalizationRegistry(({ ref, listener }) => {
    this.#live.delete(ref)
    listener?.stop()
  })
  #closed = false
  #pollMs

  /**
   * `pollMs`: how long a following stream waits before it reads again unwoken. Short where only
   * polling tells of other processes' appends (SQLite), long where the server wakes the streams
   * and polling only covers a lost notification (PostgreSQL).
   */
  constructor({ pollMs = POLL_MS } = {}) {
    this.#pollMs = pollMs
  }

  /**
   * An async iterable of row batches. `openNative()` makes the native reader on the first
   * `next()`, so a stream that is never iterated holds nothing.
   */
  open(openNative, { follow, signal }) {
    return this.#batches(openNative, follow, signal)
  }

  /**
   * A reader of this queue's log: woken when the queue appends, ended when it closes or
   * `signal` aborts, and held weakly (see the class). `openNative()` makes the native reader;
   * null (and no reader made) when the queue is closed or the signal already aborted. Whoever
   * attaches ends the state. No closure made here holds the state where the queue or the
   * signal can reach it: that would keep a dropped stream alive.
   */
  attach(openNative, signal) {
    if (this.#closed) return null
    let listener = null
    const state = new StreamState(openNative(), () => {
      this.#live.delete(ref)
      this.#collected.unregister(ref)
      listener?.stop()
    }, this.#pollMs)
    const ref = new WeakRef(state)
    listener = signal ? new AbortListener(signal, ref) : null
    this.#live.add(ref)
    this.#collected.register(state, { ref, listener }, ref)
    try {
      if (listener && !listener.start()) {
        state.end()
        return null
      }
    } catch (err) {
      state.end()
      throw err
    }
    return state
  }

  async * #batches(openNative, follow, signal) {
    const state = this.attach(openNative, signal)
    if (state === null) return
    try {
      let pending = state.read()
      for (;;) {
        let parts
        try {
          parts = await pending
        } catch (err) {
          // The queue closed under a read in flight (on PostgreSQL its pool is gone): the stream
          // ends, as close() ends every stream.
          if (err.code === 'ERR_QUEUE_CLOSED') return
          throw err
        }
        if (parts === null || state.ended) return
        if (parts === '') {
          if (!follow) return
          await state.idle()
          if (state.ended) return
          pending = state.read()
        } else {
          pending = state.read() // one batch ahead, while the consumer handles this one
          yield rowsOfSets(parts)
        }
      }
    } finally {
      // Leaving the loop (break, a throw, return) lands here: the reader is released before
      // the loop statement completes.
      state.end()
      await state.released
    }
  }

  /** Called after each append by this queue: a following stream that waits reads again at once. */
  wake() {
    if (this.#live.size === 0) return
    for (const ref of this.#live) ref.deref()?.wake()
  }

  /** Ends every stream; called by the queue's close(). */
  close() {
    this.#closed = true
    for (const ref of this.#live) ref.deref()?.end()
  }
}

module.exports = { Streams, streamOptions, checkFilter, checkSignal }
