//! Product search: an index behind one interface ([`SearchIndex`]) with two implementations
//! chosen by configuration (tantivy embedded in this process, or an OpenSearch cluster), the
//! indexer that feeds it from the outbox, and the Redis cache in front of it.

pub mod cache;
pub mod categories;
pub mod indexer;
pub mod opensearch;
pub mod query;
pub mod tantivy;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use emporium_entities::store::search::{OutboxPosition, SearchProduct};

pub use self::{
    categories::CategoryTree,
    query::{PRICE_BANDS, Sort},
};

/// What can go wrong inside an index. Never shown to clients: routes log it and answer 503.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("tantivy: {0}")]
    Tantivy(#[from] ::tantivy::TantivyError),
    #[error("opensearch: {0}")]
    OpenSearch(String),
    #[error("index storage: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt index state: {0}")]
    Corrupt(String),
    #[error("database: {0}")]
    Store(#[from] emporium_entities::StoreError),
    #[error("search task failed: {0}")]
    Task(String),
}

/// A product as it is indexed: the row plus what search needs of its category.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexDoc {
    pub id: i64,
    pub title: String,
    pub description: String,
    pub brand: String,
    pub category_id: i64,
    pub category_slug: String,
    /// The category and every category above it, so a filter on a parent finds its children.
    pub category_path: Vec<i64>,
    pub price_minor: i64,
    pub currency: String,
    pub available: i64,
    pub rating: f64,
    pub rating_count: i64,
    pub created_at: DateTime<Utc>,
}

impl IndexDoc {
    pub fn from_product(p: SearchProduct, categories: &CategoryTree) -> Self {
        IndexDoc {
            id: p.id,
            title: p.title,
            description: p.description,
            brand: p.brand,
            category_id: p.category_id,
            category_slug: categories.slug(p.category_id).unwrap_or_default().to_owned(),
            category_path: categories.ancestors(p.category_id),
            price_minor: p.price_minor,
            currency: p.currency,
            available: i64::from(p.available),
            rating: f64::from(p.rating),
            rating_count: i64::from(p.rating_count),
            created_at: p.created_at,
        }
    }
}

/// A validated search, as an index answers it.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexQuery {
    /// Free text; empty browses.
    pub text: String,
    /// The category asked for (its sub-categories match too) ...
    pub category: Option<i64>,
    /// ... and every category id that matches it ...
    pub category_ids: Vec<i64>,
    /// ... and their slugs.
    pub category_slugs: Vec<String>,
    /// Any of these brands (case-insensitive); empty means all.
    pub brands: Vec<String>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub in_stock: bool,
    pub sort: Sort,
    pub offset: usize,
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    pub id: i64,
    pub title: String,
    pub brand: String,
    pub price_minor: i64,
    pub currency: String,
    pub available: i64,
    pub category_id: i64,
    pub score: f32,
}

/// Facet counts; each reflects every filter except its own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Facets {
    /// (category id, count), products counted in their own category.
    pub categories: Vec<(i64, u64)>,
    pub brands: Vec<(String, u64)>,
    /// One count per band of [`PRICE_BANDS`].
    pub price_bands: Vec<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IndexResults {
    pub total: u64,
    pub hits: Vec<Hit>,
    pub facets: Facets,
}

/// How far into the outbox an index is, stored inside the index's own commit so that applying
/// changes and remembering them is one step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Every outbox row at or before this (txid, id) position whose transaction id is below the
    /// snapshot xmin it was read under is applied. Rows are read in (txid, id) order.
    pub txid: u64,
    pub id: i64,
    /// Rows after the position already applied, as (txid, id): their transactions committed
    /// while an older transaction was still open, so the position could not move past them yet.
    #[serde(default)]
    pub applied: Vec<(u64, i64)>,
    /// When this checkpoint was written (an index older than the outbox retention is rebuilt).
    pub written_at: DateTime<Utc>,
    /// Incremented by every commit; part of the cache key.
    #[serde(default)]
    pub sequence: u64,
    /// The database the index follows (see `database_identity`); empty when unknown.
    #[serde(default)]
    pub database: String,
}

impl Checkpoint {
    pub fn position(&self) -> OutboxPosition {
        OutboxPosition { txid: self.txid, id: self.id }
    }
}

/// A batch of changes to apply atomically with a checkpoint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexChanges {
    /// Documents to add or replace (by id).
    pub upserts: Vec<IndexDoc>,
    /// Ids to remove.
    pub deletes: Vec<i64>,
}

/// An index being built from scratch next to the one in use; `finish` swaps it in.
#[async_trait]
pub trait Rebuild: Send {
    async fn add(&mut self, docs: Vec<IndexDoc>) -> Result<(), SearchError>;
    /// Commits with `checkpoint` and makes this the index every search uses.
    async fn finish(self: Box<Self>, checkpoint: Checkpoint) -> Result<(), SearchError>;
}

/// The search index interface: tantivy and OpenSearch implement it.
#[async_trait]
pub trait SearchIndex: Send + Sync {
    async fn search(&self, query: &IndexQuery) -> Result<IndexResults, SearchError>;
    /// Up to `limit` distinct titles completing `prefix`, most reviewed first.
    async fn suggest(&self, prefix: &str, limit: usize) -> Result<Vec<String>, SearchError>;
    /// The checkpoint of the last commit; `None` for an index never built.
    async fn checkpoint(&self) -> Result<Option<Checkpoint>, SearchError>;
    /// Applies `changes` and records `checkpoint` in one commit.
    async fn apply(&self, changes: IndexChanges, checkpoint: Checkpoint) -> Result<(), SearchError>;
    async fn begin_rebuild(&self) -> Result<Box<dyn Rebuild>, SearchError>;
    /// Picks up an index another process swapped in (the `reindex` command); true if it did.
    async fn refresh(&self) -> Result<bool, SearchError>;
    /// Changes whenever the content may have changed; cache keys include it.
    fn generation(&self) -> String;
    /// Documents in the index (for logs and tests).
    async fn num_docs(&self) -> Result<u64, SearchError>;
}

pub type SharedIndex = Arc<dyn SearchIndex>;

// ---------------------------------------------------------------------------------------------
// The service the routes use

use arc_swap::ArcSwap;
use fred::clients::Client as RedisClient;
use sea_orm::DatabaseConnection;

use self::{cache::SearchCache, indexer::Indexer, query::CheckedSearch};
use crate::{
    config::{SearchBackend, SearchConfig},
    metrics::Metrics,
};

/// Why a search was not answered.
#[derive(Debug, thiserror::Error)]
pub enum SearchFailure {
    #[error("category {0:?} does not exist")]
    UnknownCategory(String),
    #[error(transparent)]
    Index(#[from] SearchError),
}

/// Results with what the route needs to present them.
pub struct SearchOutcome {
    pub results: IndexResults,
    pub categories: Arc<CategoryTree>,
}

#[derive(Clone)]
pub struct SearchService {
    index: SharedIndex,
    categories: Arc<ArcSwap<CategoryTree>>,
    cache: SearchCache,
    db: DatabaseConnection,
    indexer: Indexer,
}

impl SearchService {
    /// Opens the configured index (an empty tantivy index is created if there is none; the
    /// indexer builds it when it starts).
    pub fn open(config: &SearchConfig, db: DatabaseConnection, redis: RedisClient, metrics: Metrics) -> Result<Self, SearchError> {
        let index: SharedIndex = match &config.backend {
            SearchBackend::Tantivy { dir } => Arc::new(tantivy::TantivyIndex::open(dir, config.threads)?),
            SearchBackend::OpenSearch { url, index } => Arc::new(opensearch::OpenSearchIndex::new(url, index)?),
        };
        Ok(Self::with_index(index, config, db, redis, metrics))
    }

    pub fn with_index(index: SharedIndex, config: &SearchConfig, db: DatabaseConnection, redis: RedisClient, metrics: Metrics) -> Self {
        let categories = Arc::new(ArcSwap::from_pointee(CategoryTree::default()));
        let indexer = Indexer::new(db.clone(), index.clone(), categories.clone(), config.outbox_retention);
        SearchService { cache: SearchCache::new(redis, config.cache_ttl, metrics), index, categories, db, indexer }
    }

    pub fn index(&self) -> &SharedIndex {
        &self.index
    }

    pub fn indexer(&self) -> &Indexer {
        &self.indexer
    }

    /// The category tree, reloaded from Postgres when it does not know `key`.
    async fn resolve_category(&self, key: &str) -> Result<(i64, Arc<CategoryTree>), SearchFailure> {
        let tree = self.categories.load_full();
        if let Some(id) = tree.resolve(key) {
            return Ok((id, tree));
        }
        let fresh = Arc::new(CategoryTree::load(&self.db).await.map_err(SearchError::from)?);
        self.categories.store(fresh.clone());
        fresh.resolve(key).map(|id| (id, fresh)).ok_or_else(|| SearchFailure::UnknownCategory(key.to_owned()))
    }

    pub async fn search(&self, checked: CheckedSearch, category: Option<&str>) -> Result<SearchOutcome, SearchFailure> {
        let (category, categories) = match category {
            Some(key) => {
                let (id, tree) = self.resolve_category(key).await?;
                (Some(id), tree)
            }
            None => {
                let tree = self.categories.load_full();
                if tree.is_empty() {
                    // first search before the indexer loaded it: slugs are needed for the answer
                    let fresh = Arc::new(CategoryTree::load(&self.db).await.map_err(SearchError::from)?);
                    self.categories.store(fresh.clone());
                    (None, fresh)
                } else {
                    (None, tree)
                }
            }
        };
        let category_ids = category.map(|c| categories.subtree(c)).unwrap_or_default();
        let query = IndexQuery {
            text: checked.text,
            category,
            category_slugs: category_ids.iter().filter_map(|&id| categories.slug(id).map(str::to_owned)).collect(),
            category_ids,
            brands: checked.brands,
            min_price: checked.min_price,
            max_price: checked.max_price,
            in_stock: checked.in_stock,
            sort: checked.sort,
            offset: ((checked.page - 1) * checked.limit) as usize,
            limit: checked.limit as usize,
        };
        let key = self.cache.enabled().then(|| cache_key(&self.index.generation(), &query));
        if let Some(key) = &key
            && let Some(results) = self.cache.get(key).await
        {
            return Ok(SearchOutcome { results, categories });
        }
        let results = self.index.search(&query).await?;
        if let Some(key) = &key {
            self.cache.put(key, &results).await;
        }
        Ok(SearchOutcome { results, categories })
    }

    pub async fn suggest(&self, prefix: &str, limit: usize) -> Result<Vec<String>, SearchError> {
        self.index.suggest(prefix, limit).await
    }
}

/// Everything that decides the answer, behind the generation of the index that gave it.
fn cache_key(generation: &str, q: &IndexQuery) -> String {
    let canonical = serde_json::json!([
        q.text.to_lowercase(),
        q.category,
        q.brands.iter().map(|b| b.to_lowercase()).collect::<Vec<_>>(),
        q.min_price,
        q.max_price,
        q.in_stock,
        q.sort.as_str(),
        q.offset,
        q.limit,
    ]);
    format!("search:v1:{generation}:{canonical}")
}

/// The `reindex` command: rebuilds the configured index from Postgres and swaps it in.
pub async fn reindex(config: &crate::config::Config) -> anyhow::Result<u64> {
    use anyhow::Context;
    let db = emporium_entities::db::connect_and_migrate(&config.database_url, 4).await?;
    let redis = crate::state::redis_client(&config.redis_url)?;
    let index: SharedIndex = match &config.search.backend {
        SearchBackend::Tantivy { dir } => Arc::new(tantivy::TantivyIndex::open_for_reindex(dir)?),
        SearchBackend::OpenSearch { url, index } => Arc::new(opensearch::OpenSearchIndex::new(url, index)?),
    };
    let service = SearchService::with_index(index, &config.search, db, redis, Metrics::new());
    service.indexer().rebuild().await.context("failed to rebuild the search index")
}
