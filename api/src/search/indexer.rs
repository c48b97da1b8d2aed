//! The indexer: follows the outbox and applies product changes to the search index.
//!
//! Rows are read in (writing transaction id, row id) order, together with the xmin of the
//! snapshot they were read in. A row whose transaction id is below that xmin is final: no
//! transaction that could still add rows before it is open. The checkpoint's position moves
//! only over such rows. Rows of recent transactions (at or above xmin) are applied at once, so
//! a change reaches search without waiting for unrelated open transactions, and their ids are
//! remembered in the checkpoint until the position passes them, so none is applied twice by
//! the position logic and none is skipped because a transaction with a smaller id committed
//! late. The checkpoint is committed inside the index's own commit (see [`Checkpoint`]): a
//! crash at any point resumes exactly where the last commit left off.
//!
//! Applying a row never trusts its payload: the product's current row is read from Postgres,
//! so re-applying is harmless and the index converges on what Postgres holds.

use std::{
    collections::{BTreeSet, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use chrono::Utc;
use sea_orm::DatabaseConnection;

use emporium_entities::store::search::{self as store, OutboxEntry, OutboxPosition};

use super::{Checkpoint, IndexChanges, IndexDoc, SearchError, SharedIndex, categories::CategoryTree};

/// Outbox rows read per step; also products read per page of a rebuild.
pub const DEFAULT_BATCH: u64 = 2_000;
const REBUILD_PAGE: u64 = 20_000;
/// How often an idle indexer looks at the outbox: well under the 1-second promise.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// Most rows of recent transactions remembered in a checkpoint (see [`Indexer::step`]).
const MAX_REMEMBERED: usize = 10_000;

#[derive(Clone)]
pub struct Indexer {
    db: DatabaseConnection,
    index: SharedIndex,
    categories: Arc<ArcSwap<CategoryTree>>,
    batch: u64,
    /// Outbox rows older than this are deleted; an index whose checkpoint is older is rebuilt.
    retention: Duration,
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Step {
    /// Outbox rows applied now.
    pub applied: usize,
    /// The batch was full: step again at once.
    pub more: bool,
}

impl Indexer {
    pub fn new(db: DatabaseConnection, index: SharedIndex, categories: Arc<ArcSwap<CategoryTree>>, retention: Duration) -> Self {
        Indexer { db, index, categories, batch: DEFAULT_BATCH, retention }
    }

    pub fn with_batch(mut self, batch: u64) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// Builds the index from scratch when it has never been built, when its checkpoint is
    /// older than the outbox retention (rows it needs may have been pruned), or when it was
    /// built from another database. Returns whether it rebuilt.
    pub async fn ensure_built(&self) -> Result<bool, SearchError> {
        let database = store::database_identity(&self.db).await?;
        let stale = match self.index.checkpoint().await? {
            None => true,
            Some(checkpoint) => {
                let age = Utc::now().signed_duration_since(checkpoint.written_at);
                let other_database = !checkpoint.database.is_empty() && checkpoint.database != database;
                if other_database {
                    tracing::warn!(index = %checkpoint.database, database = %database, "search index belongs to another database; rebuilding");
                }
                other_database || age.to_std().unwrap_or_default() > self.retention
            }
        };
        if stale {
            self.rebuild().await?;
        }
        Ok(stale)
    }

    /// Reads every live product into a new index and swaps it in; searches keep using the old
    /// one until then. Returns the number of products indexed.
    pub async fn rebuild(&self) -> Result<u64, SearchError> {
        let started = Instant::now();
        // Every transaction below this xmin has finished before the products are read, so its
        // changes are in what we read; everything from it on is replayed by the follower
        // (re-applying is harmless).
        let xmin = store::snapshot_xmin(&self.db).await?;
        let database = store::database_identity(&self.db).await?;
        self.reload_categories().await?;
        let categories = self.categories.load_full();
        let sequence = self.index.checkpoint().await?.map_or(0, |c| c.sequence) + 1;
        let mut rebuild = self.index.begin_rebuild().await?;
        let mut after = 0;
        let mut count = 0u64;
        loop {
            let page = store::search_products_after(&self.db, after, REBUILD_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.id;
            count += page.len() as u64;
            rebuild.add(page.into_iter().map(|p| IndexDoc::from_product(p, &categories)).collect()).await?;
        }
        rebuild.finish(Checkpoint { txid: xmin, id: 0, applied: Vec::new(), written_at: Utc::now(), sequence, database }).await?;
        tracing::info!(products = count, elapsed_ms = started.elapsed().as_millis() as u64, "search index rebuilt");
        Ok(count)
    }

    async fn reload_categories(&self) -> Result<(), SearchError> {
        self.categories.store(Arc::new(CategoryTree::load(&self.db).await?));
        Ok(())
    }

    /// Applies the next batch of outbox rows, if any, in one index commit.
    pub async fn step(&self) -> Result<Step, SearchError> {
        let checkpoint = self.index.checkpoint().await?.ok_or_else(|| SearchError::Corrupt("the index was never built".to_owned()))?;
        let skip: Vec<i64> = checkpoint.applied.iter().map(|&(_, id)| id).collect();
        let batch = store::read_outbox(&self.db, checkpoint.position(), &skip, self.batch).await?;
        let mut more = batch.rows.len() as u64 >= self.batch;
        let mut position = checkpoint.position();
        let mut applied: BTreeSet<(u64, i64)> = checkpoint.applied.iter().copied().collect();
        let mut fresh: Vec<&OutboxEntry> = Vec::new();
        for row in &batch.rows {
            if (row.txid as u64) < batch.xmin {
                // final: the position moves over it (rows come in position order, the final
                // ones first)
                position = row.position();
            } else if applied.len() >= MAX_REMEMBERED {
                // a transaction has been open for very long: wait for it rather than let the
                // checkpoint grow without bound
                more = false;
                break;
            } else {
                applied.insert((row.txid as u64, row.id));
            }
            fresh.push(row);
        }
        // rows the position has passed need no remembering
        applied.retain(|&(txid, id)| OutboxPosition { txid, id } > position);
        if fresh.is_empty() && position == checkpoint.position() {
            return Ok(Step { applied: 0, more: false });
        }
        let changes = self.changes_for(&fresh).await?;
        let next = Checkpoint {
            txid: position.txid,
            id: position.id,
            applied: applied.into_iter().collect(),
            written_at: Utc::now(),
            sequence: checkpoint.sequence + 1,
            database: checkpoint.database.clone(),
        };
        self.index.apply(changes, next).await?;
        Ok(Step { applied: fresh.len(), more })
    }

    /// The index changes for outbox rows: the current state of every product they name.
    async fn changes_for(&self, rows: &[&OutboxEntry]) -> Result<IndexChanges, SearchError> {
        if rows.iter().any(|r| r.aggregate == "category") {
            self.reload_categories().await?;
        }
        let mut ids: Vec<i64> = rows
            .iter()
            .filter(|r| r.aggregate == "product")
            .filter_map(|r| r.aggregate_id.parse().ok())
            .collect::<HashSet<i64>>()
            .into_iter()
            .collect();
        ids.sort_unstable();
        if ids.is_empty() {
            return Ok(IndexChanges::default());
        }
        let live = store::search_products_by_ids(&self.db, &ids).await?;
        let live_ids: HashSet<i64> = live.iter().map(|p| p.id).collect();
        let mut categories = self.categories.load_full();
        if live.iter().any(|p| categories.slug(p.category_id).is_none()) {
            // a category created after our last reload
            self.reload_categories().await?;
            categories = self.categories.load_full();
        }
        Ok(IndexChanges {
            deletes: ids.iter().copied().filter(|id| !live_ids.contains(id)).collect(),
            upserts: live.into_iter().map(|p| IndexDoc::from_product(p, &categories)).collect(),
        })
    }

    /// Outbox rows the index has not applied yet (0 when it has caught up).
    pub async fn pending(&self) -> Result<usize, SearchError> {
        let Some(checkpoint) = self.index.checkpoint().await? else { return Ok(usize::MAX) };
        let skip: Vec<i64> = checkpoint.applied.iter().map(|&(_, id)| id).collect();
        Ok(store::read_outbox(&self.db, checkpoint.position(), &skip, self.batch).await?.rows.len())
    }

    /// Builds the index if needed, then follows the outbox until the task is aborted. Errors
    /// (Postgres down, say) are logged and retried: search keeps answering from the index.
    pub async fn run(self) {
        let mut failures = 0u32;
        loop {
            match self.ensure_built().await {
                Ok(_) => break,
                Err(err) => {
                    failures += 1;
                    tracing::error!(error = %err, "could not build the search index; retrying");
                    tokio::time::sleep(backoff(failures)).await;
                }
            }
        }
        let mut last_prune = Instant::now();
        failures = 0;
        loop {
            if let Err(err) = self.index.refresh().await {
                tracing::warn!(error = %err, "could not open the search index swapped in by reindex");
            }
            match self.step().await {
                Ok(step) => {
                    failures = 0;
                    if step.more {
                        continue;
                    }
                }
                Err(err) => {
                    failures += 1;
                    tracing::warn!(error = %err, failures, "search indexer step failed; retrying");
                    tokio::time::sleep(backoff(failures)).await;
                    continue;
                }
            }
            if last_prune.elapsed() > PRUNE_EVERY {
                last_prune = Instant::now();
                match store::prune_outbox(&self.db, self.retention.as_secs()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(rows = n, "pruned old outbox rows"),
                    Err(err) => tracing::warn!(error = %err, "could not prune the outbox"),
                }
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis((100u64 << failures.min(6)).min(5_000))
}
