'use strict'
// Running a stored row through the user's model and callbacks, exactly as EventLite Sourcing
// does. This is the one part of a write that must be JavaScript: it calls the user's code.
const { coded, shown, given, sender, reason } = require('./errors')

/**
 * EventLite's `_error` of the stub and error sets, printing the same console.log arguments, so
 * that code capturing EventLite's log sees the same lines.
 */
function logError({ msg, error, cmd, data, ...row }) {
  console.log(msg, error, cmd, 'and then the data', data, 'and finally the rest of the row data', row)
}

/** EventLite's stock callback sets. */
const eventCallbacks = {
  stub: {
    _error: logError,
    _default(res, row) {
      console.log(`${row.cmd} sent to be processed by main program with response`, res, 'and data', row.data)
    },
  },
  void: {
    _error() {},
    _default() {},
  },
  error: {
    _error: logError,
    _default() {},
  },
  done: () => {},
}

/**
 * `target[name]` when it is the target's own handler: a cmd such as "toString" must not
 * reach Object.prototype's methods.
 */
function handler(target, name) {
  if (target === null || target === undefined) return undefined
  const fn = target[name]
  if (typeof fn !== 'function' || fn === Object.prototype[name]) return undefined
  return fn
}

/** Applies the cmd's migrations from the row's version up. */
function migrate(model, row) {
  let data = row.data
  const migrations = model._migrations && model._migrations[row.cmd]
  if (Array.isArray(migrations)) {
    for (let v = row.version; v <= migrations.length; v++) {
      if (typeof migrations[v - 1] === 'function') data = migrations[v - 1](data)
    }
  }
  return data
}

/** An `async` handler's result, or any other promise-like value. */
const isThenable = (value) => value !== null && (typeof value === 'object' || typeof value === 'function') && typeof value.then === 'function'

/** The model's answer for the row: its own handler, a query, or its default. */
function runModel(model, row, data) {
  const { cmd, id, datetime, user, ip, version, correlation_id, causation_id, metadata } = row
  const meta = { datetime, user, ip, cmd, id, version, correlationId: correlation_id, causationId: causation_id, metadata }
  const own = handler(model, cmd)
  if (own) return own.call(model, data, meta)
  if (model._queries && Object.prototype.hasOwnProperty.call(model._queries, cmd) && model._queries[cmd]) {
    return model.get(cmd, data)
  }
  if (typeof model._default === 'function') return model._default(data, meta)
  return undefined
}

function runCallback(callbacks, res, row) {
  const after = handler(callbacks, row.cmd) || handler(callbacks, '_default')
  return after ? after.call(callbacks, res, row) : undefined
}

const runDone = (model, row, res) => (typeof model._done === 'function' ? model._done(row, res) : undefined)

/** The steps of an execution, for resuming one after a handler returned a thenable. */
const MODEL = 0
const CALLBACK = 1
const DONE = 2

function execute(row, model, callbacks) {
  if (row === null || typeof row !== 'object') {
    throw coded(TypeError, 'ERR_INVALID_ARG', `execute: row must be an event row, got ${row === null ? 'null' : typeof row}`)
  }
  if (model === null || model === undefined) model = {}
  if (callbacks === null || callbacks === undefined) callbacks = eventCallbacks.void
  let res
  try {
    res = runModel(model, row, migrate(model, row))
    if (isThenable(res)) return resume(res, MODEL, row, model, callbacks, undefined)
    const back = runCallback(callbacks, res, row)
    if (isThenable(back)) return resume(back, CALLBACK, row, model, callbacks, res)
    const done = runDone(model, row, res)
    if (isThenable(done)) return resume(done, DONE, row, model, callbacks, res)
    return res
  } catch (error) {
    return fail(row, model, callbacks, error, res)
  }
}

/**
 * The rest of an execution after `step` returned the thenable `pending`: it is awaited, then
 * the steps after it run (each awaited too), and the Promise resolves to the model's value. A
 * rejection is reported as a throw is, so it never goes unhandled.
 */
async function resume(pending, step, row, model, callbacks, res) {
  try {
    const value = await pending
    if (step === MODEL) {
      res = value
      await runCallback(callbacks, res, row)
    }
    if (step !== DONE) await runDone(model, row, res)
    return res
  } catch (error) {
    return fail(row, model, callbacks, error, res)
  }
}

/** Reports a failed execution to both error handlers, with EventLite's errObj; returns undefined. */
function fail(row, model, callbacks, error, res) {
  const { id, version, datetime, user, ip, cmd, data, correlation_id, causation_id, metadata } = row
  // EventLite's keys in its order, as the stock callbacks print them. The message says what
  // EventLite's says without its blanks: an empty user, ip or cmd is named, not left out.
  const errObj = {
    msg: `${sender(user, ip)} initiated ${given(cmd) ? shown(cmd) : 'an event without a cmd'} that led to an error: ${reason(error)}`,
    error,
    res,
    data,
    user,
    ip,
    cmd,
    id,
    version,
    datetime,
    correlation_id,
    causation_id,
    metadata,
  }
  if (typeof callbacks._error === 'function') callbacks._error(errObj)
  if (typeof model._error === 'function') model._error(errObj)
  return undefined
}

module.exports = { execute, eventCallbacks }
