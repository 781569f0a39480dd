'use strict'
// The write side every backend of the async queue shares: a native writer thread
// (src/writer.rs, NativeWriter) that commits together the calls that arrive while it is busy,
// fed one line per call, once per turn of the event loop. lib/sqlite-backend.js and
// lib/pg-backend.js add their reader.

/**
 * Writers with replies due. A queue dropped while its writes are in flight must still settle
 * them, and nothing else may hold its writer: the writer's replies function is a root the
 * engine never collects, so whatever it reaches would live forever (see `replies.attach`).
 */
const busy = new Set()

class WriterBackend {
  #writer
  #replies
  /**
   * Writes not yet handed to the writer, one line each (see src/writer.rs `Write::lines`):
   * the calls of one turn of the event loop cross to the writer once, when the turn's
   * microtasks run out. No timer is involved: a lone write leaves as soon as its caller's
   * code has run.
   */
  #lines = []

  /**
   * `replies` (see lib/async-queue.js) receives each group's replies from `writer`; `hooks`
   * are the backend's `correlationOf(id)` and `appended()`. What they are given reaches only a
   * weak reference to the writer, so that a queue dropped without close() is collected: its
   * writer first, which stops the thread and releases the replies function, then the rest.
   */
  constructor(writer, replies, hooks) {
    this.#writer = writer
    this.#replies = replies
    const weakWriter = new WeakRef(writer)
    replies.attach({
      ...hooks,
      idle() {
        const idle = weakWriter.deref()
        if (idle === undefined) return
        busy.delete(idle)
        idle.hold(false)
      },
    })
  }

  /** Replies are due: the writer keeps the program running, and stays reachable, until they come. */
  busy() {
    busy.add(this.#writer)
    this.#writer.hold(true)
  }

  /**
   * Submits a `store` (`batch` false) or `storeBulk` payload; the reply is its first id, or
   * for a call whose events carry stream conditions (`conditional`) what `checkedOutcome`
   * (lib/write.js) reads.
   */
  write(payload, batch, conditional) {
    if (this.#lines.length === 0) queueMicrotask(this.#flush)
    const kind = batch ? 'B' : 'S'
    this.#lines.push((conditional ? kind.toLowerCase() : kind) + payload)
  }

  #flush = () => {
    if (this.#lines.length === 0) return
    const lines = this.#lines.join('\n')
    const count = this.#lines.length
    this.#lines.length = 0
    try {
      this.#writer.write(lines)
    } catch (err) {
      // The writes of `lines` are the last ones due: anything submitted after them flushed them.
      this.#replies.abandon(count, err)
    }
  }

  /** Asks for the write metrics; the reply is `getMetrics()`'s object. */
  metrics() {
    this.#flush()
    this.#writer.metrics()
  }

  // A consumer's writes (see lib/consumer.js `nativeOperations` for their replies), after the
  // writes submitted before them.

  consumerAcquire(name, member, size, owner, gone) {
    this.#flush()
    this.#writer.consumerAcquire(name, member, size, owner, gone)
  }

  consumerCommit(name, member, owner, position) {
    this.#flush()
    this.#writer.consumerCommit(name, member, owner, position)
  }

  consumerRenew(name, member, owner) {
    this.#flush()
    this.#writer.consumerRenew(name, member, owner)
  }

  consumerRelease(name, member, owner) {
    this.#flush()
    this.#writer.consumerRelease(name, member, owner)
  }

  resetConsumer(name, position, gone) {
    this.#flush()
    this.#writer.resetConsumer(name, position, gone)
  }

  /** Closes the writer after the writes submitted; the reply, `null`, comes once it is closed. */
  close() {
    this.#flush()
    this.#writer.close()
  }
}

module.exports = { WriterBackend }
