//! How to reach the server and where the queue lives: `openQueue`'s PostgreSQL options, already
//! validated in JavaScript (`lib/options.js`) and checked again here.

use std::collections::HashMap;
use std::time::Duration;

use super::tls::{self, Tls};
use crate::error::{Error, Result};

/// The longest identifier PostgreSQL keeps (NAMEDATALEN - 1 bytes); a longer one is silently
/// cut, which would put two queues in one schema.
pub const MAX_IDENTIFIER: usize = 63;

/// `openQueue`'s defaults on PostgreSQL, which JavaScript reads from here.
pub const DEFAULT_SCHEMA: &str = "public";
pub const DEFAULT_POOL_SIZE: usize = 10;
pub const DEFAULT_CONNECT_TIMEOUT_MS: u32 = 10_000;
/// More connections than a server accepts by default (`max_connections` is 100) is a mistake.
pub const MAX_POOL_SIZE: usize = 1000;

#[derive(Debug, Clone)]
pub struct PgConfig {
    /// A `postgres://` URL or a libpq key=value connection string.
    pub url: String,
    /// The schema the queue's tables live in, created when missing.
    pub schema: String,
    /// The most connections open at once, the writer's included.
    pub pool_size: usize,
    /// How long connecting (TCP, TLS and authentication) may take before it fails.
    pub connect_timeout: Duration,
    /// Index keys given explicitly; see [`crate::schema::apply_indexes`].
    pub indexes: HashMap<String, bool>,
}

/// The settings of the queue's sessions. Every statement of the queue is prepared once per
/// connection and has one shape over the table's indexes, so the generic plan, made without
/// the parameters, is the right one. A custom plan (PostgreSQL's first five executions of a
/// statement) made on a table just loaded, before autovacuum has analysed it, believes the
/// table tiny: a stream's batch then scans and sorts the whole table, ~60 ms a batch instead of
/// ~1 ms on 100,000 events.
const SESSION_OPTIONS: &str = "-c plan_cache_mode=force_generic_plan";

impl PgConfig {
    /// The driver's configuration of `url`, with [`SESSION_OPTIONS`] after the URL's own, and
    /// what its `sslmode` and `sslrootcert` ask of TLS (see [`super::tls`]). A bad `sslmode` is
    /// `ERR_INVALID_OPTION`; a URL the driver cannot read otherwise is `ERR_CONNECTION`, as the
    /// connection it names cannot be made.
    pub fn driver(&self) -> Result<(tokio_postgres::Config, Tls)> {
        let (rest, tls) = tls::split(&self.url)?;
        let mut driver = rest.parse::<tokio_postgres::Config>().map_err(|err| Error::Connection {
            message: format!("the PostgreSQL connection URL cannot be read: {err}"),
            pg_code: None,
        })?;
        driver.ssl_mode(tls.driver_mode());
        let options = match driver.get_options() {
            Some(own) => format!("{own} {SESSION_OPTIONS}"),
            None => SESSION_OPTIONS.to_string(),
        };
        driver.options(&options);
        Ok((driver, tls))
    }

    /// Refuses what the server would misread.
    pub fn check(&self) -> Result<()> {
        if self.schema.is_empty() || self.schema.len() > MAX_IDENTIFIER || self.schema.contains('\0') {
            return Err(Error::InvalidOption(format!(
                "schema must be a name of 1 to {MAX_IDENTIFIER} bytes without NUL characters, got {:?}",
                self.schema
            )));
        }
        if self.pool_size == 0 || self.pool_size > MAX_POOL_SIZE {
            return Err(Error::InvalidOption(format!(
                "poolSize must be an integer from 1 to {MAX_POOL_SIZE}, got {}",
                self.pool_size
            )));
        }
        crate::schema::check_index_keys(&self.indexes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, schema: &str) -> PgConfig {
        PgConfig {
            url: url.into(),
            schema: schema.into(),
            pool_size: 2,
            connect_timeout: Duration::from_secs(1),
            indexes: HashMap::new(),
        }
    }

    #[test]
    fn urls_and_connection_strings_are_read_and_garbage_is_a_connection_error() {
        assert!(config("postgres://u:p@localhost:5432/db?sslmode=disable", "s").driver().is_ok());
        assert!(config("host=localhost user=u dbname=db", "s").driver().is_ok());
        let (driver, tls) = config("host=localhost sslmode=verify-full sslrootcert=system", "s").driver().unwrap();
        assert_eq!(driver.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        assert_eq!(tls.mode, super::tls::SslMode::VerifyFull);
        let err = config("postgres://u@localhost/db?sslmode=verify", "s").driver().unwrap_err();
        assert_eq!(err.code(), "ERR_INVALID_OPTION");
        let err = config("postgres://u@localhost:notaport/db", "s").driver().unwrap_err();
        assert_eq!(err.code(), "ERR_CONNECTION");
    }

    #[test]
    fn sessions_plan_generically_after_the_urls_own_options() {
        let options = |url: &str| config(url, "s").driver().unwrap().0.get_options().map(str::to_string);
        assert_eq!(options("postgres://u@localhost/db").as_deref(), Some(SESSION_OPTIONS));
        let own = options("postgres://u@localhost/db?options=-c%20work_mem%3D8MB").unwrap();
        assert_eq!(own, format!("-c work_mem=8MB {SESSION_OPTIONS}"));
        assert_eq!(SESSION_OPTIONS, "-c plan_cache_mode=force_generic_plan");
    }

    #[test]
    fn the_servers_sessions_plan_generically() {
        let Some(url) = crate::pg::tests::server_url() else { return };
        let pool = crate::pg::pool::Pool::new(&config(&url, "s")).unwrap();
        let mode: String = crate::pg::runtime()
            .unwrap()
            .block_on(async { pool.get().await.unwrap().client.query_one("SHOW plan_cache_mode", &[]).await })
            .unwrap()
            .get(0);
        assert_eq!(mode, "force_generic_plan");
    }

    #[test]
    fn schema_names_the_server_would_cut_or_refuse_are_invalid() {
        assert!(config("", "events").check().is_ok());
        assert!(config("", &"s".repeat(63)).check().is_ok());
        for bad in [String::new(), "s".repeat(64), "a\0b".into()] {
            assert_eq!(config("", &bad).check().unwrap_err().code(), "ERR_INVALID_OPTION", "{bad:?}");
        }
    }
}
