'use strict'
// streamEvents: batches of rows read on the libuv thread pool (src/stream.rs), one batch ahead
// of the consumer, so that the event loop keeps turning while a stream reads and memory stays
// bounded whatever the size of the log.
const { optionError, describe } = require('./errors')
const { readOptions, checkBoolean, checkInteger } = require('./options')
const { toRows } = require('./rows')

const STREAM_KEYS = ['batchSize', 'startId', 'endId', 'correlationId', 'user', 'cmd', 'follow', 'signal']
const MAX_BATCH = 10000
/** How long a following stream waits before it looks for events appended by another process. */
const POLL_MS = 50
const noop = () => {}

function checkFilter(value, name) {
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'string') throw optionError(TypeError, `${name} must be a string, got ${describe(value)}`)
  return value
}

/** The `signal` option: an AbortSignal, or null. */
function checkSignal(signal) {
  const isSignal = signal !== null && typeof signal === 'object' && typeof signal.aborted === 'boolean' && typeof signal.addEventListener === 'function'
  if (signal !== null && !isSignal) throw optionError(TypeError, `signal must be an AbortSignal, got ${describe(signal)}`)
  return signal
}

/** The native reader's options, plus `follow` and `signal`, which stay on this side. */
function streamOptions(given) {
  const options = given === undefined ? {} : readOptions(given, STREAM_KEYS, '')
  const { batchSize = 1000, startId = 0, endId = null, follow = false } = options
  const signal = checkSignal(options.signal ?? null)
  return {
    native: {
      batchSize: checkInteger(batchSize, 'batchSize', 1, MAX_BATCH),
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

  constructor(native, onEnd) {
    this.#native = native
    this.#onEnd = onEnd
  }

  /** Starts reading the next batch: its text, '' when caught up, null when nothing more can come. */
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

  /** Resolves after POLL_MS, or sooner when this queue appends (`wake`) or the stream ends. */
  idle() {
    if (this.#woken) return Promise.resolve()
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, POLL_MS)
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

/** The streams of one queue: woken when the queue appends, ended when it closes. */
class Streams {
  #live = new Set()
  #closed = false

  /**
   * An async iterable of row batches. `openNative()` makes the native reader on the first
   * `next()`, so a stream that is never iterated holds nothing.
   */
  open(openNative, { follow, signal }) {
    return this.#batches(openNative, follow, signal)
  }

  /**
   * A reader of this queue's log: woken when the queue appends, ended when it closes or
   * `signal` aborts. `openNative()` makes the native reader; null (and no reader made) when
   * the queue is closed or the signal already aborted. Whoever attaches ends the state.
   */
  attach(openNative, signal) {
    if (this.#closed || (signal && signal.aborted)) return null
    const onAbort = () => state.end()
    const state = new StreamState(openNative(), () => {
      this.#live.delete(state)
      if (signal) signal.removeEventListener('abort', onAbort)
    })
    this.#live.add(state)
    if (signal) signal.addEventListener('abort', onAbort)
    return state
  }

  async * #batches(openNative, follow, signal) {
    const state = this.attach(openNative, signal)
    if (state === null) return
    try {
      let pending = state.read()
      for (;;) {
        const text = await pending
        if (text === null || state.ended) return
        if (text === '') {
          if (!follow) return
          await state.idle()
          if (state.ended) return
          pending = state.read()
        } else {
          pending = state.read() // one batch ahead, while the consumer handles this one
          yield toRows(JSON.parse(text))
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
    for (const state of this.#live) state.wake()
  }

  /** Ends every stream; called by the queue's close(). */
  close() {
    this.#closed = true
    for (const state of this.#live) state.end()
  }
}

module.exports = { Streams, streamOptions, checkFilter, checkSignal, MAX_BATCH }
