//! Settings from environment variables, with defaults that work on a developer machine.

use std::{fmt, path::PathBuf, time::Duration};

use anyhow::Context;

/// A value that must never reach a log line or an error message.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// One batch of signed-in cart changes at a time: changes arriving meanwhile go together in the
/// next. Two were the default until `cart_changes` worked in rounds (a big batch now costs about
/// what a small one does); since then two make smaller batches, each paying its own statements,
/// commit and WAL flush, and competing with the API for the two cores. Measured side by side
/// (cart benchmark, README, tenth machine): one gave 29 – 35% more capacity in four runs of each
/// and a lower p99, saturated and at the same offered rate. A cart locked elsewhere holds a batch
/// up for at most the writer's lock timeout, after which its changes go on their own (see
/// `cart::writer`).
pub const DEFAULT_CART_WRITE_BATCHES: usize = 1;

pub const DEV_JWT_SECRET: &str = "emporium-dev-secret-change-me-in-production";
pub const DEV_ADMIN_EMAIL: &str = "admin@emporium.local";
pub const DEV_ADMIN_PASSWORD: &str = "emporium-admin";

#[derive(Debug, Clone)]
pub struct Config {
    /// Address the HTTP server binds (`EMPORIUM_BIND`); port 0 picks a free port.
    pub bind: String,
    pub database_url: String,
    pub database_max_connections: u32,
    /// Batches of signed-in cart changes sent to Postgres at once (`EMPORIUM_CART_WRITE_BATCHES`);
    /// changes arriving meanwhile wait and go together in the next batch; 0 sends each alone.
    pub cart_write_batches: usize,
    /// How often an idle `GET /cart/events` stream sends a comment
    /// (`EMPORIUM_CART_EVENTS_KEEP_ALIVE_SECS`): it keeps proxies from closing the stream, and a
    /// device that went away is noticed at the second write after it left, which ends its
    /// subscription.
    pub cart_events_keep_alive: Duration,
    pub redis_url: String,
    pub temporal_address: String,
    pub temporal_namespace: String,
    pub task_queue: String,
    /// How long a checkout holds its stock while waiting for payment.
    pub checkout_reservation: Duration,
    /// How long after delivery an order accepts returns (`ORDER_RETURN_WINDOW_SECS`).
    pub order_return_window: Duration,
    /// Default waiting-room admission rate of new flash sales (`FLASH_SALE_ADMISSION_PER_SEC`).
    pub flash_sale_admission_per_sec: i64,
    /// How long a won flash-sale unit is held for payment (`FLASH_SALE_CLAIM_TTL_SECS`).
    pub flash_sale_claim_ttl: Duration,
    pub jwt_secret: Secret,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// Created or updated at start-up when both are set.
    pub admin_email: Option<String>,
    pub admin_password: Option<Secret>,
    pub search: SearchConfig,
}

/// Where the search index lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchBackend {
    /// tantivy inside this process (`EMPORIUM_SEARCH_BACKEND=tantivy`, the default), its
    /// index under `dir` (`EMPORIUM_SEARCH_INDEX_DIR`). One directory per API instance.
    Tantivy { dir: PathBuf },
    /// An OpenSearch cluster (`EMPORIUM_SEARCH_BACKEND=opensearch`): `OPENSEARCH_URL`, and the
    /// alias searched (`OPENSEARCH_INDEX`).
    OpenSearch { url: String, index: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchConfig {
    pub backend: SearchBackend,
    /// How long identical searches are answered from Redis (`EMPORIUM_SEARCH_CACHE_TTL_SECS`,
    /// default 300); `None` (0) turns the cache off.
    pub cache_ttl: Option<Duration>,
    /// Outbox rows older than this are pruned (`EMPORIUM_OUTBOX_RETENTION_SECS`, 7 days).
    pub outbox_retention: Duration,
    /// Searches the tantivy index runs at once (`EMPORIUM_SEARCH_THREADS`, default four per
    /// core); more wait their turn.
    pub threads: usize,
}

/// Four searches per core. Measured at 1M products, 16 clients, 2 cores: one per core left the
/// cores idle between searches (469 q/s, p99 55 ms); unbounded shared them among all (702 q/s,
/// p99 58 ms); four per core did best (733 q/s, p99 50 ms).
pub fn default_search_threads() -> usize {
    4 * std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl SearchConfig {
    /// A tantivy index in `dir`, the cache on for the default five minutes.
    pub fn tantivy(dir: impl Into<PathBuf>) -> Self {
        SearchConfig {
            backend: SearchBackend::Tantivy { dir: dir.into() },
            cache_ttl: Some(Duration::from_secs(300)),
            outbox_retention: Duration::from_secs(7 * 24 * 3600),
            threads: default_search_threads(),
        }
    }
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let string = |name: &str, default: &str| var(name).unwrap_or_else(|| default.to_owned());
        let seconds = |name: &str, default: u64| -> anyhow::Result<Duration> {
            Ok(Duration::from_secs(match var(name) {
                Some(v) => v.parse().with_context(|| format!("{name} must be a number of seconds"))?,
                None => default,
            }))
        };
        let jwt_secret = match var("EMPORIUM_JWT_SECRET") {
            Some(secret) => Secret::new(secret),
            None => {
                tracing::warn!("EMPORIUM_JWT_SECRET is not set; using the development secret");
                Secret::new(DEV_JWT_SECRET)
            }
        };
        let backend = match string("EMPORIUM_SEARCH_BACKEND", "tantivy").as_str() {
            "tantivy" => SearchBackend::Tantivy { dir: string("EMPORIUM_SEARCH_INDEX_DIR", ".dev/search-index").into() },
            "opensearch" => SearchBackend::OpenSearch {
                url: string("OPENSEARCH_URL", "http://127.0.0.1:9200"),
                index: string("OPENSEARCH_INDEX", "emporium-products"),
            },
            other => anyhow::bail!("EMPORIUM_SEARCH_BACKEND must be tantivy or opensearch, not {other:?}"),
        };
        let cache_ttl = seconds("EMPORIUM_SEARCH_CACHE_TTL_SECS", 300)?;
        let search = SearchConfig {
            backend,
            cache_ttl: (!cache_ttl.is_zero()).then_some(cache_ttl),
            outbox_retention: seconds("EMPORIUM_OUTBOX_RETENTION_SECS", 7 * 24 * 3600)?,
            threads: match var("EMPORIUM_SEARCH_THREADS") {
                Some(v) => v.parse::<usize>().ok().filter(|n| *n > 0).context("EMPORIUM_SEARCH_THREADS must be a number above 0")?,
                None => default_search_threads(),
            },
        };
        Ok(Self {
            bind: string("EMPORIUM_BIND", "0.0.0.0:8080"),
            database_url: string("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/emporium?sslmode=disable"),
            database_max_connections: match var("DATABASE_MAX_CONNECTIONS") {
                Some(v) => v.parse().context("DATABASE_MAX_CONNECTIONS must be a number")?,
                None => 20,
            },
            cart_write_batches: match var("EMPORIUM_CART_WRITE_BATCHES") {
                Some(v) => v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n <= 64)
                    .context("EMPORIUM_CART_WRITE_BATCHES must be a whole number up to 64 (0 sends each change alone)")?,
                None => DEFAULT_CART_WRITE_BATCHES,
            },
            cart_events_keep_alive: seconds("EMPORIUM_CART_EVENTS_KEEP_ALIVE_SECS", 15)?,
            redis_url: string("REDIS_URL", "redis://127.0.0.1:6379"),
            temporal_address: string("TEMPORAL_ADDRESS", "http://127.0.0.1:7233"),
            temporal_namespace: string("TEMPORAL_NAMESPACE", "emporium"),
            task_queue: string("TEMPORAL_TASK_QUEUE", "emporium"),
            checkout_reservation: seconds("CHECKOUT_RESERVATION_SECS", 600)?,
            order_return_window: seconds("ORDER_RETURN_WINDOW_SECS", 30 * 24 * 3600)?,
            flash_sale_admission_per_sec: match var("FLASH_SALE_ADMISSION_PER_SEC") {
                Some(v) => {
                    v.parse::<u32>().context("FLASH_SALE_ADMISSION_PER_SEC must be a whole number (0 turns the waiting room off)")?.into()
                }
                None => 2_000,
            },
            flash_sale_claim_ttl: seconds("FLASH_SALE_CLAIM_TTL_SECS", 120)?,
            jwt_secret,
            access_token_ttl: seconds("EMPORIUM_ACCESS_TOKEN_TTL_SECS", 15 * 60)?,
            refresh_token_ttl: seconds("EMPORIUM_REFRESH_TOKEN_TTL_SECS", 30 * 24 * 3600)?,
            admin_email: Some(string("EMPORIUM_ADMIN_EMAIL", DEV_ADMIN_EMAIL)),
            admin_password: Some(Secret::new(string("EMPORIUM_ADMIN_PASSWORD", DEV_ADMIN_PASSWORD))),
            search,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let shown = format!("{:?}", Secret::new("hunter2"));
        assert!(!shown.contains("hunter2"));
    }
}
