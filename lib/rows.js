'use strict'
// Rows arrive from the core as flat JSON arrays of values, one per column in the order of the
// columns the core exports (lib/constants.js), with data and metadata spliced in as JSON: one
// row on its own, or many (a transaction, a page, a stream batch, a replay batch) one after
// another. Parsing that and building each row with one object literal costs less than parsing
// the same rows written as objects: the keys are known here, so the core does not send them.
const { columns } = require('./constants')

const WIDTH = columns.length

/**
 * Compiles a function of `params` that builds a row as one object literal, its keys the
 * columns in order: every row gets the one shape, and building it costs what a literal written
 * out costs (a loop of `row[column] = value` costs several times more). `source(column, i)`
 * is the expression of the column's value, over `params` and the names in `scope`.
 */
function rowBuilder(params, source, scope = {}) {
  const fields = columns.map((column, i) => {
    const value = source(column, i)
    if (!/^[a-z_]+$/.test(column) || typeof value !== 'string') {
      throw new Error(`eventlite-native: cannot build the column ${JSON.stringify(column)} of a row`)
    }
    return `${column}: ${value}`
  })
  const body = `return (${params.join(', ')}) => ({ ${fields.join(', ')} })`
  return new Function(...Object.keys(scope), body)(...Object.values(scope))
}

/** The row whose values start at `values[j]`. */
const toRow = rowBuilder(['values', 'j'], (column, i) => `values[j + ${i}]`)

/** The rows of a flat array of values. */
function toRows(values) {
  const rows = new Array(values.length / WIDTH)
  for (let i = 0; i < rows.length; i++) rows[i] = toRow(values, i * WIDTH)
  return rows
}

/** One row's values (or null) as a row (or null). */
const oneRow = (values) => (values === null ? null : toRow(values, 0))

module.exports = { toRows, oneRow, rowBuilder }
