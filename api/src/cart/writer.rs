//! Signed-in cart changes go to Postgres in batches: while `in_flight` batches are running,
//! new changes wait in a queue, and the next free slot sends everything queued as one
//! `cart_changes` statement with one commit. An idle store sends batches of one, so a lone
//! change waits for nothing; a busy one pays a round trip, a commit and a backend wake-up per
//! batch instead of per change, which is where a signed-in write's Postgres time went.

use std::{sync::Arc, time::Duration};

use prometheus::Histogram;
use sea_orm::{DatabaseConnection, DbErr, RuntimeErr, sqlx};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use uuid::Uuid;

use emporium_entities::store::{
    StoreError,
    carts::{self, CartChange, CartError, PricedCart},
};

use super::MAX_LINE_QUANTITY;

/// Most changes in one statement: enough for every client of a busy instance, small enough
/// that one batch holds its carts' locks briefly.
const MAX_BATCH: usize = 64;

/// How long a batch waits for a cart locked elsewhere before it fails and its changes go one by
/// one (see `write`): long enough for any change, short enough that the other carts of the batch
/// are not kept waiting by one in a long transaction.
const BATCH_LOCK_TIMEOUT: Duration = Duration::from_millis(250);

struct Job {
    user: Uuid,
    change: CartChange,
    reply: oneshot::Sender<Result<PricedCart, CartError>>,
}

/// What the writer records of each batch it sends.
#[derive(Clone)]
pub struct WriterMetrics {
    /// Changes in the batch.
    pub batch_size: Histogram,
    /// Seconds from sending the batch to having its outcome (round trip and commit): the stalls
    /// that make every signed-in write wait show here first.
    pub batch_seconds: Histogram,
}

#[derive(Clone)]
pub struct CartWriter {
    queue: mpsc::Sender<Job>,
}

impl CartWriter {
    /// Starts the writer, `in_flight` batches at a time, recording each batch in `metrics`; it
    /// stops when the last clone of the returned handle is dropped.
    pub fn spawn(db: DatabaseConnection, in_flight: usize, metrics: Option<WriterMetrics>) -> Self {
        let in_flight = in_flight.max(1);
        let (queue, jobs) = mpsc::channel(4 * MAX_BATCH * in_flight);
        tokio::spawn(dispatch(db, jobs, in_flight, metrics));
        Self { queue }
    }

    /// Applies `change` to the user's cart, as `carts::change_user_cart` does, once committed.
    pub async fn change(&self, user: Uuid, change: CartChange) -> Result<PricedCart, CartError> {
        let (reply, answer) = oneshot::channel();
        self.queue.send(Job { user, change, reply }).await.map_err(|_| stopped("the cart writer has stopped"))?;
        answer.await.map_err(|_| stopped("the cart writer dropped a change"))?
    }
}

fn stopped(what: &str) -> CartError {
    CartError::Store(StoreError::Db(DbErr::Custom(what.to_owned())))
}

async fn dispatch(db: DatabaseConnection, mut jobs: mpsc::Receiver<Job>, in_flight: usize, metrics: Option<WriterMetrics>) {
    let slots = Arc::new(Semaphore::new(in_flight));
    loop {
        // A slot first: while every slot is busy, changes gather in the queue for the next batch.
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let mut batch = Vec::with_capacity(MAX_BATCH);
        if jobs.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return; // every handle is gone
        }
        if let Some(metrics) = &metrics {
            metrics.batch_size.observe(batch.len() as f64);
        }
        let (db, metrics) = (db.clone(), metrics.clone());
        tokio::spawn(async move { write(&db, batch, slot, metrics.as_ref()).await });
    }
}

/// Sends one batch, holding `slot` while the batch runs.
async fn write(db: &DatabaseConnection, batch: Vec<Job>, slot: OwnedSemaphorePermit, metrics: Option<&WriterMetrics>) {
    let changes: Vec<(Uuid, CartChange)> = batch.iter().map(|job| (job.user, job.change)).collect();
    let timer = metrics.map(|m| m.batch_seconds.start_timer());
    let result = carts::change_user_carts(db, &changes, MAX_LINE_QUANTITY, Some(BATCH_LOCK_TIMEOUT)).await;
    drop(timer); // observes
    match result {
        Ok(outcomes) => {
            for (job, outcome) in batch.into_iter().zip(outcomes) {
                let _ = job.reply.send(outcome); // the request may have gone; the change stands
            }
        }
        Err(err) if rolled_back(&err) => {
            // Postgres refused the statement, so nothing of it was applied: one change failed
            // (or a cart stayed locked past the batch's lock timeout). Apply the changes on
            // their own, each user's in order and the users side by side, so that only the
            // failing change fails and only a locked cart's changes wait for it.
            tracing::warn!(error = %err, changes = batch.len(), "a batch of cart changes failed; applying them one by one");
            // the next batch need not wait for a locked cart's changes
            drop(slot);
            let mut by_user: Vec<Vec<Job>> = Vec::new();
            for job in batch {
                match by_user.iter_mut().find(|jobs| jobs[0].user == job.user) {
                    Some(jobs) => jobs.push(job),
                    None => by_user.push(vec![job]),
                }
            }
            futures::future::join_all(by_user.into_iter().map(|jobs| async move {
                for job in jobs {
                    let outcome = carts::change_user_cart(db, job.user, job.change, MAX_LINE_QUANTITY).await;
                    let _ = job.reply.send(outcome);
                }
            }))
            .await;
        }
        Err(err) => {
            // The outcome may be unknown (a connection lost around the commit): applying the
            // changes again could add twice, so every change of the batch fails.
            for job in batch {
                let _ = job.reply.send(Err(err.clone().into()));
            }
        }
    }
}

/// Whether Postgres refused the statement with an ordinary error, after which it rolled back as
/// a whole. A connection lost, or a FATAL or PANIC (a server shutting down or crashing, which
/// may come after the commit), leaves the outcome unknown.
fn rolled_back(err: &DbErr) -> bool {
    let (DbErr::Query(RuntimeErr::SqlxError(e)) | DbErr::Exec(RuntimeErr::SqlxError(e))) = err else { return false };
    let sqlx::Error::Database(e) = &**e else { return false };
    let Some(e) = e.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() else { return false };
    // classes 08 connection, 57 operator intervention, 58 system, XX internal
    let unknown_outcome = ["08", "57", "58", "XX"].iter().any(|class| e.code().starts_with(class));
    matches!(e.severity(), sqlx::postgres::PgSeverity::Error) && !unknown_outcome
}
