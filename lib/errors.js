'use strict'
// Errors thrown by the JavaScript layer carry the same stable `code` property as those thrown
// by the native core, so callers branch on one field whichever side caught the problem.

function coded(Ctor, code, message, extra) {
  const err = new Ctor(message)
  err.code = code
  if (extra) Object.assign(err, extra)
  return err
}

const optionError = (Ctor, message) => coded(Ctor, 'ERR_INVALID_OPTION', message)
const eventError = (Ctor, message, extra) => coded(Ctor, 'ERR_INVALID_EVENT', message, extra)
const closedError = () => coded(Error, 'ERR_QUEUE_CLOSED', 'the queue is closed; open a new one with initQueue()')

module.exports = { coded, optionError, eventError, closedError }
