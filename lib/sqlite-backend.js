'use strict'
// The SQLite backend of the async queue. Reads run on the JavaScript thread through a
// synchronous queue on the file, as initQueue's do: a point read costs microseconds, less than
// a trip to the thread pool, and the long reads (streams, replays) already read on the thread
// pool a batch at a time. Writes go to a writer thread with a connection of its own, which
// commits together the calls that arrive while it is busy (lib/writer-backend.js).
const { NativeWriter } = require('./native')
const { EventQueue, NATIVE, WAKE_STREAMS, CONSUMER_OPERATIONS } = require('./queue')
const { WriterBackend } = require('./writer-backend')

class SqliteBackend extends WriterBackend {
  /** The synchronous queue the reads go through. */
  reader
  /** A consumer's reads, through the reader: its position and its stream (lib/consumer.js). */
  consumerReads

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
    super(writer, replies, {
      correlationOf: (id) => native.correlationId(id),
      appended: () => reader[WAKE_STREAMS](),
    })
    this.reader = reader
    const { position, attach } = reader[CONSUMER_OPERATIONS]()
    this.consumerReads = { position, attach }
  }
}

module.exports = { SqliteBackend }
