'use strict'
// The SQLite backend of the async queue. Reads run on the JavaScript thread through a
// synchronous queue on the file, as initQueue's do: a point read costs microseconds, less than
// a trip to the thread pool, and the long reads (streams, replays) already read on the thread
// pool a batch at a time. Writes go to a writer thread with a connection of its own, which
// commits together the calls that arrive while it is busy (src/writer.rs).
const { NativeWriter } = require('./native')
const { EventQueue, NATIVE, WAKE_STREAMS } = require('./queue')

/**
 * Writers with replies due. A queue dropped while its writes are in flight must still settle
 * them, and nothing else may hold its writer: the writer's replies function is a root the
 * engine never collects, so whatever it reaches would live forever (see `replies.attach`).
 */
const busy = new Set()

class SqliteBackend {
  /** The synchronous queue the reads go through. */
  reader
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
   * `replies` (see lib/async-queue.js) receives each group's replies from the writer thread.
   * What it is given reaches the reader but only a weak reference to the writer, so that a
   * queue dropped without close() is collected: its writer first, which stops the thread and
   * releases the replies function, then the rest.
   */
  constructor(settings, replies) {
    const reader = new EventQueue(settings)
    const native = reader[NATIVE]()
    let writer
    try {
      writer = new NativeWriter(native, (text) => replies.settle(text))
    } catch (err) {
      reader.close()
      throw err
    }
    this.reader = reader
    this.#writer = writer
    this.#replies = replies
    const weakWriter = new WeakRef(writer)
    replies.attach({
      correlationOf: (id) => native.correlationId(id),
      appended: () => reader[WAKE_STREAMS](),
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

  /** Submits a `store` (`batch` false) or `storeBulk` payload; the reply is its first id. */
  write(payload, batch) {
    if (this.#lines.length === 0) queueMicrotask(this.#flush)
    this.#lines.push((batch ? 'B' : 'S') + payload)
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

  /** Closes the writer after the writes submitted; the reply, `null`, comes once the file is closed. */
  close() {
    this.#flush()
    this.#writer.close()
  }
}

module.exports = { SqliteBackend }
