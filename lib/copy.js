'use strict'
// Fresh copies of the rows the query cache keeps as templates (see src/cache.rs): each cached
// read returns new objects, so mutating one never changes a later read. For the small values
// rows hold, copying is several times cheaper than JSON.parse of the text again or
// structuredClone.
const { jsonColumns } = require('./constants')
const { rowBuilder } = require('./rows')

/** Nesting past which a copy goes on with a stack of its own: rows may nest any depth. */
const DEEP = 512

/** A deep copy of a value JSON.parse made: plain objects, arrays and primitives only. */
function copyJson(value, depth = 0) {
  if (typeof value !== 'object' || value === null) return value
  if (depth === DEEP) return copyDeep(value)
  if (Array.isArray(value)) {
    const out = new Array(value.length)
    for (let i = 0; i < value.length; i++) out[i] = copyJson(value[i], depth + 1)
    return out
  }
  const out = {}
  for (const key in value) setKey(out, key, copyJson(value[key], depth + 1))
  return out
}

function setKey(out, key, value) {
  if (key === '__proto__') {
    // JSON.parse makes "__proto__" an own property; assigning it would set the prototype.
    Object.defineProperty(out, key, { value, writable: true, enumerable: true, configurable: true })
  } else {
    out[key] = value
  }
}

/** copyJson of an object or array, its nesting kept on an explicit stack instead of the call stack. */
function copyDeep(root) {
  const empty = (value) => (Array.isArray(value) ? new Array(value.length) : {})
  const top = empty(root)
  const pending = [root, top]
  while (pending.length > 0) {
    const out = pending.pop()
    const value = pending.pop()
    for (const key in value) {
      const inner = value[key]
      if (typeof inner !== 'object' || inner === null) {
        setKey(out, key, inner)
      } else {
        const copy = empty(inner)
        setKey(out, key, copy)
        pending.push(inner, copy)
      }
    }
  }
  return top
}

/** A copy of a row, with its keys in the order every read returns them. */
const copyRow = rowBuilder(
  ['row'],
  (column) => (jsonColumns.includes(column) ? `copyJson(row.${column})` : `row.${column}`),
  { copyJson },
)

function copyRows(rows) {
  const out = new Array(rows.length)
  for (let i = 0; i < rows.length; i++) out[i] = copyRow(rows[i])
  return out
}

module.exports = { copyRow, copyRows }
