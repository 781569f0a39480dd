//! Consumers of a PostgreSQL queue: the positions and leases of [`crate::consumer`], with its
//! rules (shared with it: [`regroup`], [`member_row`], the lease's length), in the schema's
//! `eventlite_consumers` table, made on first use. Reading goes through
//! [`super::stream::PgStream`], with a group member's partition as one more filter.
//!
//! Taking a lease and resetting read a consumer's rows and then change them: each runs in a
//! transaction under the schema's creation lock ([`Names::create_key`]), so two processes
//! cannot both take a lease or both make a group's rows. Commits, renewals and releases are one
//! `UPDATE` each, conditional on the owner, and need no lock.

use tokio_postgres::Row as PgRow;

use super::page::SETTLED;
use super::pool::Conn;
use super::schema::Names;
use crate::consumer::{
    check, check_reset, lost, member_row, regroup, Acquired, Claim, ConsumerInfo, Member, Row, LEASE_MS,
};
use crate::error::{Error, Result};

fn table(names: &Names) -> String {
    format!("{}.eventlite_consumers", names.schema)
}

/// Makes the table when it is missing. Looked up first: a role that may only read and write
/// can use the consumers of a schema whose table is there.
pub async fn ensure(conn: &mut Conn, names: &Names) -> Result<()> {
    let table = table(names);
    let exists = conn.statement("SELECT to_regclass($1) IS NOT NULL").await?;
    if conn.client.query_one(&exists, &[&table]).await?.get::<_, bool>(0) {
        return Ok(());
    }
    locked(conn, names).await?;
    let created = conn
        .client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                 name text NOT NULL,
                 member integer NOT NULL,
                 size integer NOT NULL,
                 position bigint NOT NULL,
                 owner text,
                 lease_until bigint,
                 PRIMARY KEY (name, member)
             )"
        ))
        .await
        .map_err(Error::from);
    end(conn, created).await
}

/// Begins a transaction under the schema's creation lock.
async fn locked(conn: &mut Conn, names: &Names) -> Result<()> {
    Ok(conn.client.batch_execute(&format!("BEGIN; SELECT pg_advisory_xact_lock({})", names.create_key)).await?)
}

/// Commits what `result` says was done, or rolls it back.
async fn end<T>(conn: &mut Conn, result: Result<T>) -> Result<T> {
    match result {
        Ok(value) => {
            conn.client.batch_execute("COMMIT").await?;
            Ok(value)
        }
        Err(err) => {
            // A connection that cannot roll back is broken: the pool drops it.
            let _ = conn.client.batch_execute("ROLLBACK").await;
            Err(err)
        }
    }
}

async fn rows(conn: &mut Conn, names: &Names, name: &str) -> Result<Vec<Row>> {
    let sql = format!(
        "SELECT member, size, position, owner, COALESCE(lease_until, 0) FROM {} WHERE name = $1 ORDER BY member",
        table(names)
    );
    let statement = conn.statement(&sql).await?;
    let rows = conn.client.query(&statement, &[&name]).await?;
    rows.iter().map(row).collect()
}

/// A member number or a group size as stored.
fn count(n: i32) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::SchemaMismatch(format!("a consumer row holds the member or size {n}")))
}

fn row(r: &PgRow) -> Result<Row> {
    Ok(Row {
        member: count(r.try_get(0)?)?,
        size: count(r.try_get(1)?)?,
        position: r.try_get(2)?,
        owner: r.try_get(3)?,
        lease_until: r.try_get(4)?,
    })
}

/// Makes the rows of a group of `size`, every member at `position`, replacing any others.
async fn create_group(conn: &mut Conn, names: &Names, name: &str, size: u32, position: i64) -> Result<()> {
    let table = table(names);
    let delete = conn.statement(&format!("DELETE FROM {table} WHERE name = $1")).await?;
    conn.client.execute(&delete, &[&name]).await?;
    let insert = conn
        .statement(&format!(
            "INSERT INTO {table} (name, member, size, position) SELECT $1, m, $2, $3 FROM generate_series(0, $2 - 1) m"
        ))
        .await?;
    let size = i32::try_from(size).map_err(|_| Error::InvalidOption(format!("group size {size} is too large")))?;
    conn.client.execute(&insert, &[&name, &size, &position]).await?;
    Ok(())
}

/// As [`crate::consumer::acquire`].
pub async fn acquire(conn: &mut Conn, names: &Names, claim: &Claim<'_>) -> Result<Acquired> {
    check(&claim.at, claim.size)?;
    ensure(conn, names).await?;
    locked(conn, names).await?;
    let acquired = acquire_locked(conn, names, claim).await;
    end(conn, acquired).await
}

async fn acquire_locked(conn: &mut Conn, names: &Names, claim: &Claim<'_>) -> Result<Acquired> {
    let Claim { at, size, token, now, dead } = *claim;
    let mut group = rows(conn, names, at.name).await?;
    if let Some(position) = regroup(claim, &group)? {
        create_group(conn, names, at.name, size, position).await?;
        group = rows(conn, names, at.name).await?;
    }
    let position = match member_row(&at, &group, token, now, dead)? {
        Ok(row) => row.position,
        Err(busy) => return Ok(busy),
    };
    let take = conn
        .statement(&format!("UPDATE {} SET owner = $1, lease_until = $2 WHERE name = $3 AND member = $4", table(names)))
        .await?;
    conn.client.execute(&take, &[&token, &(now + LEASE_MS), &at.name, &member(&at)]).await?;
    Ok(Acquired::Position(position))
}

fn member(at: &Member<'_>) -> i32 {
    // A member is below its group's size, at most 1024 (lib/consumer.js); check() refused more.
    i32::try_from(at.member).unwrap_or(i32::MAX)
}

/// As [`crate::consumer::commit`]: `ERR_CONSUMER_BUSY` when `token` lost the lease.
pub async fn commit(
    conn: &mut Conn,
    names: &Names,
    at: &Member<'_>,
    token: &str,
    position: i64,
    now: i64,
) -> Result<()> {
    let sql = format!(
        "UPDATE {} SET position = $1, lease_until = $2 WHERE name = $3 AND member = $4 AND owner = $5",
        table(names)
    );
    let statement = conn.statement(&sql).await?;
    let changed =
        conn.client.execute(&statement, &[&position, &(now + LEASE_MS), &at.name, &member(at), &token]).await?;
    if changed == 0 {
        return Err(lost(at));
    }
    Ok(())
}

/// As [`crate::consumer::renew`].
pub async fn renew(conn: &mut Conn, names: &Names, at: &Member<'_>, token: &str, now: i64) -> Result<bool> {
    let sql = format!("UPDATE {} SET lease_until = $1 WHERE name = $2 AND member = $3 AND owner = $4", table(names));
    let statement = conn.statement(&sql).await?;
    Ok(conn.client.execute(&statement, &[&(now + LEASE_MS), &at.name, &member(at), &token]).await? > 0)
}

/// As [`crate::consumer::release`].
pub async fn release(conn: &mut Conn, names: &Names, at: &Member<'_>, token: &str) -> Result<()> {
    let sql = format!(
        "UPDATE {} SET owner = NULL, lease_until = NULL WHERE name = $1 AND member = $2 AND owner = $3",
        table(names)
    );
    let statement = conn.statement(&sql).await?;
    conn.client.execute(&statement, &[&at.name, &member(at), &token]).await?;
    Ok(())
}

/// As [`crate::consumer::reset`].
pub async fn reset(
    conn: &mut Conn,
    names: &Names,
    name: &str,
    position: i64,
    now: i64,
    dead: &[String],
) -> Result<Option<String>> {
    check_reset(name, position)?;
    ensure(conn, names).await?;
    locked(conn, names).await?;
    let reset = reset_locked(conn, names, name, position, now, dead).await;
    end(conn, reset).await
}

async fn reset_locked(
    conn: &mut Conn,
    names: &Names,
    name: &str,
    position: i64,
    now: i64,
    dead: &[String],
) -> Result<Option<String>> {
    let group = rows(conn, names, name).await?;
    if let Some(owner) = group.iter().find_map(|r| r.held_by_another("", now, dead)) {
        return Ok(Some(owner.to_string()));
    }
    if group.is_empty() {
        create_group(conn, names, name, 1, position).await?;
    } else {
        let sql =
            format!("UPDATE {} SET position = $1, owner = NULL, lease_until = NULL WHERE name = $2", table(names));
        let statement = conn.statement(&sql).await?;
        conn.client.execute(&statement, &[&position, &name]).await?;
    }
    Ok(None)
}

/// As [`crate::consumer::list`]; the lag counts the settled events past the position.
pub async fn list(conn: &mut Conn, names: &Names) -> Result<Vec<ConsumerInfo>> {
    ensure(conn, names).await?;
    let sql = format!(
        "SELECT name, member, size, position, (SELECT count(*) FROM {queue} WHERE id > c.position AND {SETTLED})
         FROM {table} c ORDER BY name, member",
        queue = names.queue,
        table = table(names)
    );
    let statement = conn.statement(&sql).await?;
    let rows = conn.client.query(&statement, &[]).await?;
    rows.iter()
        .map(|r| {
            Ok(ConsumerInfo {
                name: r.try_get(0)?,
                member: count(r.try_get(1)?)?,
                size: count(r.try_get(2)?)?,
                position: r.try_get(3)?,
                lag: r.try_get(4)?,
            })
        })
        .collect()
}

/// As [`crate::consumer::position`].
pub async fn position(conn: &mut Conn, names: &Names, at: &Member<'_>) -> Result<Option<i64>> {
    ensure(conn, names).await?;
    let sql = format!("SELECT position FROM {} WHERE name = $1 AND member = $2", table(names));
    let statement = conn.statement(&sql).await?;
    let rows = conn.client.query(&statement, &[&at.name, &member(at)]).await?;
    Ok(rows.first().map(|r| r.try_get(0)).transpose()?)
}

/// `getStreamVersion`: how many events hold `correlation_id`, whoever appended them (the count
/// an `expectedVersion` is checked against, see `src/pg/write.rs`).
pub async fn stream_version(conn: &mut Conn, names: &Names, correlation_id: &str) -> Result<i64> {
    let statement = conn.statement(&format!("SELECT count(*) FROM {} WHERE correlation_id = $1", names.queue)).await?;
    Ok(conn.client.query_one(&statement, &[&correlation_id]).await?.get(0))
}
