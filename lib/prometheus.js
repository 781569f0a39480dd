'use strict'
// metricsText(): getMetrics() and getCacheStats() in Prometheus' text exposition format
// (version 0.0.4), every name prefixed `eventlite_`, each with its # HELP and # TYPE lines.
// Times stay in milliseconds, as getMetrics() reports them, and say so in their names.

/** [name, type, help, value of (metrics, cache)] for each figure. */
const FIGURES = [
  ['events', 'gauge', 'Events in the log.', (m) => m.eventCount],
  ['writes_total', 'counter', 'Events stored by this queue (single and bulk).', (m) => m.writesTotal],
  ['batch_writes_total', 'counter', 'storeBulk calls (and import batches) committed by this queue.', (m) => m.batchWritesTotal],
  ['batch_events_total', 'counter', 'Events stored through storeBulk (and imports) by this queue.', (m) => m.batchEventsTotal],
  ['commits_total', 'counter', 'Transactions the async queue committed, one per group of writes (openQueue only).', (m) => m.commitsTotal],
  ['write_errors_total', 'counter', 'Writes that failed, invalid events included.', (m) => m.errorsTotal],
  ['last_write_milliseconds', 'gauge', 'Duration of the last single write.', (m) => m.lastWriteMs],
  ['last_batch_milliseconds', 'gauge', 'Duration of the last batch write.', (m) => m.lastBatchMs],
  ['last_batch_size', 'gauge', 'Events in the last batch write.', (m) => m.lastBatchSize],
  ['average_batch_size', 'gauge', 'Mean events per batch write.', (m) => m.avgBatchSize],
  ['last_batch_throughput_events_per_second', 'gauge', 'Events per second of the last batch write.', (m) => m.lastBatchThroughputEps],
  ['cache_enabled', 'gauge', '1 when the query cache is enabled.', (m, c) => (c.enabled ? 1 : 0)],
  ['cache_entries', 'gauge', 'Entries in the query cache.', (m, c) => c.size],
  ['cache_max_entries', 'gauge', 'Capacity of the query cache.', (m, c) => c.maxSize],
  ['cache_hits_total', 'counter', 'Query cache hits.', (m, c) => c.hits],
  ['cache_misses_total', 'counter', 'Query cache misses.', (m, c) => c.misses],
  ['cache_evictions_total', 'counter', 'Entries evicted from the query cache to make room.', (m, c) => c.evictions],
  ['cache_expirations_total', 'counter', 'Entries dropped from the query cache after their ttl.', (m, c) => c.expirations],
  ['cache_hit_ratio', 'gauge', 'hits / (hits + misses) of the query cache.', (m, c) => c.hitRate],
]

/** A sample value as the format writes it: finite numbers as they are, the rest by name. */
function value(number) {
  if (typeof number !== 'number' || Number.isNaN(number)) return 'NaN'
  if (number === Infinity) return '+Inf'
  if (number === -Infinity) return '-Inf'
  return String(number)
}

/** A label value, escaped as the format requires. */
const label = (text) => String(text).replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')

function metricsText(metrics, cache) {
  const lines = []
  const family = (name, type, help) => lines.push(`# HELP eventlite_${name} ${help}`, `# TYPE eventlite_${name} ${type}`)
  for (const [name, type, help, read] of FIGURES) {
    const figure = read(metrics, cache)
    // A figure the queue does not keep (commits, on initQueue's) is left out, not reported as 0.
    if (figure === undefined) continue
    family(name, type, help)
    lines.push(`eventlite_${name} ${value(figure)}`)
  }
  family('write_latency_milliseconds', 'gauge', 'Write latency percentiles over recent writes.')
  for (const percentile of ['50', '95', '99']) {
    lines.push(`eventlite_write_latency_milliseconds{percentile="${percentile}"} ${value(metrics.writeLatencyMs['p' + percentile])}`)
  }
  family('info', 'gauge', 'The journal mode and synchronous setting SQLite reports; always 1.')
  lines.push(`eventlite_info{journal_mode="${label(metrics.journalMode)}",synchronous="${label(metrics.synchronous)}"} 1`)
  return lines.join('\n') + '\n'
}

module.exports = { metricsText }
