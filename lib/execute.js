'use strict'
// Running a stored row through the user's model and callbacks, exactly as EventLite Sourcing
// does. This is the one part of a write that must be JavaScript: it calls the user's code.
const { coded, shown, given, sender, reason } = require('./errors')

/** EventLite's stock callback sets. */
const eventCallbacks = {
  stub: {
    _error(errObj) {
      console.error(errObj.msg, errObj)
    },
    _default(result, row) {
      console.log(`${row.cmd} sent with data ${JSON.stringify(row.data)} and the result is ${JSON.stringify(result)}`)
    },
  },
  void: {
    _error() {},
    _default() {},
  },
  error: {
    _error(errObj) {
      console.error(errObj.msg, errObj)
    },
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

function execute(row, model, callbacks = eventCallbacks.void) {
  if (row === null || typeof row !== 'object') {
    throw coded(TypeError, 'ERR_INVALID_ARG', `execute: row must be an event row, got ${row === null ? 'null' : typeof row}`)
  }
  if (model === null || model === undefined) model = {}
  if (callbacks === null || callbacks === undefined) callbacks = eventCallbacks.void
  const { cmd, id, datetime, user, ip, version, correlation_id, causation_id, metadata } = row
  let res
  try {
    const data = migrate(model, row)
    const meta = { datetime, user, ip, cmd, id, version, correlationId: correlation_id, causationId: causation_id, metadata }
    const own = handler(model, cmd)
    if (own) {
      res = own.call(model, data, meta)
    } else if (model._queries && Object.prototype.hasOwnProperty.call(model._queries, cmd) && model._queries[cmd]) {
      res = model.get(cmd, data)
    } else if (typeof model._default === 'function') {
      res = model._default(data, meta)
    }
    const after = handler(callbacks, cmd) || handler(callbacks, '_default')
    if (after) after.call(callbacks, res, row)
    if (typeof model._done === 'function') model._done(row, res)
    return res
  } catch (error) {
    const errObj = {
      msg: `${sender(user, ip)} initiated ${given(cmd) ? shown(cmd) : 'an event without a cmd'} that led to an error: ${reason(error)}`,
      error,
      res,
      ...row,
    }
    if (typeof callbacks._error === 'function') callbacks._error(errObj)
    if (typeof model._error === 'function') model._error(errObj)
    return undefined
  }
}

module.exports = { execute, eventCallbacks }
