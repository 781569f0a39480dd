'use strict'
// storeWhen's shape: `waitFor` validated, then the texts EventLite stores for a pending event
// built from it (the event's fields in `event_data`, `waitFor` itself in `wait_conditions`,
// one `wait_conditions` row per condition), sent to the core in one JSON text. The core
// stores, evaluates and drives them (src/pending.rs, src/condition.rs).
const { waitGroups } = require('./native')
const { eventError, describe } = require('./errors')
const { CMD, DATA, USER, IP, VERSION, CAUSATION, METADATA, DATETIME, EXPECTED_VERSION, IDEMPOTENCY_KEY } = require('./event')

/** [key in waitFor, condition_type of its rows], in the order EventLite stores them. */
const GROUPS = waitGroups()
const GROUP_KEYS = GROUPS.map(([key]) => key)

const isObject = (value) => value !== null && typeof value === 'object' && !Array.isArray(value)
const invalid = (Ctor, message) => eventError(Ctor, `storeWhen(event): ${message}`)

/** A `minCount` or `count`: a finite number ≥ 0, or absent when `optional`. */
function checkCount(value, name, optional) {
  if (value === undefined && optional) return
  if (typeof value !== 'number') throw invalid(TypeError, `${name} must be a number, got ${describe(value)}`)
  if (!Number.isFinite(value) || value < 0) throw invalid(RangeError, `${name} must be a finite number ≥ 0, got ${value}`)
}

/**
 * One condition: `{ pattern?, correlationId?, where?, minCount? }` (`count` for the `count`
 * group). A condition without a correlation id is allowed and, as in EventLite, never met.
 */
function checkCondition(condition, name, isCount) {
  if (!isObject(condition)) throw invalid(TypeError, `${name} must be an object, got ${describe(condition)}`)
  for (const key of ['pattern', 'correlationId']) {
    const value = condition[key]
    if (value !== undefined && value !== null && typeof value !== 'string') {
      throw invalid(TypeError, `${name}.${key} must be a string, got ${describe(value)}`)
    }
  }
  if (condition.where !== undefined && condition.where !== null && !isObject(condition.where)) {
    throw invalid(TypeError, `${name}.where must be an object of fields, got ${describe(condition.where)}`)
  }
  if (isCount) checkCount(condition.count, `${name}.count`, false)
  else checkCount(condition.minCount, `${name}.minCount`, true)
}

/**
 * `waitFor` and `timeout` of a storeWhen event, each read once and checked; `null` when
 * there is no `waitFor` (storeWhen is then `store`), or the event is not even an object
 * (`store` reports that).
 */
function readWait(event) {
  if (event === null || typeof event !== 'object') return null
  let waitFor, timeout
  try {
    ({ waitFor, timeout } = event)
  } catch (cause) {
    throw Object.assign(invalid(TypeError, `reading the event threw: ${cause && cause.message}`), { cause })
  }
  if (waitFor === undefined || waitFor === null) return null
  try {
    return checkWait(waitFor, timeout)
  } catch (cause) {
    if (cause && cause.code === 'ERR_INVALID_EVENT') throw cause
    // A getter or proxy inside waitFor that throws makes it invalid, not the call fail with
    // the caller's own error.
    throw Object.assign(invalid(TypeError, `reading waitFor threw: ${cause && cause.message}`), { cause })
  }
}

function checkWait(waitFor, timeout) {
  if (!isObject(waitFor)) throw invalid(TypeError, `waitFor must be an object of groups (${GROUP_KEYS.join(', ')}), got ${describe(waitFor)}`)
  const groups = {}
  for (const [key, value] of Object.entries(waitFor)) {
    if (!GROUP_KEYS.includes(key)) throw invalid(TypeError, `waitFor.${key} is not a group; the groups are ${GROUP_KEYS.join(', ')}`)
    if (value === undefined || value === null) continue
    if (key === 'count') {
      checkCondition(value, 'waitFor.count', true)
    } else {
      if (!Array.isArray(value)) throw invalid(TypeError, `waitFor.${key} must be an array of conditions, got ${describe(value)}`)
      // EventLite keeps an event with an empty group pending for ever; refusing it says so.
      if (value.length === 0) throw invalid(RangeError, `waitFor.${key} is empty: the event could never become ready`)
      value.forEach((condition, i) => checkCondition(condition, `waitFor.${key}[${i}]`, false))
    }
    groups[key] = value
  }
  if (Object.keys(groups).length === 0) throw invalid(RangeError, `waitFor names no group (${GROUP_KEYS.join(', ')}): the event could never become ready`)
  if (timeout !== undefined && timeout !== null) {
    if (typeof timeout !== 'number') throw invalid(TypeError, `timeout must be a number of milliseconds, got ${describe(timeout)}`)
    if (!Number.isSafeInteger(timeout) || timeout < 0) throw invalid(RangeError, `timeout must be a whole number of milliseconds ≥ 0, got ${timeout}`)
  }
  return { waitFor, groups, timeout }
}

/**
 * The pending event as the core stores it, from the event's validated record (see
 * lib/event.js; its datetime is `created_at`) and its correlation id as resolved: EventLite's
 * texts, each made by JSON.stringify as EventLite makes them.
 */
function pendingPayload(record, correlationId, { waitFor, groups, timeout }) {
  const createdAt = record[DATETIME]
  try {
    const conditions = []
    for (const [key, type] of GROUPS) {
      const group = groups[key]
      if (group === undefined) continue
      if (!Array.isArray(group)) {
        conditions.push([type, JSON.stringify(group)])
        continue
      }
      // A sequence step also records its `order`, which EventLite sorts the steps by.
      const ordered = key === 'sequence'
      group.forEach((condition, index) => {
        conditions.push([type, JSON.stringify(ordered ? { ...condition, index, order: index } : { ...condition, index })])
      })
    }
    return JSON.stringify({
      eventData: JSON.stringify({
        cmd: record[CMD],
        data: record[DATA],
        user: record[USER],
        ip: record[IP],
        version: record[VERSION],
        correlationId: correlationId ?? undefined,
        causationId: record[CAUSATION] ?? undefined,
        metadata: record[METADATA],
        // Checked when the event is stored, as store() checks them (EventLite has neither).
        expectedVersion: record[EXPECTED_VERSION] ?? undefined,
        idempotencyKey: record[IDEMPOTENCY_KEY] ?? undefined,
      }),
      waitConditions: JSON.stringify(waitFor),
      createdAt,
      expiresAt: timeout ? createdAt + timeout : null,
      correlationId,
      conditions,
    })
  } catch (cause) {
    throw Object.assign(invalid(TypeError, `the event or its waitFor cannot be stored as JSON: ${cause && cause.message}`), { cause })
  }
}

module.exports = { readWait, pendingPayload }
