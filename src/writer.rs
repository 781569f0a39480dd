//! The writer of the async queue (`openQueue`): one thread that owns the write side of a
//! backend and commits together, in one transaction, the writes that arrive while it is busy
//! (group commit).
//!
//! Calls are queued in an inbox. The thread takes everything the inbox holds, commits the
//! writes among it as one group (each call in a savepoint of its own, so that a call that fails
//! fails alone), and hands the replies, in the order of the calls, to `deliver` as one JSON text:
//! the N-API layer makes that one crossing to JavaScript per group, whatever its size. A write
//! that finds the thread idle is taken at once, so nothing ever waits on a timer; while the
//! thread commits, new calls accumulate and form the next group, so N concurrent producers share
//! one commit instead of paying one each.
//!
//! The storage behind the thread is a [`Backend`]: SQLite's is [`SqliteBackend`]; another
//! database plugs in by implementing the trait.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use serde::Serialize;

use crate::consumer::{self, Acquired, Claim, Member};
use crate::error::{Error, Result};
use crate::metrics::{MetricsSnapshot, WriteKind};
use crate::store::{Store, Stored};

/// One `store` or `storeBulk` call: its payload (see [`crate::event`]), which it was, and
/// whether its events carry stream conditions (`expectedVersion`, `idempotencyKey`).
#[derive(Debug)]
pub struct Write {
    pub payload: String,
    pub kind: WriteKind,
    /// Said by the caller, so that a plain call alone keeps the single store's shortcut
    /// without a second look at its events; a call with conditions is always checked (a
    /// plain call that carries them is refused or, in a group, checked all the same).
    pub conditional: bool,
}

impl Write {
    /// The writes JavaScript submits together (`lib/sqlite-backend.js`): one per line, each a
    /// payload after a letter that says which call it came from, `B` for `storeBulk` and `S`
    /// for `store`, in lower case (`b`, `s`) when its events carry stream conditions.
    /// `JSON.stringify` never writes a line break, so none is inside a payload. A line that is
    /// not of this shape still makes one write, whose payload fails to parse: each line gets
    /// its reply.
    pub fn lines(text: &str) -> impl Iterator<Item = Write> + '_ {
        text.split('\n').map(|line| Write {
            payload: line.get(1..).unwrap_or_default().to_string(),
            kind: if line.starts_with(['B', 'b']) { WriteKind::Batch } else { WriteKind::Single },
            conditional: line.starts_with(['b', 's']),
        })
    }
}

/// One consumer row, owned: see [`crate::consumer::Member`].
#[derive(Debug)]
pub struct ConsumerAt {
    pub name: String,
    pub member: u32,
}

impl ConsumerAt {
    pub fn at(&self) -> Member<'_> {
        Member { name: &self.name, member: self.member }
    }
}

/// What the writer is asked to do, in the order of the calls. Every request that writes runs
/// here, so that JavaScript never waits for the write lock; `now` is the clock, in
/// milliseconds since the Unix epoch, when the request was made (see [`crate::consumer`]).
#[derive(Debug)]
pub enum Request {
    Write(Write),
    /// `getMetrics()`: the backend's write metrics, read between two groups.
    Metrics,
    /// A consumer starts reading: [`Backend::consumer_acquire`].
    ConsumerAcquire {
        at: ConsumerAt,
        size: u32,
        token: String,
        now: i64,
        dead: Vec<String>,
    },
    /// A consumer commits a position: [`Backend::consumer_commit`].
    ConsumerCommit {
        at: ConsumerAt,
        token: String,
        position: i64,
        now: i64,
    },
    /// A consumer's lease renewed: [`Backend::consumer_renew`].
    ConsumerRenew {
        at: ConsumerAt,
        token: String,
        now: i64,
    },
    /// A consumer stops reading: [`Backend::consumer_release`].
    ConsumerRelease {
        at: ConsumerAt,
        token: String,
    },
    /// `resetConsumer()`: [`Backend::reset_consumer`].
    ResetConsumer {
        name: String,
        position: i64,
        now: i64,
        dead: Vec<String>,
    },
    /// Commit everything asked before, then close the backend and stop. Nothing is accepted
    /// after it.
    Close,
}

/// The storage a [`Writer`] commits to. Its methods run on the writer thread only.
pub trait Backend: Send + 'static {
    /// Stores the writes of one group in one transaction, each call in a savepoint of its own:
    /// once committed, the result of each call, in order (a call that failed stored nothing).
    /// A call with stream conditions is checked in its savepoint, the calls before it in the
    /// group counted: a conflict is its own [`Error::VersionConflict`], and repeats of
    /// idempotency keys come back as [`Stored::Checked`].
    /// `Err` when the transaction itself failed: then none of the calls is stored.
    fn commit_group(&mut self, writes: &[Write]) -> Result<Vec<Result<Stored>>>;

    /// The write metrics since the backend was opened.
    fn metrics(&mut self) -> Result<MetricsSnapshot>;

    /// Takes a consumer's lease (see [`crate::consumer::acquire`]).
    fn consumer_acquire(&mut self, claim: &Claim<'_>) -> Result<Acquired>;

    /// Stores a consumer's position if `token` holds its lease (see [`crate::consumer::commit`]).
    fn consumer_commit(&mut self, at: &Member<'_>, token: &str, position: i64, now: i64) -> Result<()>;

    /// Extends the lease of `token`; false when it holds it no more.
    fn consumer_renew(&mut self, at: &Member<'_>, token: &str, now: i64) -> Result<bool>;

    /// Gives the lease of `token` up, if it still holds it.
    fn consumer_release(&mut self, at: &Member<'_>, token: &str) -> Result<()>;

    /// Puts every member of a consumer at `position`; the owner token of a reader holding it
    /// instead (see [`crate::consumer::reset`]).
    fn reset_consumer(&mut self, name: &str, position: i64, now: i64, dead: &[String]) -> Result<Option<String>>;
}

/// The SQLite backend: a store whose connection the writer thread uses for every write. For a
/// file it is a connection of the writer's own; `:memory:` cannot be opened twice, so there it
/// is the queue's own store, shared with the reads.
pub struct SqliteBackend(pub Arc<Mutex<Store>>);

impl SqliteBackend {
    fn store(&self) -> MutexGuard<'_, Store> {
        // A SQLite transaction cut short rolls back: a poisoned lock still guards a usable store.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Backend for SqliteBackend {
    fn commit_group(&mut self, writes: &[Write]) -> Result<Vec<Result<Stored>>> {
        self.store().append_group(writes)
    }

    fn metrics(&mut self) -> Result<MetricsSnapshot> {
        self.store().metrics()
    }

    fn consumer_acquire(&mut self, claim: &Claim<'_>) -> Result<Acquired> {
        let store = self.store();
        store.streams_ready()?;
        consumer::acquire(store.conn(), claim)
    }

    fn consumer_commit(&mut self, at: &Member<'_>, token: &str, position: i64, now: i64) -> Result<()> {
        consumer::commit(self.store().conn(), at, token, position, now)
    }

    fn consumer_renew(&mut self, at: &Member<'_>, token: &str, now: i64) -> Result<bool> {
        consumer::renew(self.store().conn(), at, token, now)
    }

    fn consumer_release(&mut self, at: &Member<'_>, token: &str) -> Result<()> {
        consumer::release(self.store().conn(), at, token)
    }

    fn reset_consumer(&mut self, name: &str, position: i64, now: i64, dead: &[String]) -> Result<Option<String>> {
        let store = self.store();
        store.streams_ready()?;
        consumer::reset(store.conn(), name, position, now, dead)
    }
}

/// `getMetrics()` of the async queue: the backend's, and the commits the groups took.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WriterMetrics<'a> {
    #[serde(flatten)]
    backend: &'a MetricsSnapshot,
    /// Transactions committed (one per group): fewer than the calls when groups formed.
    commits_total: u64,
}

#[derive(Default)]
struct State {
    requests: Vec<Request>,
    /// The thread is waiting for requests: a submit must wake it.
    idle: bool,
    /// `Close` was submitted: nothing more is accepted.
    closing: bool,
}

#[derive(Default)]
struct Inbox {
    state: Mutex<State>,
    wake: Condvar,
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned one still holds whole requests.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every request queued, waiting for one when there is none.
    fn take(&self) -> Vec<Request> {
        let mut state = self.lock();
        while state.requests.is_empty() {
            state.idle = true;
            state = self.wake.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        state.idle = false;
        std::mem::take(&mut state.requests)
    }
}

/// The handle of a writer thread. Dropping it closes the writer once the calls already
/// submitted are committed; it does not wait for that.
pub struct Writer {
    inbox: Arc<Inbox>,
}

impl Writer {
    /// Starts the thread. `deliver` runs on it, once per group, with the replies of the group's
    /// calls as a JSON array in call order (see [`Replies`]); after the reply to `Close` the
    /// thread has closed the backend and ends.
    pub fn spawn<B: Backend>(backend: B, deliver: impl FnMut(String) + Send + 'static) -> Result<Writer> {
        let inbox = Arc::new(Inbox::default());
        let theirs = Arc::clone(&inbox);
        std::thread::Builder::new()
            .name("eventlite-writer".into())
            .spawn(move || run(backend, &theirs, deliver))
            .map_err(|err| Error::Sqlite {
                code: "SQLITE_ERROR",
                message: format!("cannot start the writer thread: {err}"),
            })?;
        Ok(Writer { inbox })
    }

    /// Queues a request; its reply comes through `deliver`, after those of every earlier one.
    pub fn submit(&self, request: Request) -> Result<()> {
        self.submit_all([request])
    }

    /// Queues requests, in order; as [`Writer::submit`], under one lock and one wake-up.
    pub fn submit_all(&self, requests: impl IntoIterator<Item = Request>) -> Result<()> {
        let mut state = self.inbox.lock();
        for request in requests {
            if state.closing {
                return Err(Error::QueueClosed);
            }
            state.closing = matches!(request, Request::Close);
            state.requests.push(request);
        }
        if state.idle {
            state.idle = false;
            self.inbox.wake.notify_one();
        }
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Already closing is the only refusal, and then there is nothing left to do.
        let _ = self.submit(Request::Close);
    }
}

/// The thread: takes what the inbox holds, commits its writes as one group, delivers the
/// replies; until `Close`.
fn run<B: Backend>(backend: B, inbox: &Inbox, mut deliver: impl FnMut(String)) {
    let mut backend = Some(backend);
    let mut commits = 0;
    while let Some(open) = backend.as_mut() {
        let requests = inbox.take();
        let mut replies = Replies::with_capacity(requests.len());
        let mut writes = Vec::new();
        for request in requests {
            match request {
                Request::Write(write) => writes.push(write),
                Request::Close => {
                    commit(open, &mut writes, &mut replies, &mut commits);
                    // Closed before the reply, so that the file is released when `close()` resolves.
                    backend = None;
                    replies.closed();
                    break;
                }
                other => {
                    commit(open, &mut writes, &mut replies, &mut commits);
                    answer(open, other, commits, &mut replies);
                }
            }
        }
        if let Some(open) = backend.as_mut() {
            commit(open, &mut writes, &mut replies, &mut commits);
        }
        deliver(replies.finish());
    }
}

/// Runs a request other than a write or `Close`, after the writes asked before it were
/// committed, and adds its reply.
fn answer<B: Backend>(backend: &mut B, request: Request, commits: u64, replies: &mut Replies) {
    let reply = match request {
        Request::Metrics => backend.metrics().map(|snapshot| Replies::metrics_text(&snapshot, commits)),
        Request::ConsumerAcquire { at, size, token, now, dead } => {
            let claim = Claim { at: at.at(), size, token: &token, now, dead: &dead };
            backend.consumer_acquire(&claim).map(|acquired| match acquired {
                Acquired::Position(position) => itoa::Buffer::new().format(position).to_string(),
                Acquired::Busy(owner) => Replies::string(&owner),
            })
        }
        Request::ConsumerCommit { at, token, position, now } => {
            backend.consumer_commit(&at.at(), &token, position, now).map(|()| "null".to_string())
        }
        Request::ConsumerRenew { at, token, now } => {
            backend.consumer_renew(&at.at(), &token, now).map(|held| held.to_string())
        }
        Request::ConsumerRelease { at, token } => {
            backend.consumer_release(&at.at(), &token).map(|()| "null".to_string())
        }
        Request::ResetConsumer { name, position, now, dead } => backend
            .reset_consumer(&name, position, now, &dead)
            .map(|owner| owner.map_or_else(|| "null".to_string(), |owner| Replies::string(&owner))),
        // Handled by `run`, which never passes them here.
        Request::Write(_) | Request::Close => return,
    };
    match reply {
        Ok(text) => replies.push(&text),
        Err(err) => replies.error(&err),
    }
}

/// Commits the writes gathered so far as one group and adds their replies.
fn commit<B: Backend>(backend: &mut B, writes: &mut Vec<Write>, replies: &mut Replies, commits: &mut u64) {
    if writes.is_empty() {
        return;
    }
    match backend.commit_group(writes) {
        Ok(results) => {
            *commits += 1;
            for result in &results {
                match result {
                    Ok(stored) => replies.stored(stored),
                    Err(err) => replies.error(err),
                }
            }
        }
        Err(err) => {
            let reply = Replies::error_text(&err);
            writes.iter().for_each(|_| replies.push(&reply));
        }
    }
    writes.clear();
}

/// The replies of a group as JSON text, one element per request in call order: a write's first
/// id (a number), or for a call with stream conditions what `appendChecked` of the synchronous
/// queue replies (see `lib/write.js` `checkedOutcome`): the first id, `{"firstId", "count",
/// "duplicates", "rows"}` when it left repeats out, `{"conflict": {…}}` when an expected
/// version did not hold; `{"error": code, "message": text}` for a failure; the metrics object
/// for `Metrics` (the same as `getMetrics()` of the synchronous queue, plus `commitsTotal`);
/// for the consumer requests what the synchronous queue's native methods return (a position
/// or an owner token, `true`/`false` for a renewal, else `null`); `null` for `Close`.
pub struct Replies {
    text: String,
}

impl Replies {
    fn with_capacity(requests: usize) -> Replies {
        let mut text = String::with_capacity(2 + 10 * requests);
        text.push('[');
        Replies { text }
    }

    /// Adds one reply, as JSON text.
    fn push(&mut self, reply: &str) {
        if self.text.len() > 1 {
            self.text.push(',');
        }
        self.text.push_str(reply);
    }

    fn stored(&mut self, stored: &Stored) {
        match stored {
            Stored::Appended(appended) => self.push(itoa::Buffer::new().format(appended.first_id)),
            Stored::Checked(_, reply) => self.push(reply),
        }
    }

    fn error(&mut self, err: &Error) {
        match err {
            // A call's outcome rather than a failure of the writer: JavaScript makes the same
            // error of it as the synchronous queue does.
            Error::VersionConflict(conflict) => self.push(&format!(r#"{{"conflict":{}}}"#, conflict.to_json())),
            _ => self.push(&Replies::error_text(err)),
        }
    }

    /// The error's fields are its code and message; JavaScript copies every key but `error`
    /// and `message` onto the `Error` it rejects with, should an error carry more.
    fn error_text(err: &Error) -> String {
        let message = Replies::string(&err.to_string());
        let code = err.code();
        match err.pg_code() {
            Some(state) => format!(r#"{{"error":"{code}","message":{message},"pgCode":"{state}"}}"#),
            None => format!(r#"{{"error":"{code}","message":{message}}}"#),
        }
    }

    /// A string as JSON text. Serializing a string cannot fail.
    fn string(text: &str) -> String {
        serde_json::to_string(text).unwrap_or_default()
    }

    fn metrics_text(snapshot: &MetricsSnapshot, commits: u64) -> String {
        let metrics = WriterMetrics { backend: snapshot, commits_total: commits };
        // Serializing numbers and strings cannot fail.
        serde_json::to_string(&metrics).unwrap_or_default()
    }

    fn closed(&mut self) {
        self.push("null");
    }

    fn finish(mut self) -> String {
        self.text.push(']');
        self.text
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::{self, Receiver};

    use serde_json::json;

    use super::*;
    use crate::store::{Config, MEMORY};

    fn write(cmd: &str, correlation: &str) -> Write {
        Write {
            payload: format!(r#"[["{cmd}",{{}},"","",1,"{correlation}",null,{{}},1]]"#),
            kind: WriteKind::Single,
            conditional: false,
        }
    }

    fn bulk(cmds: &[&str]) -> Write {
        let events: Vec<String> = cmds.iter().map(|c| format!(r#"["{c}",{{}},"","",1,"b",null,{{}},1]"#)).collect();
        Write { payload: format!("[{}]", events.join(",")), kind: WriteKind::Batch, conditional: false }
    }

    fn memory_store() -> Arc<Mutex<Store>> {
        Arc::new(Mutex::new(Store::open(Config::new(MEMORY)).unwrap()))
    }

    fn cmds(store: &Arc<Mutex<Store>>) -> Vec<(i64, String)> {
        let store = store.lock().unwrap();
        let mut stmt = store.conn().prepare("SELECT id, cmd FROM queue ORDER BY id").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().collect::<rusqlite::Result<_>>().unwrap()
    }

    /// A trigger that refuses any event whose cmd is `boom`, as SQLite would refuse a row.
    fn refuse_boom(store: &Arc<Mutex<Store>>) {
        let sql = "CREATE TRIGGER refuse_boom BEFORE INSERT ON queue WHEN NEW.cmd = 'boom' \
                   BEGIN SELECT RAISE(ABORT, 'boom refused'); END";
        store.lock().unwrap().conn().execute_batch(sql).unwrap();
    }

    #[test]
    fn a_call_that_fails_in_a_group_fails_alone_and_leaves_no_gap() {
        let store = memory_store();
        refuse_boom(&store);
        let mut backend = SqliteBackend(Arc::clone(&store));
        let mut malformed = write("x", "c");
        malformed.payload.push('!');
        let group = [write("a", "c"), bulk(&["b1", "boom", "b3"]), malformed, write("d", "c"), bulk(&["e1", "e2"])];
        let results = backend.commit_group(&group).unwrap();
        let codes: Vec<_> = results
            .iter()
            .map(|r| r.as_ref().map(|s| (s.appended().first_id, s.appended().count)).map_err(|e| e.code()))
            .collect();
        assert_eq!(codes, [Ok((1, 1)), Err("SQLITE_CONSTRAINT"), Err("ERR_INVALID_EVENT"), Ok((2, 1)), Ok((3, 2))]);
        assert_eq!(cmds(&store), [(1, "a".into()), (2, "d".into()), (3, "e1".into()), (4, "e2".into())]);
        let metrics = backend.metrics().unwrap();
        assert_eq!((metrics.writes_total, metrics.errors_total, metrics.batch_writes_total), (4, 2, 1));
    }

    /// A `store` of one event with stream conditions: `expected` for its stream `correlation`
    /// and `key` (either may be JSON `null`).
    fn checked(cmd: &str, correlation: &str, expected: &str, key: &str) -> Write {
        let payload = format!(r#"[["{cmd}",{{}},"","",1,"{correlation}",null,{{}},1,{expected},{key}]]"#);
        Write { payload, kind: WriteKind::Single, conditional: true }
    }

    /// What a call of a group stored, as `(first id, count, its reply text when it left repeats
    /// out)`, or its error code.
    type Outcome<'a> = std::result::Result<(i64, usize, Option<&'a str>), &'static str>;

    fn outcomes(results: &[Result<Stored>]) -> Vec<Outcome<'_>> {
        results
            .iter()
            .map(|result| match result {
                Ok(Stored::Appended(a)) => Ok((a.first_id, a.count, None)),
                Ok(Stored::Checked(a, reply)) => Ok((a.first_id, a.count, Some(reply.as_str()))),
                Err(err) => Err(err.code()),
            })
            .collect()
    }

    #[test]
    fn expected_versions_in_a_group_count_the_calls_before_them() {
        let store = memory_store();
        let mut backend = SqliteBackend(Arc::clone(&store));
        let group = [
            write("a", "s"),
            checked("b", "s", "1", "null"),
            checked("stale", "s", "1", "null"),
            bulk(&["x"]),
            checked("c", "s", "2", "null"),
        ];
        let results = backend.commit_group(&group).unwrap();
        assert_eq!(
            outcomes(&results),
            [Ok((1, 1, None)), Ok((2, 1, None)), Err("ERR_VERSION_CONFLICT"), Ok((3, 1, None)), Ok((4, 1, None))]
        );
        let Err(Error::VersionConflict(conflict)) = &results[2] else { panic!("{:?}", results[2]) };
        assert_eq!((conflict.expected_version, conflict.actual_version, conflict.index), (1, 2, 0));
        assert_eq!(cmds(&store), [(1, "a".into()), (2, "b".into()), (3, "x".into()), (4, "c".into())]);
        let metrics = backend.metrics().unwrap();
        assert_eq!((metrics.writes_total, metrics.errors_total), (4, 1));
    }

    #[test]
    fn a_repeated_idempotency_key_in_a_group_stores_once() {
        let store = memory_store();
        let mut backend = SqliteBackend(Arc::clone(&store));
        let mixed = Write {
            payload: r#"[["m1",{},"","",1,"c",null,{},1],["m2",{},"","",1,"c",null,{},1,null,"k1"]]"#.into(),
            kind: WriteKind::Batch,
            conditional: true,
        };
        let group = [
            checked("first", "c", "null", r#""k1""#),
            write("plain", "c"),
            checked("again", "c", "null", r#""k1""#),
            mixed,
        ];
        let results = backend.commit_group(&group).unwrap();
        let got = outcomes(&results);
        assert_eq!(got[..2], [Ok((1, 1, None)), Ok((2, 1, None))]);
        // Every event a repeat: nothing stored, and the first event's row in the reply.
        let Ok((0, 0, Some(reply))) = got[2] else { panic!("{:?}", got[2]) };
        let reply: serde_json::Value = serde_json::from_str(reply).unwrap();
        assert_eq!(
            (&reply["firstId"], &reply["count"], &reply["duplicates"]),
            (&json!(0), &json!(0), &json!([[0, 1]]))
        );
        assert_eq!(reply["rows"].as_array().unwrap().len(), 1);
        let Ok((3, 1, Some(reply))) = got[3] else { panic!("{:?}", got[3]) };
        let reply: serde_json::Value = serde_json::from_str(reply).unwrap();
        assert_eq!(reply["duplicates"], json!([[1, 1]]));
        assert_eq!(cmds(&store), [(1, "first".into()), (2, "plain".into()), (3, "m1".into())]);
        // And across groups, and for a call alone.
        let results = backend.commit_group(&[checked("later", "c", "null", r#""k1""#)]).unwrap();
        assert!(matches!(outcomes(&results)[..], [Ok((0, 0, Some(_)))]));
        assert_eq!(cmds(&store).len(), 3);
    }

    #[test]
    fn a_plain_call_alone_that_carries_conditions_is_refused() {
        let store = memory_store();
        let mut backend = SqliteBackend(Arc::clone(&store));
        let mut unsaid = checked("a", "c", "5", "null");
        unsaid.conditional = false;
        let results = backend.commit_group(&[unsaid]).unwrap();
        assert_eq!(outcomes(&results), [Err("ERR_INVALID_EVENT")]);
        // In a group its conditions are checked, whatever the caller said.
        let mut unsaid = checked("a", "c", "5", "null");
        unsaid.conditional = false;
        let results = backend.commit_group(&[write("b", "c"), unsaid]).unwrap();
        assert_eq!(outcomes(&results), [Ok((1, 1, None)), Err("ERR_VERSION_CONFLICT")]);
    }

    #[test]
    fn a_conflict_replies_as_append_checked_does() {
        let mut replies = Replies::with_capacity(2);
        let conflict =
            crate::version::Conflict { correlation_id: "s".into(), expected_version: 1, actual_version: 2, index: 0 };
        replies.error(&Error::VersionConflict(Box::new(conflict)));
        replies.error(&Error::QueueClosed);
        let got: serde_json::Value = serde_json::from_str(&replies.finish()).unwrap();
        assert_eq!(
            got[0],
            json!({ "conflict": { "correlationId": "s", "expectedVersion": 1, "actualVersion": 2, "index": 0 } })
        );
        assert_eq!(got[1]["error"], "ERR_QUEUE_CLOSED");
    }

    #[test]
    fn consumer_requests_run_in_order_after_the_writes_before_them() {
        let store = memory_store();
        let (writer, replies) = writer(&store);
        let at = || ConsumerAt { name: "p".into(), member: 0 };
        let requests = [
            Request::Write(write("a", "c")),
            Request::ConsumerAcquire { at: at(), size: 1, token: "t".into(), now: 1_000, dead: vec![] },
            Request::ConsumerAcquire { at: at(), size: 1, token: "u".into(), now: 1_000, dead: vec![] },
            Request::ConsumerCommit { at: at(), token: "t".into(), position: 1, now: 1_000 },
            Request::ConsumerCommit { at: at(), token: "u".into(), position: 1, now: 1_000 },
            Request::ConsumerRenew { at: at(), token: "t".into(), now: 2_000 },
            Request::ResetConsumer { name: "p".into(), position: 0, now: 2_000, dead: vec![] },
            Request::ConsumerRelease { at: at(), token: "t".into() },
            Request::ResetConsumer { name: "p".into(), position: 0, now: 2_000, dead: vec![] },
            Request::ConsumerRenew { at: at(), token: "t".into(), now: 2_000 },
        ];
        writer.submit_all(requests).unwrap();
        let mut got = Vec::new();
        while got.len() < 10 {
            got.extend(replies.recv().unwrap().as_array().unwrap().clone());
        }
        assert_eq!(got[..4], [json!(1), json!(0), json!("t"), json!(null)]);
        assert_eq!(got[4]["error"], "ERR_CONSUMER_BUSY");
        assert_eq!(got[5..], [json!(true), json!("t"), json!(null), json!(null), json!(false)]);
        let store = store.lock().unwrap();
        let rows = consumer::list(store.conn()).unwrap();
        assert_eq!((rows[0].position, rows[0].lag), (0, 1));
    }

    #[test]
    fn a_failed_commit_stores_none_of_the_group() {
        let store = memory_store();
        // A deferred foreign key is checked at COMMIT: an event `late` makes the commit fail.
        store
            .lock()
            .unwrap()
            .conn()
            .execute_batch(
                "PRAGMA foreign_keys = ON;
                 CREATE TABLE parent (id INTEGER PRIMARY KEY);
                 CREATE TABLE child (parent INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);
                 CREATE TRIGGER orphan AFTER INSERT ON queue WHEN NEW.cmd = 'late'
                 BEGIN INSERT INTO child VALUES (42); END;",
            )
            .unwrap();
        let mut backend = SqliteBackend(Arc::clone(&store));
        let err = backend.commit_group(&[write("a", "c"), write("late", "c"), bulk(&["b"])]).unwrap_err();
        assert_eq!(err.code(), "SQLITE_CONSTRAINT");
        assert!(cmds(&store).is_empty());
        assert_eq!(backend.metrics().unwrap().errors_total, 3);
        // The connection is usable afterwards: the failed transaction was rolled back.
        assert_eq!(backend.commit_group(&[write("a", "c"), write("b", "c")]).unwrap().len(), 2);
        assert_eq!(cmds(&store).len(), 2);
    }

    /// A writer on a store, with its deliveries as parsed JSON on a channel.
    fn writer(store: &Arc<Mutex<Store>>) -> (Writer, Receiver<serde_json::Value>) {
        let (send, receive) = mpsc::channel();
        let deliver = move |text: String| {
            let _ = send.send(serde_json::from_str(&text).unwrap());
        };
        (Writer::spawn(SqliteBackend(Arc::clone(store)), deliver).unwrap(), receive)
    }

    #[test]
    fn writes_that_arrive_during_a_commit_share_the_next_one() {
        let store = memory_store();
        let (writer, replies) = writer(&store);
        // Holding the store's lock stands for a commit in flight: the thread takes what has
        // arrived and waits on the lock; everything submitted meanwhile forms the next group.
        let held = store.lock().unwrap();
        for i in 0..100 {
            writer.submit(Request::Write(write(&format!("e{i}"), "c"))).unwrap();
        }
        writer.submit(Request::Metrics).unwrap();
        drop(held);
        let mut got = Vec::new();
        let mut deliveries = 0;
        while got.len() < 101 {
            got.extend(replies.recv().unwrap().as_array().unwrap().clone());
            deliveries += 1;
        }
        let ids: Vec<i64> = got[..100].iter().map(|v| v.as_i64().unwrap()).collect();
        assert_eq!(ids, (1..=100).collect::<Vec<_>>(), "ids follow the order of the calls");
        assert!(deliveries <= 2, "{deliveries} deliveries");
        let metrics = &got[100];
        assert_eq!(metrics["writesTotal"], 100);
        assert!(metrics["commitsTotal"].as_u64().unwrap() <= 2, "{metrics}");
    }

    #[test]
    fn lines_are_writes_each_and_a_bad_one_fails_to_parse() {
        let writes: Vec<Write> = Write::lines("S[1]\nB[2,3]\n\né[4]\ns[5]\nb[6]").collect();
        let shapes: Vec<_> = writes.iter().map(|w| (w.payload.as_str(), w.kind, w.conditional)).collect();
        assert_eq!(
            shapes,
            [
                ("[1]", WriteKind::Single, false),
                ("[2,3]", WriteKind::Batch, false),
                ("", WriteKind::Single, false),
                ("", WriteKind::Single, false),
                ("[5]", WriteKind::Single, true),
                ("[6]", WriteKind::Batch, true)
            ]
        );
    }

    #[test]
    fn close_commits_what_came_before_and_refuses_what_comes_after() {
        let store = memory_store();
        let (writer, replies) = writer(&store);
        writer.submit(Request::Write(write("a", "c"))).unwrap();
        writer.submit(Request::Close).unwrap();
        assert_eq!(writer.submit(Request::Write(write("b", "c"))).unwrap_err().code(), "ERR_QUEUE_CLOSED");
        let mut got = Vec::new();
        while got.last() != Some(&serde_json::Value::Null) {
            got.extend(replies.recv().unwrap().as_array().unwrap().clone());
        }
        assert_eq!(got, [serde_json::json!(1), serde_json::Value::Null]);
        assert!(replies.recv().is_err(), "the thread ended, dropping `deliver`");
        assert_eq!(Arc::strong_count(&store), 1, "the backend was closed before the reply");
        drop(writer);
    }

    /// A backend whose transactions all fail, as on a full disk.
    struct FullDisk;

    impl Backend for FullDisk {
        fn commit_group(&mut self, _: &[Write]) -> Result<Vec<Result<Stored>>> {
            Err(Error::Sqlite { code: "SQLITE_FULL", message: "database or disk is full".into() })
        }

        fn metrics(&mut self) -> Result<MetricsSnapshot> {
            Err(Error::QueueClosed)
        }

        fn consumer_acquire(&mut self, _: &Claim<'_>) -> Result<Acquired> {
            Err(Error::QueueClosed)
        }

        fn consumer_commit(&mut self, _: &Member<'_>, _: &str, _: i64, _: i64) -> Result<()> {
            Err(Error::QueueClosed)
        }

        fn consumer_renew(&mut self, _: &Member<'_>, _: &str, _: i64) -> Result<bool> {
            Err(Error::QueueClosed)
        }

        fn consumer_release(&mut self, _: &Member<'_>, _: &str) -> Result<()> {
            Err(Error::QueueClosed)
        }

        fn reset_consumer(&mut self, _: &str, _: i64, _: i64, _: &[String]) -> Result<Option<String>> {
            Err(Error::QueueClosed)
        }
    }

    #[test]
    fn a_failed_group_replies_with_the_error_for_every_call() {
        let mut replies = Replies::with_capacity(3);
        let mut writes = vec![write("a", "c"), bulk(&["b"]), write("c", "c")];
        let mut commits = 0;
        commit(&mut FullDisk, &mut writes, &mut replies, &mut commits);
        replies.closed();
        let got: serde_json::Value = serde_json::from_str(&replies.finish()).unwrap();
        let error = serde_json::json!({ "error": "SQLITE_FULL", "message": "database or disk is full" });
        assert_eq!(got, serde_json::json!([error, error, error, null]));
        assert_eq!((commits, writes.len()), (0, 0));
    }
}
