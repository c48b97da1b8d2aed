//! Search results cached in Redis. The key holds the index generation, which changes with every
//! index commit, so a change to the catalogue makes older entries unreachable at once (they
//! expire on their own). Redis trouble never fails a search: it counts as a miss.

use std::time::Duration;

use fred::{clients::Client as RedisClient, interfaces::KeysInterface, types::Expiration};

use super::IndexResults;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct SearchCache {
    redis: RedisClient,
    /// `None`: the cache is off.
    ttl: Option<Duration>,
    metrics: Metrics,
}

impl SearchCache {
    pub fn new(redis: RedisClient, ttl: Option<Duration>, metrics: Metrics) -> Self {
        SearchCache { redis, ttl: ttl.filter(|t| !t.is_zero()), metrics }
    }

    pub fn enabled(&self) -> bool {
        self.ttl.is_some()
    }

    /// The cached results for `key`, counting a hit or a miss.
    pub async fn get(&self, key: &str) -> Option<IndexResults> {
        self.ttl?;
        let found: Option<String> = match self.redis.get(key).await {
            Ok(v) => v,
            Err(err) => {
                tracing::debug!(error = %err, "search cache read failed");
                None
            }
        };
        let results = found.and_then(|json| serde_json::from_str(&json).ok());
        self.metrics.search_cache(results.is_some());
        results
    }

    pub async fn put(&self, key: &str, results: &IndexResults) {
        let Some(ttl) = self.ttl else { return };
        let Ok(json) = serde_json::to_string(results) else { return };
        let expire = Expiration::EX(ttl.as_secs().max(1) as i64);
        if let Err(err) = self.redis.set::<(), _, _>(key, json, Some(expire), None, false).await {
            tracing::debug!(error = %err, "search cache write failed");
        }
    }
}
