'use strict'
// Many rows (a page, a stream batch, a replay batch) arrive from the core as one flat JSON
// array of values, ten per row in the column order of src/schema.rs (COLUMNS), with data and
// metadata spliced in as JSON. Parsing that and building each row with one object literal
// costs less than parsing the same rows written as objects: the keys are known here, so the
// core does not send them.

const WIDTH = 10

function toRows(values) {
  const rows = new Array(values.length / WIDTH)
  for (let i = 0, j = 0; i < rows.length; i++, j += WIDTH) {
    rows[i] = {
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
  return rows
}

module.exports = { toRows }
