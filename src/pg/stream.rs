//! Reading a PostgreSQL queue's log in id order, batch by batch: the reader behind
//! `streamEvents`, `cycleThrough` and consumers, as [`crate::stream::Stream`] is on SQLite
//! (same filters, batches and [`Next`]). A connection is taken from the pool for one batch at a
//! time, so a stream left waiting holds none.
//!
//! Each batch reads only settled rows ([`SETTLED`]: none of a transaction that may still be in
//! flight) and, in the same statement and so the same snapshot, the newest settled id up to
//! the end of the range, its *horizon*. A short batch moves the stream past its horizon at once
//! (a rarely matching filter does not rescan the rows it passed), and never further: an event
//! of a transaction still in flight lies beyond it, and is read once it commits.

use futures_util::{pin_mut, TryStreamExt};
use tokio_postgres::types::ToSql;

use super::page::SETTLED;
use super::pool::{Conn, Pool};
use super::read::PgRow;
use super::schema::{quote, Names};
use crate::consumer::{partition, Partition};
use crate::error::Result;
use crate::pieces::Limits;
use crate::schema::COLUMNS;
use crate::stream::{Batch, Filter, Next};

/// The position of `correlation_id` in [`COLUMNS`], which a group member's partition reads.
const CORRELATION_ID: usize = 7;

/// A stream's reader: its filters, and how far it has read.
pub struct PgStream {
    pool: Pool,
    sql: BatchSql,
    filter: Filter,
    next_id: i64,
    end_id: i64,
    batch_size: i64,
    limits: Limits,
}

/// The two forms of a batch's statement (see [`batch_sql`]).
struct BatchSql {
    /// The rows, each with the horizon: read in index order, with nothing to sort.
    rows: String,
    /// The rows joined to the horizon, so that an empty batch still brings it (with the row's
    /// columns null). The join must be sorted again, which costs about as much as reading the
    /// rows: it is only run when `rows` found none.
    or_horizon: String,
}

/// The batch statements of `filter`: `$1`/`$2` the id range, `$3` the limit, then the filters
/// present. A group member's partition is kept in [`PgStream::read`]: PostgreSQL has no FNV-1a.
fn batch_sql(names: &Names, filter: &Filter) -> BatchSql {
    let cols = COLUMNS.map(quote).join(", ");
    let queue = &names.queue;
    let mut filters = String::new();
    let present = [("correlation_id", &filter.correlation_id), ("\"user\"", &filter.user), ("cmd", &filter.cmd)];
    for (n, (column, _)) in (4..).zip(present.iter().filter(|(_, value)| value.is_some())) {
        filters.push_str(&format!(" AND {column} = ${n}"));
    }
    let horizon = format!("SELECT max(id) AS horizon FROM {queue} WHERE id >= $1 AND id <= $2 AND {SETTLED}");
    let range = format!("FROM {queue} WHERE id >= $1 AND id <= $2 AND {SETTLED}{filters} ORDER BY id LIMIT $3");
    BatchSql {
        rows: format!("SELECT {cols}, ({horizon}) AS horizon {range}"),
        or_horizon: format!(
            "SELECT b.*, h.horizon FROM ({horizon}) h LEFT JOIN LATERAL (SELECT {cols} {range}) b ON true ORDER BY b.id"
        ),
    }
}

impl PgStream {
    /// A stream of the events with `start_id <= id <= end_id` (no end when `None`).
    pub fn new(
        pool: Pool,
        names: &Names,
        filter: Filter,
        start_id: i64,
        end_id: Option<i64>,
        batch_size: i64,
    ) -> PgStream {
        PgStream {
            pool,
            sql: batch_sql(names, &filter),
            filter,
            next_id: start_id,
            end_id: end_id.unwrap_or(i64::MAX),
            batch_size: batch_size.max(1),
            limits: Limits::current(),
        }
    }

    /// The id the stream has read past: every event up to it that passes the filters was in a
    /// batch already returned. A consumer commits it as its position.
    pub fn position(&self) -> i64 {
        self.next_id - 1
    }

    /// Reads the next batch (see the module). Rows of other members of a group are read and
    /// passed over: a batch of them alone is followed by the next, not reported as caught up.
    pub async fn read(&mut self) -> Result<Next> {
        loop {
            if self.next_id > self.end_id {
                return Ok(Next::Finished);
            }
            let (batch, stopped_at, horizon) = self.batch().await?;
            let Some(horizon) = horizon else { return Ok(Next::CaughtUp) };
            let passed = stopped_at.unwrap_or(horizon);
            self.next_id = passed.saturating_add(1);
            match batch.rows.rows {
                0 if passed >= self.end_id => return Ok(Next::Finished),
                0 if stopped_at.is_some() => continue,
                0 => return Ok(Next::CaughtUp),
                _ => return Ok(Next::Rows(batch.finish())),
            }
        }
    }

    /// One batch: the rows kept, the id of the last row read when the read stopped before the
    /// query's end (the limit read, or the batch cut), and the horizon (`None`: no settled row
    /// in the range). The rows and their horizon come from one statement, so one snapshot.
    async fn batch(&self) -> Result<(Batch, Option<i64>, Option<i64>)> {
        let mut conn = self.pool.get().await?;
        match self.scan(&mut conn, &self.sql.rows).await? {
            Scan { found: false, .. } => Ok(self.scan(&mut conn, &self.sql.or_horizon).await?.into_batch()),
            scan => Ok(scan.into_batch()),
        }
    }

    /// Runs one of the batch statements and reads its rows into a batch.
    async fn scan(&self, conn: &mut Conn, sql: &str) -> Result<Scan> {
        let statement = conn.statement(sql).await?;
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&self.next_id, &self.end_id, &self.batch_size];
        let Filter { correlation_id, user, cmd, partition: part } = &self.filter;
        params.extend([correlation_id, user, cmd].into_iter().flatten().map(|v| v as &(dyn ToSql + Sync)));
        let rows = conn.client.query_raw(&statement, params).await?;
        pin_mut!(rows);
        let mut batch = Batch::new(self.batch_size, &self.limits);
        let (mut read, mut last, mut horizon, mut found) = (0, None, None, false);
        while !batch.full(&self.limits) {
            let Some(row) = rows.try_next().await? else { break };
            horizon = row.get::<_, Option<i64>>(COLUMNS.len());
            let Some(id) = row.get::<_, Option<i64>>(0) else { break };
            found = true;
            let mine = part.is_none_or(|Partition { member, size }| {
                partition(row.get::<_, Option<&str>>(CORRELATION_ID).map(str::as_bytes), size) == member
            });
            if mine && !batch.push(&PgRow(&row), &self.limits)? {
                break;
            }
            read += 1;
            last = Some(id);
        }
        let stopped = batch.cut || read == self.batch_size;
        Ok(Scan { batch, last: last.filter(|_| stopped), horizon, found })
    }
}

/// What one batch statement returned (see [`PgStream::batch`]); `found`: whether it had a row.
struct Scan {
    batch: Batch,
    last: Option<i64>,
    horizon: Option<i64>,
    found: bool,
}

impl Scan {
    fn into_batch(self) -> (Batch, Option<i64>, Option<i64>) {
        (self.batch, self.last, self.horizon)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::pg::config::PgConfig;
    use crate::pg::runtime;
    use crate::pg::schema;
    use crate::pg::tests::server_url;

    #[test]
    fn the_partition_reads_the_correlation_id_column() {
        assert_eq!(COLUMNS[CORRELATION_ID], "correlation_id");
    }

    fn ids(next: &Next) -> Vec<i64> {
        match next {
            Next::Rows((_, cells)) => cells.chunks(COLUMNS.len()).map(|row| row[0] as i64).collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn a_stream_stops_before_an_open_transactions_event_and_a_member_passes_the_others() {
        let Some(url) = server_url() else { return };
        let config = PgConfig {
            url,
            schema: format!("rust_stream_{}", std::process::id()),
            pool_size: 3,
            connect_timeout: std::time::Duration::from_secs(10),
            indexes: HashMap::new(),
        };
        let pool = Pool::new(&config).unwrap();
        let names = Names::new(&config.schema);
        runtime().unwrap().block_on(async {
            let mut conn = pool.get().await.unwrap();
            conn.client.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", names.schema)).await.unwrap();
            schema::ensure(&mut conn, &names, &HashMap::new()).await.unwrap();
            let insert = |key: &str| {
                format!("INSERT INTO {} (datetime, cmd, correlation_id) VALUES (0, 'n', '{key}')", names.queue)
            };
            for key in ["k0", "k1", "k2"] {
                conn.client.batch_execute(&insert(key)).await.unwrap();
            }
            let open = pool.get().await.unwrap();
            open.client.batch_execute(&format!("BEGIN; {}", insert("k0"))).await.unwrap();
            conn.client.batch_execute(&insert("k1")).await.unwrap();

            let mut stream = PgStream::new(pool.clone(), &names, Filter::default(), 0, None, 2);
            assert_eq!(ids(&stream.read().await.unwrap()), [1, 2]);
            assert_eq!(ids(&stream.read().await.unwrap()), [3]);
            assert_eq!(stream.read().await.unwrap(), Next::CaughtUp, "event 4 is still being written");
            assert_eq!(stream.position(), 3);
            open.client.batch_execute("COMMIT").await.unwrap();
            assert_eq!(ids(&stream.read().await.unwrap()), [4, 5]);

            // k1 is member 1's of two (FNV-1a): member 0 passes over it, a batch at a time.
            let partition = Some(Partition { member: 0, size: 2 });
            let mut member =
                PgStream::new(pool.clone(), &names, Filter { partition, ..Filter::default() }, 2, Some(5), 1);
            let kept: Vec<i64> =
                [member.read().await.unwrap(), member.read().await.unwrap()].iter().flat_map(ids).collect();
            assert_eq!(kept, [3, 4]);
            assert_eq!(member.read().await.unwrap(), Next::Finished);
            assert_eq!(member.position(), 5);
        });
    }
}
