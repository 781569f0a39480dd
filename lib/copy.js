'use strict'
// Fresh copies of the rows the query cache keeps as templates (see src/cache.rs): each cached
// read returns new objects, so mutating one never changes a later read. For the small values
// rows hold, copying is several times cheaper than JSON.parse of the text again or
// structuredClone.
const { jsonColumns } = require('./constants')
const { rowBuilder } = require('./rows')

/** A deep copy of a value JSON.parse made: plain objects, arrays and primitives only. */
function copyJson(value) {
  if (typeof value !== 'object' || value === null) return value
  if (Array.isArray(value)) {
    const out = new Array(value.length)
    for (let i = 0; i < value.length; i++) out[i] = copyJson(value[i])
    return out
  }
  const out = {}
  for (const key in value) {
    if (key === '__proto__') {
      // JSON.parse makes "__proto__" an own property; assigning it would set the prototype.
      Object.defineProperty(out, key, { value: copyJson(value[key]), writable: true, enumerable: true, configurable: true })
    } else {
      out[key] = copyJson(value[key])
    }
  }
  return out
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
