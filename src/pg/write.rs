//! The write side of a PostgreSQL queue: [`PgBackend`], the [`Backend`] the writer thread
//! (`src/writer.rs`) commits groups to, so group commit, replies in call order and closing are
//! the SQLite queue's.
//!
//! A group is one transaction that first takes the schema's write lock (see [`super`]) and ends
//! with one `pg_notify`. Its calls are first inserted as one run (one `INSERT … SELECT FROM
//! unnest(…)` per run of events, whatever its length); only when PostgreSQL refuses an event,
//! or a call carries `expectedVersion` or `idempotencyKey`, is the group written call by call,
//! each in a savepoint, so that a call that fails fails alone. Under the write lock, the count
//! of a stream and the lookup of a key cannot race with another writer.

use std::collections::HashMap;
use std::ops::Range;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;
use tokio_postgres::SimpleQueryMessage;

use super::pool::{Conn, Pool, Pooled};
use super::read::{self, ReadSql};
use super::schema::Names;
use super::{consumer, runtime};
use crate::consumer::{Acquired, Claim, Member};
use crate::error::{Error, Result};
use crate::event::{conditional_parts, parse_batch, NewEvent, Part};
use crate::metrics::{Metrics, MetricsSnapshot, SqliteReport};
use crate::store::Stored;
use crate::store::{Appended, Checked};
use crate::version::Conflict;
use crate::writer::{Backend, Write};

/// The correlation ids events inherited from their parents, by event id, until JavaScript asks
/// for them. JavaScript builds each stored row from what it sent and the id it got; an event
/// without a correlation id of its own is the one thing it cannot know, and on PostgreSQL it
/// cannot ask the server synchronously. The writer records them before it delivers the group's
/// replies, and each is taken once, when its row is built.
#[derive(Default)]
pub struct Inherited(Mutex<HashMap<i64, String>>);

impl Inherited {
    /// The correlation id event `id` inherited, forgotten once asked for.
    pub fn take(&self, id: i64) -> Option<String> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(&id)
    }

    fn record(&self, inherited: impl IntoIterator<Item = (i64, String)>) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend(inherited);
    }
}

/// The statements of the write path, for one schema.
struct WriteSql {
    /// Begins a group's transaction, takes the write lock and reads the newest id.
    begin: String,
    commit: String,
    /// `setval` of the table's sequence, to be followed by the newest id.
    follow_sequence: String,
    insert: String,
    count: String,
    event_count: String,
    lookup_key: String,
    remember_key: String,
    read: ReadSql,
}

impl WriteSql {
    fn new(names: &Names) -> WriteSql {
        let sequence = format!("pg_get_serial_sequence('{}', 'id')::regclass", names.queue.replace('\'', "''"));
        WriteSql {
            // The newest id ever handed out: the table's, or the sequence's when higher (the
            // newest events were deleted, or a program inserted through the sequence), so that
            // no id is used twice.
            begin: format!(
                "BEGIN; SELECT pg_advisory_xact_lock({key});
                 SELECT GREATEST(COALESCE(max(id), 0), COALESCE(pg_sequence_last_value({sequence}), 0)) FROM {queue}",
                key = names.write_key,
                sequence = sequence,
                queue = names.queue
            ),
            commit: format!("SELECT pg_notify('{}', ''); COMMIT", names.channel),
            follow_sequence: format!("SELECT setval({sequence}, "),
            insert: format!(
                "INSERT INTO {} (id, version, datetime, \"user\", ip, cmd, data, correlation_id, causation_id, metadata)
                 SELECT * FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::text[], $5::text[], $6::text[],
                                      $7::text[], $8::text[], $9::int8[], $10::text[])",
                names.queue
            ),
            count: format!("SELECT count(*) FROM {} WHERE correlation_id = $1", names.queue),
            event_count: format!("SELECT count(*) FROM {}", names.queue),
            lookup_key: format!(
                "SELECT k.event_id FROM {} k JOIN {} q ON q.id = k.event_id WHERE k.key = $1",
                names.keys, names.queue
            ),
            remember_key: format!(
                "INSERT INTO {} (key, event_id) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET event_id = excluded.event_id",
                names.keys
            ),
            read: ReadSql::new(names),
        }
    }
}

/// How a group is written: see the module's documentation.
#[derive(Clone, Copy)]
enum Pass {
    OneRun,
    CallByCall,
}

/// What one call did, inside the group's transaction.
struct Done {
    checked: Checked,
    /// The values of the events first stored under the keys this call repeated, by id.
    first_rows: HashMap<i64, String>,
}

pub struct PgBackend {
    pool: Pool,
    names: Names,
    sql: WriteSql,
    metrics: Metrics,
    inherited: Arc<Inherited>,
}

/// A group's transaction in progress.
struct Txn<'c> {
    conn: &'c mut Conn,
    /// The id the next event gets. Ids are handed out here, under the write lock, rather than
    /// by the sequence, which a rolled-back call or pass would leave with a hole: so a call
    /// that fails leaves no gap, as on SQLite.
    next_id: i64,
    /// The correlation ids events of the group inherited, by event id.
    inherited: Vec<(i64, String)>,
}

impl PgBackend {
    pub fn new(pool: Pool, names: &Names, inherited: Arc<Inherited>) -> PgBackend {
        PgBackend { pool, names: names.clone(), sql: WriteSql::new(names), metrics: Metrics::default(), inherited }
    }

    /// Runs `write` on a connection of the pool, the writer thread waiting for it.
    fn pooled<T>(&self, write: impl AsyncFnOnce(&mut Conn, &Names) -> Result<T>) -> Result<T> {
        runtime()?.block_on(async {
            let mut conn = self.pool.get().await?;
            write(&mut conn, &self.names).await
        })
    }

    /// The group in one transaction: `Err` when the transaction failed (none of it is stored).
    async fn group(&self, writes: &[Write]) -> Result<(Vec<Result<Done>>, Vec<(i64, String)>)> {
        let mut conn = self.pool.get().await?;
        let calls: Vec<Result<Vec<NewEvent<'_>>>> = writes.iter().map(|write| parse_batch(&write.payload)).collect();
        let conditional = calls.iter().flatten().flatten().any(NewEvent::is_conditional);
        if !conditional {
            match self.transaction(&mut conn, &calls, Pass::OneRun).await {
                Err(err) if is_call_error(&err) => {}
                outcome => return outcome,
            }
        }
        self.transaction(&mut conn, &calls, Pass::CallByCall).await
    }

    /// One pass over the group in a transaction under the write lock, committed with the
    /// group's notification; rolled back when it fails (and the connection closed when even
    /// that fails: its state is unknown).
    async fn transaction(
        &self,
        conn: &mut Pooled,
        calls: &[Result<Vec<NewEvent<'_>>>],
        pass: Pass,
    ) -> Result<(Vec<Result<Done>>, Vec<(i64, String)>)> {
        match self.pass(conn, calls, pass).await {
            Ok(done) => Ok(done),
            Err(err) => {
                if conn.client.batch_execute("ROLLBACK").await.is_err() {
                    conn.discard();
                }
                Err(err)
            }
        }
    }

    async fn pass(
        &self,
        conn: &mut Conn,
        calls: &[Result<Vec<NewEvent<'_>>>],
        pass: Pass,
    ) -> Result<(Vec<Result<Done>>, Vec<(i64, String)>)> {
        let newest = conn.client.simple_query(&self.sql.begin).await?.into_iter().find_map(|message| match message {
            SimpleQueryMessage::Row(row) => row.get(0).and_then(|id| id.parse::<i64>().ok()),
            _ => None,
        });
        let newest =
            newest.ok_or_else(|| Error::Postgres { message: "the newest id was not read".into(), pg_code: None })?;
        let mut txn = Txn { conn, next_id: newest + 1, inherited: Vec::new() };
        let results = match pass {
            Pass::OneRun => self.as_one_run(&mut txn, calls).await?,
            Pass::CallByCall => self.call_by_call(&mut txn, calls).await?,
        };
        let mut commit = String::new();
        if txn.next_id > newest + 1 {
            // The sequence follows, for programs that insert without an id. A sequence is not
            // transactional: a commit that fails after it would leave the next group a gap.
            // So the checks deferred to the commit run first, and what is left to fail then
            // is the connection, whose calls reject with ERR_CONNECTION either way.
            commit = format!("SET CONSTRAINTS ALL IMMEDIATE; {}{}, true); ", self.sql.follow_sequence, txn.next_id - 1);
        }
        commit.push_str(&self.sql.commit);
        txn.conn.client.batch_execute(&commit).await?;
        Ok((results, txn.inherited))
    }

    /// Every call's events as one run, each call's result its share of the ids. A call whose
    /// payload did not parse fails alone, before anything is written.
    async fn as_one_run(&self, txn: &mut Txn<'_>, calls: &[Result<Vec<NewEvent<'_>>>]) -> Result<Vec<Result<Done>>> {
        let mut events: Vec<&NewEvent<'_>> = Vec::new();
        let places: Vec<Result<Range<usize>>> = calls
            .iter()
            .map(|call| {
                let start = events.len();
                events.extend(call.as_ref().map_err(Error::clone)?);
                Ok(start..events.len())
            })
            .collect();
        let mut checked = Checked::default();
        self.insert_run(txn, &events, &mut checked).await?;
        Ok(places.into_iter().map(|place| place.map(|at| done(checked.first_id + at.start as i64, at.len()))).collect())
    }

    /// Each call in a savepoint of its own.
    async fn call_by_call(&self, txn: &mut Txn<'_>, calls: &[Result<Vec<NewEvent<'_>>>]) -> Result<Vec<Result<Done>>> {
        let mut results = Vec::with_capacity(calls.len());
        for call in calls {
            let events = match call {
                Ok(events) => events,
                Err(err) => {
                    results.push(Err(err.clone()));
                    continue;
                }
            };
            let (next_id, inherited) = (txn.next_id, txn.inherited.len());
            txn.conn.client.batch_execute("SAVEPOINT call").await?;
            match self.insert_call(txn, events).await {
                Ok(done) => {
                    txn.conn.client.batch_execute("RELEASE call").await?;
                    results.push(Ok(done));
                }
                Err(err) if is_call_error(&err) => {
                    txn.conn.client.batch_execute("ROLLBACK TO call; RELEASE call").await?;
                    txn.next_id = next_id;
                    txn.inherited.truncate(inherited);
                    results.push(Err(err));
                }
                Err(err) => return Err(err),
            }
        }
        Ok(results)
    }

    /// One call's events, its stream conditions honoured as on SQLite
    /// (`Store::append_checked`): a repeated key leaves its event out, an expected version
    /// that does not hold fails the call.
    async fn insert_call(&self, txn: &mut Txn<'_>, events: &[NewEvent<'_>]) -> Result<Done> {
        let mut checked = Checked::default();
        let mut first_rows = HashMap::new();
        for part in conditional_parts(events) {
            let index = match part {
                Part::Plain(run) => {
                    let run: Vec<_> = events[run].iter().collect();
                    self.insert_run(txn, &run, &mut checked).await?;
                    continue;
                }
                Part::Conditional(index) => index,
            };
            let e = &events[index];
            let correlation_id = self.correlation_for(txn.conn, e).await?;
            let key = e.idempotency_key();
            if let Some(key) = key {
                let statement = txn.conn.statement(&self.sql.lookup_key).await?;
                if let Some(row) = txn.conn.client.query_opt(&statement, &[&key]).await? {
                    let first: i64 = row.get(0);
                    checked.duplicates.push((index, first));
                    if let Some(values) = read::by_id(txn.conn, &self.sql.read, first).await? {
                        first_rows.insert(first, values);
                    }
                    continue;
                }
            }
            if let Some(expected) = e.expected_version() {
                self.check_version(txn.conn, index, correlation_id.as_deref(), expected).await?;
            }
            let id = self.insert(txn, &[(e, correlation_id.as_deref())]).await?;
            checked.stored(id, 1)?;
            if let (Some(own), None) = (&correlation_id, e.correlation_id()) {
                txn.inherited.push((id, own.clone()));
            }
            if let Some(key) = key {
                let statement = txn.conn.statement(&self.sql.remember_key).await?;
                txn.conn.client.execute(&statement, &[&key, &id]).await?;
            }
        }
        Ok(Done { checked, first_rows })
    }

    /// Inserts events without conditions, in order: as few statements as there are events
    /// that take their parent's correlation id (each must find a parent inserted just before).
    async fn insert_run(&self, txn: &mut Txn<'_>, events: &[&NewEvent<'_>], checked: &mut Checked) -> Result<()> {
        let mut done = 0;
        while done < events.len() {
            let rest = &events[done..];
            let own = rest.iter().take_while(|e| !inherits(e)).count();
            let (count, first_id) = if own > 0 {
                let rows: Vec<_> = rest[..own].iter().map(|e| (*e, e.correlation_id())).collect();
                (own, self.insert(txn, &rows).await?)
            } else {
                let correlation_id = self.correlation_for(txn.conn, rest[0]).await?;
                let id = self.insert(txn, &[(rest[0], correlation_id.as_deref())]).await?;
                if let Some(correlation_id) = correlation_id {
                    txn.inherited.push((id, correlation_id));
                }
                (1, id)
            };
            checked.stored(first_id, count)?;
            done += count;
        }
        Ok(())
    }

    /// Inserts rows (an event and the correlation id it is stored with) with one statement,
    /// with the next ids; the first of them.
    async fn insert(&self, txn: &mut Txn<'_>, rows: &[(&NewEvent<'_>, Option<&str>)]) -> Result<i64> {
        let first_id = txn.next_id;
        let ids: Vec<i64> = (first_id..).take(rows.len()).collect();
        let versions: Vec<i64> = rows.iter().map(|(e, _)| e.version()).collect();
        let datetimes: Vec<i64> = rows.iter().map(|(e, _)| e.datetime()).collect();
        let users: Vec<Option<&str>> = rows.iter().map(|(e, _)| e.user()).collect();
        let ips: Vec<Option<&str>> = rows.iter().map(|(e, _)| e.ip()).collect();
        let cmds: Vec<&str> = rows.iter().map(|(e, _)| e.cmd()).collect();
        let data: Vec<&str> = rows.iter().map(|(e, _)| e.data()).collect();
        let correlations: Vec<Option<&str>> = rows.iter().map(|(_, c)| *c).collect();
        let causations: Vec<Option<i64>> = rows.iter().map(|(e, _)| e.causation_id()).collect();
        let metadata: Vec<&str> = rows.iter().map(|(e, _)| e.metadata()).collect();
        let statement = txn.conn.statement(&self.sql.insert).await?;
        txn.conn
            .client
            .execute(
                &statement,
                &[&ids, &versions, &datetimes, &users, &ips, &cmds, &data, &correlations, &causations, &metadata],
            )
            .await?;
        txn.next_id += rows.len() as i64;
        Ok(first_id)
    }

    /// The correlation id an event is stored with: its own, or its parent's (found inside the
    /// transaction, so a parent earlier in the same group counts).
    async fn correlation_for(&self, conn: &mut Conn, e: &NewEvent<'_>) -> Result<Option<String>> {
        match (e.correlation_id(), e.causation_id()) {
            (Some(own), _) => Ok(Some(own.to_string())),
            (None, Some(parent)) => read::correlation_of(conn, &self.sql.read, parent).await,
            (None, None) => Ok(None),
        }
    }

    /// As [`crate::version::check`]: under the write lock, a count is the stream's version.
    async fn check_version(
        &self,
        conn: &mut Conn,
        index: usize,
        correlation_id: Option<&str>,
        expected: i64,
    ) -> Result<()> {
        let Some(correlation_id) = correlation_id else {
            return Err(Error::InvalidEvent(format!(
                "event {index}: expectedVersion needs a correlation id (its own, or inherited from an existing parent through causationId)"
            )));
        };
        let statement = conn.statement(&self.sql.count).await?;
        let actual: i64 = conn.client.query_one(&statement, &[&correlation_id]).await?.get(0);
        if actual == expected {
            return Ok(());
        }
        Err(Error::VersionConflict(Box::new(Conflict {
            correlation_id: correlation_id.to_string(),
            expected_version: expected,
            actual_version: actual,
            index,
        })))
    }

    async fn event_count(&self) -> Result<(i64, String)> {
        let mut conn = self.pool.get().await?;
        let statement = conn.statement(&self.sql.event_count).await?;
        let events: i64 = conn.client.query_one(&statement, &[]).await?.get(0);
        let synchronous: String = conn.client.query_one("SHOW synchronous_commit", &[]).await?.get(0);
        Ok((events, synchronous))
    }
}

fn done(first_id: i64, count: usize) -> Done {
    Done { checked: Checked { first_id, count, duplicates: Vec::new() }, first_rows: HashMap::new() }
}

/// Whether an error is the call's own (its events, its conditions, a statement PostgreSQL
/// refused), which a savepoint undoes, rather than the connection's, which fails the group.
fn is_call_error(err: &Error) -> bool {
    !matches!(err, Error::Connection { .. } | Error::QueueClosed)
}

/// A child with no correlation id of its own joins its parent's transaction.
fn inherits(e: &&NewEvent<'_>) -> bool {
    e.correlation_id().is_none() && e.causation_id().is_some()
}

/// `synchronous_commit`'s settings, for the `synchronous` field of `getMetrics()`.
const SYNCHRONOUS_COMMIT: [&str; 5] = ["OFF", "LOCAL", "REMOTE_WRITE", "ON", "REMOTE_APPLY"];

impl Backend for PgBackend {
    fn commit_group(&mut self, writes: &[Write]) -> Result<Vec<Result<Stored>>> {
        let started = Instant::now();
        let outcome = runtime()?.block_on(self.group(writes));
        let took = started.elapsed();
        let (results, inherited) = match outcome {
            Ok(done) => done,
            Err(err) => {
                writes.iter().for_each(|_| self.metrics.record_error());
                return Err(err);
            }
        };
        self.inherited.record(inherited);
        Ok(writes
            .iter()
            .zip(results)
            .map(|(write, result)| {
                let Done { checked, first_rows } = match result {
                    Ok(done) => done,
                    Err(err) => {
                        self.metrics.record_error();
                        return Err(err);
                    }
                };
                if checked.count > 0 {
                    self.metrics.record_write(write.kind, checked.count, took);
                }
                if checked.duplicates.is_empty() {
                    return Ok(Stored::Appended(Appended { first_id: checked.first_id, count: checked.count }));
                }
                let text = checked.to_json_with(|out, id| match first_rows.get(&id) {
                    Some(values) => {
                        out.push_str(values);
                        Ok(true)
                    }
                    None => Ok(false),
                })?;
                Ok(Stored::Checked(Appended { first_id: checked.first_id, count: checked.count }, text))
            })
            .collect())
    }

    // A consumer's writes, each on a connection of the pool (see `crate::pg::consumer`).

    fn consumer_acquire(&mut self, claim: &Claim<'_>) -> Result<Acquired> {
        self.pooled(async |conn, names| consumer::acquire(conn, names, claim).await)
    }

    fn consumer_commit(&mut self, at: &Member<'_>, token: &str, position: i64, now: i64) -> Result<()> {
        self.pooled(async |conn, names| consumer::commit(conn, names, at, token, position, now).await)
    }

    fn consumer_renew(&mut self, at: &Member<'_>, token: &str, now: i64) -> Result<bool> {
        self.pooled(async |conn, names| consumer::renew(conn, names, at, token, now).await)
    }

    fn consumer_release(&mut self, at: &Member<'_>, token: &str) -> Result<()> {
        self.pooled(async |conn, names| consumer::release(conn, names, at, token).await)
    }

    fn reset_consumer(&mut self, name: &str, position: i64, now: i64, dead: &[String]) -> Result<Option<String>> {
        self.pooled(async |conn, names| consumer::reset(conn, names, name, position, now, dead).await)
    }

    fn metrics(&mut self) -> Result<MetricsSnapshot> {
        let (event_count, synchronous) = runtime()?.block_on(self.event_count())?;
        let synchronous = synchronous.to_uppercase();
        Ok(self.metrics.snapshot(SqliteReport {
            // PostgreSQL always writes ahead.
            journal_mode: "WAL".into(),
            synchronous: SYNCHRONOUS_COMMIT.iter().find(|s| **s == synchronous).copied().unwrap_or("UNKNOWN"),
            event_count,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::WriteKind;
    use crate::pg::config::PgConfig;
    use crate::pg::schema;
    use crate::pg::tests::server_url;

    fn write(cmd: &str, extra: &str) -> Write {
        let payload = format!(r#"[["{cmd}",{{"k":1}},"","",1,"c",null,{{}},1{extra}]]"#);
        Write { payload, kind: WriteKind::Single, conditional: !extra.is_empty() }
    }

    /// A backend on a fresh schema of the test server, where an event `boom` is refused.
    fn backend(url: String, name: &str) -> (PgBackend, Pool, Names) {
        let config = PgConfig {
            url,
            schema: format!("rust_{name}_{}", std::process::id()),
            pool_size: 2,
            connect_timeout: std::time::Duration::from_secs(10),
            indexes: HashMap::new(),
        };
        let pool = Pool::new(&config).unwrap();
        let names = Names::new(&config.schema);
        let rt = runtime().unwrap();
        rt.block_on(async {
            let mut conn = pool.get().await.unwrap();
            conn.client.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", names.schema)).await.unwrap();
            schema::ensure(&mut conn, &names, &HashMap::new()).await.unwrap();
            conn.client
                .batch_execute(&format!(
                    "CREATE FUNCTION {s}.refuse() RETURNS trigger LANGUAGE plpgsql AS
                     $$ BEGIN RAISE EXCEPTION 'boom refused'; END $$;
                     CREATE TRIGGER refuse BEFORE INSERT ON {q} FOR EACH ROW WHEN (NEW.cmd = 'boom')
                     EXECUTE FUNCTION {s}.refuse();",
                    s = names.schema,
                    q = names.queue
                ))
                .await
                .unwrap();
        });
        (PgBackend::new(pool.clone(), &names, Arc::default()), pool, names)
    }

    fn ids(results: &[Result<Stored>]) -> Vec<std::result::Result<i64, &'static str>> {
        results
            .iter()
            .map(|r| match r {
                Ok(Stored::Appended(a)) => Ok(a.first_id),
                Ok(Stored::Checked(..)) => Err("checked"),
                Err(err) => Err(err.code()),
            })
            .collect()
    }

    #[test]
    fn a_call_that_fails_in_a_group_fails_alone_and_leaves_no_gap() {
        let Some(url) = server_url() else { return };
        let (mut backend, pool, names) = backend(url, "group");
        let mut malformed = write("x", "");
        malformed.payload.push('!');
        let group = [write("a", ""), write("boom", ""), malformed, write("d", "")];
        let results = backend.commit_group(&group).unwrap();
        assert_eq!(ids(&results), [Ok(1), Err("ERR_POSTGRES"), Err("ERR_INVALID_EVENT"), Ok(2)]);
        let stored: Vec<(i64, String)> = runtime()
            .unwrap()
            .block_on(async {
                let conn = pool.get().await.unwrap();
                conn.client.query(&format!("SELECT id, cmd FROM {} ORDER BY id", names.queue), &[]).await.unwrap()
            })
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        assert_eq!(stored, [(1, "a".to_string()), (2, "d".to_string())]);
        let metrics = backend.metrics().unwrap();
        assert_eq!((metrics.writes_total, metrics.errors_total, metrics.event_count), (2, 2, 2));
    }

    #[test]
    fn a_group_whose_commit_fails_leaves_no_gap_in_the_ids() {
        let Some(url) = server_url() else { return };
        let (mut backend, pool, names) = backend(url, "commit");
        runtime().unwrap().block_on(async {
            let conn = pool.get().await.unwrap();
            conn.client
                .batch_execute(&format!(
                    "CREATE FUNCTION {s}.at_commit() RETURNS trigger LANGUAGE plpgsql AS
                     $$ BEGIN RAISE EXCEPTION 'refused at commit'; END $$;
                     CREATE CONSTRAINT TRIGGER at_commit AFTER INSERT ON {q} DEFERRABLE INITIALLY DEFERRED
                     FOR EACH ROW WHEN (NEW.cmd = 'late') EXECUTE FUNCTION {s}.at_commit();",
                    s = names.schema,
                    q = names.queue
                ))
                .await
                .unwrap();
        });
        // A check deferred to the commit belongs to no call: the group fails whole.
        let failed = backend.commit_group(&[write("a", ""), write("late", "")]).err().map(|err| err.code());
        assert_eq!(failed, Some("ERR_POSTGRES"));
        assert_eq!(ids(&backend.commit_group(&[write("b", "")]).unwrap()), [Ok(1)]);
    }

    #[test]
    fn conditions_are_checked_in_the_calls_savepoint() {
        let Some(url) = server_url() else { return };
        let (mut backend, _pool, _names) = backend(url, "conditions");
        let first = backend.commit_group(&[write("a", r#","k""#), write("b", "")]).unwrap();
        // An expected version is [count, key]: `null` for no key.
        assert_eq!(ids(&first), [Err("ERR_INVALID_EVENT"), Ok(1)], "an expected version must be a number");
        let group = [write("a", r#",1,"key""#), write("c", r#",1,null"#), write("d", r#",null,"key""#)];
        let results = backend.commit_group(&group).unwrap();
        assert_eq!(ids(&results[..2]), [Ok(2), Err("ERR_VERSION_CONFLICT")]);
        let Ok(Stored::Checked(_, text)) = &results[2] else { panic!("a repeated key: {:?}", results[2]) };
        let reply: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(reply["duplicates"], serde_json::json!([[0, 2]]));
        assert_eq!(reply["rows"][0][5], "a", "the row first stored with the key");
    }
}
