//! A small pool of connections: at most `poolSize` open at once, reused while alive. A
//! connection the server closed (a restart, a network cut) is noticed when it is next taken and
//! replaced by a new one, so one failure costs the calls that were on it and nothing after.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::config::PgConfig;
use super::runtime;
use super::tls::Tls;
use crate::error::{Error, Result};

/// One connection, with the statements it has prepared (by their text): a statement is
/// prepared once per connection instead of once per call, which would double the round trips.
pub struct Conn {
    pub client: Client,
    statements: HashMap<String, Statement>,
}

impl Conn {
    /// The prepared statement of `sql`, prepared on first use.
    pub async fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await?;
        self.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }
}

struct Inner {
    driver: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    /// What `sslmode` asked, to say why a connection TLS refused failed.
    ssl: Tls,
    connect_timeout: Duration,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Conn>>,
    closed: AtomicBool,
}

/// A handle on the pool; clones share it.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

impl Pool {
    /// A pool for `config`; nothing is connected yet.
    pub fn new(config: &PgConfig) -> Result<Pool> {
        config.check()?;
        let (driver, ssl) = config.driver()?;
        Ok(Pool {
            inner: Arc::new(Inner {
                driver,
                tls: ssl.connector()?,
                ssl,
                connect_timeout: config.connect_timeout,
                permits: Arc::new(Semaphore::new(config.pool_size)),
                idle: Mutex::new(Vec::new()),
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// A connection: an idle one still open, or a new one. Waits while `poolSize` are in use.
    pub async fn get(&self) -> Result<Pooled> {
        // The semaphore is never closed.
        let permit = Arc::clone(&self.inner.permits).acquire_owned().await.map_err(|_| Error::QueueClosed)?;
        loop {
            let idle = self.inner.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
            match idle {
                Some(conn) if conn.client.is_closed() => continue,
                Some(conn) => return Ok(self.pooled(conn, permit)),
                None => break,
            }
        }
        if self.inner.closed.load(Ordering::Relaxed) {
            return Err(Error::QueueClosed);
        }
        let conn = self.connect().await?;
        Ok(self.pooled(conn, permit))
    }

    /// What a connection outside the pool is opened with: the driver's settings, TLS and the
    /// connect timeout. `LISTEN` keeps one of its own (see [`super::listen`]).
    pub fn settings(&self) -> (tokio_postgres::Config, MakeRustlsConnect, Duration) {
        (self.inner.driver.clone(), self.inner.tls.clone(), self.inner.connect_timeout)
    }

    /// Closes the idle connections, and every other one as it is given back.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Relaxed);
        self.inner.idle.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    fn pooled(&self, conn: Conn, permit: OwnedSemaphorePermit) -> Pooled {
        Pooled { conn: Some(conn), discarded: false, inner: Arc::clone(&self.inner), _permit: permit }
    }

    /// Opens a connection on the PostgreSQL runtime, where its I/O task then lives, within the
    /// connect timeout.
    async fn connect(&self) -> Result<Conn> {
        let inner = Arc::clone(&self.inner);
        let connecting = runtime()?.spawn(async move {
            let connect = inner.driver.connect(inner.tls.clone());
            let (client, connection) = match tokio::time::timeout(inner.connect_timeout, connect).await {
                Ok(connected) => connected.map_err(|err| refused(err, &inner.ssl))?,
                Err(_) => {
                    return Err(Error::Connection {
                        message: format!(
                            "connecting to PostgreSQL took longer than connectTimeout ({} ms)",
                            inner.connect_timeout.as_millis()
                        ),
                        pg_code: None,
                    })
                }
            };
            // Ends when the connection closes; the client then reports itself closed, which is
            // how the pool notices.
            tokio::spawn(connection);
            Ok(client)
        });
        let client = connecting.await.map_err(|err| Error::Connection {
            message: format!("connecting to PostgreSQL failed: {err}"),
            pg_code: None,
        })??;
        Ok(Conn { client, statements: HashMap::new() })
    }
}

/// Whatever fails while connecting fails the connection; a TLS refusal says so, and why.
fn refused(err: tokio_postgres::Error, ssl: &Tls) -> Error {
    if let Some(message) = ssl.refusal(&err) {
        return Error::Connection { message, pg_code: None };
    }
    match Error::from(err) {
        Error::Postgres { message, pg_code } => Error::Connection { message, pg_code },
        other => other,
    }
}

/// A connection taken from the pool, given back when dropped unless it closed or was
/// [discarded](Pooled::discard).
pub struct Pooled {
    /// `None` only while it is dropped.
    conn: Option<Conn>,
    discarded: bool,
    inner: Arc<Inner>,
    _permit: OwnedSemaphorePermit,
}

impl Pooled {
    /// Closes the connection instead of giving it back: its state is unknown (a transaction
    /// that could not be rolled back).
    pub fn discard(&mut self) {
        self.discarded = true;
    }
}

impl Deref for Pooled {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        // Only `drop` empties it.
        self.conn.as_ref().unwrap_or_else(|| unreachable!("a pooled connection is used while dropped"))
    }
}

impl DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn.as_mut().unwrap_or_else(|| unreachable!("a pooled connection is used while dropped"))
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(conn) = self
            .conn
            .take()
            .filter(|conn| !self.discarded && !conn.client.is_closed() && !self.inner.closed.load(Ordering::Relaxed))
        {
            self.inner.idle.lock().unwrap_or_else(PoisonError::into_inner).push(conn);
        }
    }
}
