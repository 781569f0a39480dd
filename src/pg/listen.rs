//! What wakes a following reader (`streamEvents({ follow })`, `consume`) of a PostgreSQL queue:
//! a connection of its own, outside the pool, that `LISTEN`s on the schema's channel, where
//! every committed group notifies (see [`super`]). Each notification calls `wake`, and the
//! reader re-reads by position; the notification carries nothing a reader needs.
//!
//! So a lost notification only delays: the readers also re-read on a slow interval of their
//! own (`lib/pg-backend.js`). A connection that ends (the server restarted, the network cut,
//! the backend terminated) wakes the readers as well, since notifications may have been lost
//! meanwhile, and is opened again after [`RECONNECT`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{pin_mut, stream, TryStreamExt};
use tokio::sync::{mpsc, Notify};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{AsyncMessage, Socket};

use super::pool::Pool;
use super::runtime;
use super::schema::{quote, Names};
use crate::error::{Error, Result};

/// How long a listener waits before it connects again after its connection ended or could not
/// be opened.
pub const RECONNECT: Duration = Duration::from_millis(500);

/// A running listener; stopped (its connection closed) by [`Listener::stop`] or when dropped.
pub struct Listener {
    stop: Arc<Notify>,
}

impl Listener {
    /// Starts listening on `names`' channel, on the PostgreSQL runtime; `wake` is called after
    /// each notification (several that arrive together call it once), and whenever the
    /// connection is (re)established or lost.
    pub fn start(pool: &Pool, names: &Names, wake: impl Fn() + Send + Sync + 'static) -> Result<Listener> {
        let stop = Arc::new(Notify::new());
        let (config, tls, timeout) = pool.settings();
        let listen = format!("LISTEN {}", quote(&names.channel));
        let stopped = Arc::clone(&stop);
        runtime()?.spawn(async move {
            loop {
                tokio::select! {
                    _ = stopped.notified() => return,
                    // An error only says why the connection ended: the loop connects again.
                    _ = session(&config, tls.clone(), timeout, &listen, &wake) => {}
                }
                wake();
                tokio::select! {
                    _ = stopped.notified() => return,
                    _ = tokio::time::sleep(RECONNECT) => {}
                }
            }
        });
        Ok(Listener { stop })
    }

    /// Stops listening and closes the connection. Idempotent.
    pub fn stop(&self) {
        // A permit is kept if the task is not waiting right now, so the stop is never missed.
        self.stop.notify_one();
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One connection's life: connects, listens, and calls `wake` per burst of notifications,
/// until the connection ends.
async fn session<T>(
    config: &tokio_postgres::Config,
    tls: T,
    timeout: Duration,
    listen: &str,
    wake: &impl Fn(),
) -> Result<()>
where
    T: MakeTlsConnect<Socket>,
{
    let connecting = tokio::time::timeout(timeout, config.connect(tls));
    let (client, mut connection) = connecting
        .await
        .map_err(|_| Error::Connection { message: "LISTEN: connecting took too long".into(), pg_code: None })??;
    let (notified, mut notifications) = mpsc::unbounded_channel();
    // The connection's messages, driven here: the client's statements need it polled too.
    let drive = async move {
        let messages = stream::poll_fn(move |cx| connection.poll_message(cx));
        pin_mut!(messages);
        while let Some(message) = messages.try_next().await? {
            if let AsyncMessage::Notification(_) = message {
                // The receiver is gone only when this session ends.
                let _ = notified.send(());
            }
        }
        Ok::<_, Error>(())
    };
    let woken = async {
        client.batch_execute(listen).await?;
        // Events committed before LISTEN took effect notified nobody: read them now.
        wake();
        while notifications.recv().await.is_some() {
            while notifications.try_recv().is_ok() {}
            wake();
        }
        Ok::<_, Error>(())
    };
    first_of(drive, woken).await
}

/// Runs both futures until either ends, with its result.
async fn first_of<T>(a: impl Future<Output = T>, b: impl Future<Output = T>) -> T {
    tokio::select! {
        result = a => result,
        result = b => result,
    }
}
