'use strict'
// Rows arrive from the core as flat JSON arrays of values, ten per row in the column order of
// src/schema.rs (COLUMNS), with data and metadata spliced in as JSON: one row on its own, or
// many (a transaction, a page, a stream batch, a replay batch) one after another. Parsing that
// and building each row with one object literal costs less than parsing the same rows written
// as objects: the keys are known here, so the core does not send them. A row read by id comes
// as its values instead (makeRow).

const WIDTH = 10

/** The row whose values start at `values[j]`. */
function toRow(values, j) {
  return {
    id: values[j],
    version: values[j + 1],
    datetime: values[j + 2],
    user: values[j + 3],
    ip: values[j + 4],
    cmd: values[j + 5],
    data: values[j + 6],
    correlation_id: values[j + 7],
    causation_id: values[j + 8],
    metadata: values[j + 9],
  }
}

/** The rows of a flat array of values. */
function toRows(values) {
  const rows = new Array(values.length / WIDTH)
  for (let i = 0; i < rows.length; i++) rows[i] = toRow(values, i * WIDTH)
  return rows
}

/** One row's values (or null) as a row (or null). */
const oneRow = (values) => (values === null ? null : toRow(values, 0))

/** A JSON column's value as `rowById` hands it over: its JSON text, or a number or null as it is. */
const parsed = (value) => (typeof value === 'string' ? JSON.parse(value) : value)

/**
 * The row of one event read by id. The core hands over its ten values as JavaScript values
 * (`rowById` in src/lib.rs) instead of as text, which for a single row leaves only `data` and
 * `metadata` to parse.
 */
function makeRow(id, version, datetime, user, ip, cmd, data, correlation_id, causation_id, metadata) {
  return { id, version, datetime, user, ip, cmd, data: parsed(data), correlation_id, causation_id, metadata: parsed(metadata) }
}

module.exports = { toRows, oneRow, makeRow }
