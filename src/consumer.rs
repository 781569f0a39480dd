//! Consumers: named, durable readers of the log. A consumer's position (the last id it
//! finished) lives in `eventlite_consumers`, one row per name and group member, so it resumes
//! where it stopped, in any process. The rows also hold each reader's lease, so that one
//! reader at a time commits a position: an owner token and the time it expires, renewed while
//! the reader is alive. Reading itself goes through [`crate::stream::Stream`], with the
//! partition of a group member as one more filter.
//!
//! Every function here takes `now`, in milliseconds since the Unix epoch, from its caller:
//! the N-API layer passes the system clock, and the tests any clock they like.

use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;
use rusqlite::OptionalExtension;
use serde::Serialize;

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::store::WriteTxn;

/// How long a lease lasts without renewal: a reader whose process died holds its consumer at
/// most this long. Its owner renews it on every commit and every third of it meanwhile.
pub const LEASE_MS: i64 = 30_000;

pub const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS eventlite_consumers (
    name TEXT NOT NULL,
    member INTEGER NOT NULL,
    size INTEGER NOT NULL,
    position INTEGER NOT NULL,
    owner TEXT,
    lease_until INTEGER,
    PRIMARY KEY (name, member)
) WITHOUT ROWID";

/// The SQL function that tells a group member's events apart: `eventlite_partition(correlation_id,
/// size)` is [`partition`], so that `LIMIT` counts only the member's own rows. Registered on
/// each connection; never used in the schema, so other programs opening the file need not know
/// it.
pub const PARTITION_FUNCTION: &str = "eventlite_partition";

/// A group member's share of the log: the events whose [`partition`] is `member`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub member: u32,
    pub size: u32,
}

/// The member of a group of `size` that handles the events of `correlation_id`: FNV-1a (32 bits)
/// of its UTF-8 bytes, modulo `size`; member 0 for events without one. Stable across processes,
/// runtimes, platforms and versions: a position is only meaningful if the partitions never move.
pub fn partition(correlation_id: Option<&[u8]>, size: u32) -> u32 {
    const OFFSET_BASIS: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    match correlation_id {
        None => 0,
        Some(bytes) => {
            let hash = bytes.iter().fold(OFFSET_BASIS, |hash, &b| (hash ^ u32::from(b)).wrapping_mul(PRIME));
            hash % size.max(1)
        }
    }
}

/// Registers [`PARTITION_FUNCTION`] on a connection.
pub fn register(conn: &rusqlite::Connection) -> Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC | FunctionFlags::SQLITE_INNOCUOUS;
    conn.create_scalar_function(PARTITION_FUNCTION, 2, flags, |ctx| {
        let size = u32::try_from(ctx.get::<i64>(1)?)
            .ok()
            .filter(|size| *size > 0)
            .ok_or_else(|| rusqlite::Error::UserFunctionError("the group size must be from 1 to 2^32 - 1".into()))?;
        let member = match ctx.get_raw(0) {
            ValueRef::Text(bytes) | ValueRef::Blob(bytes) => partition(Some(bytes), size),
            _ => partition(None, size),
        };
        Ok(i64::from(member))
    })?;
    Ok(())
}

/// One consumer row: a name and a member of its group (0 for a consumer alone).
#[derive(Debug, Clone, Copy)]
pub struct Member<'a> {
    pub name: &'a str,
    pub member: u32,
}

/// A reader asking for a member's lease (see [`acquire`]): the member, the size of its group,
/// the reader's token, the time, and the owners JavaScript found gone, whose leases are free.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub at: Member<'a>,
    pub size: u32,
    pub token: &'a str,
    pub now: i64,
    pub dead: &'a [String],
}

/// What [`acquire`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Acquired {
    /// The lease is the caller's; reading starts after this position.
    Position(i64),
    /// Another reader holds the lease: its owner token, for the caller to judge whether that
    /// reader is still alive (see `dead` in [`acquire`]).
    Busy(String),
}

/// A consumer's row as stored (on SQLite or PostgreSQL).
pub(crate) struct Row {
    pub(crate) member: u32,
    pub(crate) size: u32,
    pub(crate) position: i64,
    pub(crate) owner: Option<String>,
    pub(crate) lease_until: i64,
}

impl Row {
    /// Whether another reader holds this row's lease now. `dead`: owners the caller knows to be
    /// gone (a process that no longer exists), whose leases are free before they expire.
    pub(crate) fn held_by_another(&self, token: &str, now: i64, dead: &[String]) -> Option<&str> {
        let owner = self.owner.as_deref()?;
        (owner != token && self.lease_until > now && !dead.iter().any(|d| d == owner)).then_some(owner)
    }
}

fn rows(conn: &Connection, name: &str) -> Result<Vec<Row>> {
    let mut stmt = conn.prepare_cached(
        "SELECT member, size, position, owner, COALESCE(lease_until, 0) FROM eventlite_consumers WHERE name = ?1 ORDER BY member",
    )?;
    let rows = stmt.query_map([name], |r| {
        Ok(Row { member: r.get(0)?, size: r.get(1)?, position: r.get(2)?, owner: r.get(3)?, lease_until: r.get(4)? })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Makes the rows of a group of `size`, every member at `position`, replacing any others.
fn create_group(conn: &Connection, name: &str, size: u32, position: i64) -> Result<()> {
    conn.prepare_cached("DELETE FROM eventlite_consumers WHERE name = ?1")?.execute([name])?;
    let mut insert =
        conn.prepare_cached("INSERT INTO eventlite_consumers (name, member, size, position) VALUES (?1, ?2, ?3, ?4)")?;
    for member in 0..size {
        insert.execute(rusqlite::params![name, member, size, position])?;
    }
    Ok(())
}

pub(crate) fn check(at: &Member<'_>, size: u32) -> Result<()> {
    if at.name.is_empty() {
        return Err(Error::InvalidOption("a consumer's name must not be empty".into()));
    }
    if size == 0 || at.member >= size {
        return Err(Error::InvalidOption(format!(
            "group.member must be from 0 to group.size - 1, got member {} of size {size}",
            at.member
        )));
    }
    Ok(())
}

/// Takes the lease of a member of a group of `size` (1 for a consumer alone) for `token`,
/// creating the group's rows (every member at position 0) the first time its name is used.
/// Leases held by owners in `dead` count as free.
///
/// A group's size can change only where every member stopped at the same position with no
/// reader holding a lease (as `reset` leaves them): anywhere else the partitions would move
/// under positions that were counted in the old ones, and events would be skipped or repeated.
pub fn acquire(conn: &Connection, claim: &Claim<'_>) -> Result<Acquired> {
    let Claim { at, size, token, now, dead } = *claim;
    check(&at, size)?;
    let txn = WriteTxn::begin(conn)?;
    let mut rows = rows(conn, at.name)?;
    if let Some(position) = regroup(claim, &rows)? {
        create_group(conn, at.name, size, position)?;
        rows = self::rows(conn, at.name)?;
    }
    let row = match member_row(&at, &rows, token, now, dead)? {
        Ok(row) => row,
        Err(busy) => return Ok(busy),
    };
    conn.prepare_cached("UPDATE eventlite_consumers SET owner = ?1, lease_until = ?2 WHERE name = ?3 AND member = ?4")?
        .execute(rusqlite::params![token, now + LEASE_MS, at.name, at.member])?;
    let position = row.position;
    txn.commit()?;
    Ok(Acquired::Position(position))
}

/// Whether `acquire` must make the group's rows anew (for a consumer used the first time, or
/// a group of another size): the position every member starts at. Refused where the members
/// stand at different positions or another reader holds one (see [`acquire`]).
pub(crate) fn regroup(claim: &Claim<'_>, rows: &[Row]) -> Result<Option<i64>> {
    let Claim { at, size, token, now, dead } = *claim;
    let same_size = rows.len() == size as usize && rows.iter().all(|r| r.size == size);
    if same_size {
        return Ok(None);
    }
    let clean_cut = rows.windows(2).all(|pair| pair[0].position == pair[1].position)
        && rows.iter().all(|r| r.held_by_another(token, now, dead).is_none());
    if !clean_cut {
        return Err(Error::InvalidOption(format!(
            "consumer {:?} is a group of {}, with members at different positions or reading now; \
             its size can change only after resetConsumer() puts every member at one position",
            at.name,
            rows.first().map_or(0, |r| r.size)
        )));
    }
    Ok(Some(rows.first().map_or(0, |r| r.position)))
}

/// The row of `at` among its group's, free for `token`; or what `acquire` answers when another
/// reader holds it.
pub(crate) fn member_row<'r>(
    at: &Member<'_>,
    rows: &'r [Row],
    token: &str,
    now: i64,
    dead: &[String],
) -> Result<std::result::Result<&'r Row, Acquired>> {
    let row = rows.iter().find(|r| r.member == at.member).ok_or_else(|| Error::Sqlite {
        code: "SQLITE_INTERNAL",
        message: format!("consumer {:?} has no row for member {}", at.name, at.member),
    })?;
    Ok(match row.held_by_another(token, now, dead) {
        Some(owner) => Err(Acquired::Busy(owner.to_string())),
        None => Ok(row),
    })
}

/// Stores `position` as the consumer's, and renews the lease, if `token` still holds it;
/// otherwise `ERR_CONSUMER_BUSY` and nothing changes.
pub fn commit(conn: &Connection, at: &Member<'_>, token: &str, position: i64, now: i64) -> Result<()> {
    let changed = conn
        .prepare_cached(
            "UPDATE eventlite_consumers SET position = ?1, lease_until = ?2 WHERE name = ?3 AND member = ?4 AND owner = ?5",
        )?
        .execute(rusqlite::params![position, now + LEASE_MS, at.name, at.member, token])?;
    if changed == 0 {
        return Err(lost(at));
    }
    Ok(())
}

pub(crate) fn lost(at: &Member<'_>) -> Error {
    Error::ConsumerBusy(format!(
        "consumer {:?} (member {}) lost its lease to another reader (or to resetConsumer) after it expired; \
         the batch in hand was not committed",
        at.name, at.member
    ))
}

/// Extends the lease of `token`; false when it holds it no more.
pub fn renew(conn: &Connection, at: &Member<'_>, token: &str, now: i64) -> Result<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE eventlite_consumers SET lease_until = ?1 WHERE name = ?2 AND member = ?3 AND owner = ?4",
        )?
        .execute(rusqlite::params![now + LEASE_MS, at.name, at.member, token])?;
    Ok(changed > 0)
}

/// Gives the lease of `token` up, if it still holds it.
pub fn release(conn: &Connection, at: &Member<'_>, token: &str) -> Result<()> {
    conn.prepare_cached(
        "UPDATE eventlite_consumers SET owner = NULL, lease_until = NULL WHERE name = ?1 AND member = ?2 AND owner = ?3",
    )?
    .execute(rusqlite::params![at.name, at.member, token])?;
    Ok(())
}

/// `resetConsumer`: puts every member of consumer `name` at `position`, creating it (a single
/// reader) if its name was never used. While another reader holds a lease of it, nothing
/// changes and that reader's owner token is returned (owners in `dead` do not count).
pub fn reset(conn: &Connection, name: &str, position: i64, now: i64, dead: &[String]) -> Result<Option<String>> {
    check_reset(name, position)?;
    let txn = WriteTxn::begin(conn)?;
    let rows = rows(conn, name)?;
    if let Some(owner) = rows.iter().find_map(|r| r.held_by_another("", now, dead)) {
        return Ok(Some(owner.to_string()));
    }
    if rows.is_empty() {
        create_group(conn, name, 1, position)?;
    } else {
        conn.prepare_cached(
            "UPDATE eventlite_consumers SET position = ?1, owner = NULL, lease_until = NULL WHERE name = ?2",
        )?
        .execute(rusqlite::params![position, name])?;
    }
    txn.commit()?;
    Ok(None)
}

/// Refuses what `reset` cannot do: an empty name, a negative position.
pub(crate) fn check_reset(name: &str, position: i64) -> Result<()> {
    check(&Member { name, member: 0 }, 1)?;
    if position < 0 {
        return Err(Error::InvalidOption(format!("position must be an integer >= 0, got {position}")));
    }
    Ok(())
}

/// Puts every consumer back at the start of the log: the log was reset, and positions in the
/// old one would skip events of the new. Leases stay with their readers.
pub fn rewind_all(conn: &Connection) -> Result<()> {
    conn.execute_batch("UPDATE eventlite_consumers SET position = 0")?;
    Ok(())
}

/// One row of `getConsumers()`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsumerInfo {
    pub name: String,
    pub member: u32,
    pub size: u32,
    pub position: i64,
    /// Events in the log after the position (for a group member or a filtered consumer, also
    /// those it will pass over).
    pub lag: i64,
}

/// Every consumer of the file, by name then member.
pub fn list(conn: &Connection) -> Result<Vec<ConsumerInfo>> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, member, size, position, (SELECT COUNT(*) FROM queue WHERE id > c.position)
         FROM eventlite_consumers c ORDER BY name, member",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(ConsumerInfo { name: r.get(0)?, member: r.get(1)?, size: r.get(2)?, position: r.get(3)?, lag: r.get(4)? })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The position stored for a consumer, if its name was used.
pub fn position(conn: &Connection, at: &Member<'_>) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT position FROM eventlite_consumers WHERE name = ?1 AND member = ?2")?
        .query_row(rusqlite::params![at.name, at.member], |r| r.get(0))
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> Connection {
        let conn = Connection::new(rusqlite::Connection::open_in_memory().unwrap());
        conn.execute_batch(crate::schema::CREATE_TABLE).unwrap();
        conn.execute_batch(CREATE_TABLE).unwrap();
        register(&conn).unwrap();
        conn
    }

    const SOLO: Member<'static> = Member { name: "solo", member: 0 };

    /// [`acquire`] with the claim's parts as arguments.
    fn claim(
        conn: &Connection,
        at: &Member<'_>,
        size: u32,
        token: &str,
        now: i64,
        dead: &[String],
    ) -> Result<Acquired> {
        acquire(conn, &Claim { at: *at, size, token, now, dead })
    }

    #[test]
    fn the_partition_is_fnv1a_of_the_utf8_bytes() {
        // FNV-1a 32 of "" is the offset basis, of "a" 0xe40c292c (the published test vectors).
        assert_eq!(partition(Some(b""), u32::MAX), 0x811c_9dc5);
        assert_eq!(partition(Some(b"a"), u32::MAX), 0xe40c_292c);
        assert_eq!(partition(Some(b"foobar"), u32::MAX), 0xbf9c_f968);
        assert_eq!(partition(Some(b"a"), 3), 0xe40c_292c % 3);
        assert_eq!(partition(None, 3), 0);
        assert_eq!(partition(Some("é".as_bytes()), 7), partition(Some(&[0xc3, 0xa9]), 7));
    }

    #[test]
    fn the_sql_function_agrees_with_partition() {
        let conn = memory();
        for (id, size) in [(Some("a"), 3), (Some("order-17"), 5), (None, 4), (Some(""), 2)] {
            let got: i64 = conn
                .query_row("SELECT eventlite_partition(?1, ?2)", rusqlite::params![id, size], |r| r.get(0))
                .unwrap();
            assert_eq!(got, i64::from(partition(id.map(str::as_bytes), size)));
        }
        let err = conn.query_row("SELECT eventlite_partition('a', 0)", [], |r| r.get::<_, i64>(0)).unwrap_err();
        assert!(err.to_string().contains("group size"));
    }

    #[test]
    fn one_reader_at_a_time_until_its_lease_ends() {
        let conn = memory();
        assert_eq!(claim(&conn, &SOLO, 1, "a", 1_000, &[]).unwrap(), Acquired::Position(0));
        assert_eq!(claim(&conn, &SOLO, 1, "a", 1_000, &[]).unwrap(), Acquired::Position(0), "the owner again");
        assert_eq!(claim(&conn, &SOLO, 1, "b", 1_000, &[]).unwrap(), Acquired::Busy("a".into()));
        commit(&conn, &SOLO, "a", 7, 2_000).unwrap();
        // Renewed by the commit at 2,000: busy until 2,000 + LEASE_MS, free from then.
        assert_eq!(claim(&conn, &SOLO, 1, "b", 1_999 + LEASE_MS, &[]).unwrap(), Acquired::Busy("a".into()));
        assert_eq!(claim(&conn, &SOLO, 1, "b", 2_000 + LEASE_MS, &[]).unwrap(), Acquired::Position(7));
        let err = commit(&conn, &SOLO, "a", 9, 3_000 + LEASE_MS).unwrap_err();
        assert_eq!(err.code(), "ERR_CONSUMER_BUSY", "the old owner commits nothing");
        assert!(!renew(&conn, &SOLO, "a", 3_000 + LEASE_MS).unwrap());
        assert_eq!(position(&conn, &SOLO).unwrap(), Some(7));
        release(&conn, &SOLO, "a").unwrap();
        assert_eq!(claim(&conn, &SOLO, 1, "c", 3_000 + LEASE_MS, &[]).unwrap(), Acquired::Busy("b".into()));
        release(&conn, &SOLO, "b").unwrap();
        assert_eq!(claim(&conn, &SOLO, 1, "c", 3_000 + LEASE_MS, &[]).unwrap(), Acquired::Position(7));
    }

    #[test]
    fn a_dead_owners_lease_is_free_before_it_expires() {
        let conn = memory();
        claim(&conn, &SOLO, 1, "gone", 0, &[]).unwrap();
        assert_eq!(claim(&conn, &SOLO, 1, "new", 1, &["other".into()]).unwrap(), Acquired::Busy("gone".into()));
        assert_eq!(claim(&conn, &SOLO, 1, "new", 1, &["gone".into()]).unwrap(), Acquired::Position(0));
    }

    #[test]
    fn a_group_gets_a_row_per_member_and_changes_size_only_at_a_clean_cut() {
        let conn = memory();
        let member = |member| Member { name: "g", member };
        assert_eq!(claim(&conn, &member(1), 3, "one", 0, &[]).unwrap(), Acquired::Position(0));
        let listed: Vec<(u32, u32)> = list(&conn).unwrap().iter().map(|c| (c.member, c.size)).collect();
        assert_eq!(listed, [(0, 3), (1, 3), (2, 3)]);
        commit(&conn, &member(1), "one", 5, 0).unwrap();
        release(&conn, &member(1), "one").unwrap();
        let two = Member { name: "g", member: 0 };
        assert_eq!(claim(&conn, &two, 2, "t", 0, &[]).unwrap_err().code(), "ERR_INVALID_OPTION");
        assert_eq!(reset(&conn, "g", 4, 0, &[]).unwrap(), None);
        assert_eq!(claim(&conn, &two, 2, "t", 0, &[]).unwrap(), Acquired::Position(4));
        let listed: Vec<(u32, u32, i64)> =
            list(&conn).unwrap().iter().map(|c| (c.member, c.size, c.position)).collect();
        assert_eq!(listed, [(0, 2, 4), (1, 2, 4)]);
        assert_eq!(
            claim(&conn, &Member { name: "g", member: 2 }, 2, "t", 0, &[]).unwrap_err().code(),
            "ERR_INVALID_OPTION"
        );
    }

    #[test]
    fn reset_waits_for_no_live_reader_and_creates_unknown_names() {
        let conn = memory();
        claim(&conn, &SOLO, 1, "a", 0, &[]).unwrap();
        assert_eq!(reset(&conn, "solo", 3, 1, &[]).unwrap(), Some("a".into()));
        assert_eq!(reset(&conn, "solo", 3, 1, &["a".into()]).unwrap(), None);
        assert_eq!(position(&conn, &SOLO).unwrap(), Some(3));
        assert_eq!(reset(&conn, "fresh", 9, 1, &[]).unwrap(), None);
        let fresh = Member { name: "fresh", member: 0 };
        assert_eq!(claim(&conn, &fresh, 1, "x", 1, &[]).unwrap(), Acquired::Position(9));
        assert_eq!(reset(&conn, "solo", -1, 1, &[]).unwrap_err().code(), "ERR_INVALID_OPTION");
    }

    #[test]
    fn lag_counts_the_events_after_the_position() {
        let conn = memory();
        conn.execute_batch("INSERT INTO queue (datetime, cmd) VALUES (0, 'a'), (0, 'b'), (0, 'c')").unwrap();
        claim(&conn, &SOLO, 1, "a", 0, &[]).unwrap();
        commit(&conn, &SOLO, "a", 1, 0).unwrap();
        let info = &list(&conn).unwrap()[0];
        assert_eq!((info.position, info.lag), (1, 2));
        rewind_all(&conn).unwrap();
        assert_eq!(list(&conn).unwrap()[0].lag, 3);
    }
}
