//! The clustered index: OpenSearch through the `opensearch` crate.
//!
//! Searches go to an alias (`OPENSEARCH_INDEX`); the alias points at one physical index
//! (`<alias>-<uuid>`). A rebuild fills a new physical index and moves the alias in one
//! `_aliases` call, so searches never miss. The outbox checkpoint of each physical index is a
//! document in `<alias>-meta`, written after the changes it covers (re-applying a change is
//! harmless, so a crash in between only repeats work).
//!
//! Request bodies are built by plain functions ([`search_body`], [`mapping`], ...) and
//! responses read by [`parse_search`], so tests check both against a local stand-in server.

use std::{sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use opensearch::{
    OpenSearch,
    http::{
        Method, StatusCode, Url,
        headers::{CONTENT_TYPE, HeaderMap, HeaderValue},
        transport::{SingleNodeConnectionPool, TransportBuilder},
    },
};
use serde_json::{Value, json};

use super::{
    Checkpoint, Facets, Hit, IndexChanges, IndexDoc, IndexQuery, IndexResults, Rebuild, SearchError, SearchIndex, Sort, query::PRICE_BANDS,
};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct OpenSearchIndex {
    client: OpenSearch,
    alias: String,
    /// The physical index the alias pointed at when last looked, and its checkpoint.
    state: Arc<ArcSwap<Option<Current>>>,
}

#[derive(Debug, Clone)]
struct Current {
    index: String,
    checkpoint: Option<Checkpoint>,
}

fn os_err(err: impl std::fmt::Display) -> SearchError {
    SearchError::OpenSearch(err.to_string())
}

impl OpenSearchIndex {
    pub fn new(url: &str, alias: &str) -> Result<Self, SearchError> {
        // reqwest is built without a TLS provider of its own (see Cargo.toml)
        crate::install_crypto_provider();
        let url = Url::parse(url).map_err(|e| os_err(format!("OPENSEARCH_URL {url:?}: {e}")))?;
        let transport =
            TransportBuilder::new(SingleNodeConnectionPool::new(url)).timeout(REQUEST_TIMEOUT).disable_proxy().build().map_err(os_err)?;
        Ok(OpenSearchIndex { client: OpenSearch::new(transport), alias: alias.to_owned(), state: Arc::default() })
    }

    fn meta_index(&self) -> String {
        format!("{}-meta", self.alias)
    }

    /// Sends a request; `Ok(None)` for 404, an error for any other failure status.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Option<Value>, SearchError> {
        let response = match body {
            Some(body) => self.client.send(method, path, HeaderMap::new(), None::<&()>, Some(body.to_string()), None).await,
            None => self.client.send::<String, ()>(method, path, HeaderMap::new(), None, None, None).await,
        }
        .map_err(os_err)?;
        read_response(response).await
    }

    async fn bulk(&self, lines: Vec<Value>, refresh: bool) -> Result<(), SearchError> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut body = String::new();
        for line in &lines {
            body.push_str(&line.to_string());
            body.push('\n');
        }
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
        let path = if refresh { "/_bulk?refresh=true" } else { "/_bulk" };
        let response = self.client.send(Method::Post, path, headers, None::<&()>, Some(body), None).await.map_err(os_err)?;
        let answer = read_response(response).await?.unwrap_or_default();
        check_bulk(&answer)
    }

    /// The physical index behind the alias, `None` when there is no alias yet.
    async fn resolve_alias(&self) -> Result<Option<String>, SearchError> {
        let answer = self.call(Method::Get, &format!("/_alias/{}", self.alias), None).await?;
        Ok(answer.and_then(|v| v.as_object().and_then(|o| o.keys().next().cloned())))
    }

    async fn load_checkpoint(&self, index: &str) -> Result<Option<Checkpoint>, SearchError> {
        let answer = self.call(Method::Get, &format!("/{}/_doc/{index}", self.meta_index()), None).await?;
        match answer {
            Some(doc) if doc["found"] == json!(true) => serde_json::from_value(doc["_source"]["checkpoint"].clone())
                .map(Some)
                .map_err(|e| SearchError::Corrupt(format!("checkpoint of {index}: {e}"))),
            _ => Ok(None),
        }
    }

    async fn save_checkpoint(&self, index: &str, checkpoint: &Checkpoint) -> Result<(), SearchError> {
        self.call(Method::Put, &format!("/{}/_doc/{index}?refresh=true", self.meta_index()), Some(json!({ "checkpoint": checkpoint })))
            .await?;
        Ok(())
    }

    /// The current physical index, looked up once and then kept until `refresh`.
    async fn current(&self) -> Result<Option<Current>, SearchError> {
        if let Some(current) = self.state.load().as_ref() {
            return Ok(Some(current.clone()));
        }
        self.reload().await
    }

    async fn reload(&self) -> Result<Option<Current>, SearchError> {
        let Some(index) = self.resolve_alias().await? else { return Ok(None) };
        let checkpoint = self.load_checkpoint(&index).await?;
        let current = Current { index, checkpoint };
        self.state.store(Arc::new(Some(current.clone())));
        Ok(Some(current))
    }
}

async fn read_response(response: opensearch::http::response::Response) -> Result<Option<Value>, SearchError> {
    let status = response.status_code();
    if status == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let text = response.text().await.map_err(os_err)?;
    if !status.is_success() {
        return Err(os_err(format!("status {status}: {}", text.chars().take(500).collect::<String>())));
    }
    if text.trim().is_empty() {
        return Ok(Some(Value::Null));
    }
    serde_json::from_str(&text).map(Some).map_err(|e| os_err(format!("unreadable answer: {e}")))
}

/// A bulk answer is 200 even when items failed; a delete of a missing document is not a failure.
pub fn check_bulk(answer: &Value) -> Result<(), SearchError> {
    if answer["errors"] != json!(true) {
        return Ok(());
    }
    let first = answer["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item.as_object().and_then(|o| o.values().next()))
        .find(|result| result.get("error").is_some());
    match first {
        Some(result) => Err(os_err(format!("bulk item failed: {}", result["error"]))),
        None => Ok(()),
    }
}

/// Settings and mappings of a physical index: one analyzer for all text (standard tokenizer,
/// lowercase, ASCII folding), brand also as a keyword (facets) and lowercased keyword (filter).
pub fn mapping() -> Value {
    json!({
        "settings": {
            "analysis": {
                "analyzer": {
                    "product_text": { "type": "custom", "tokenizer": "standard", "filter": ["lowercase", "asciifolding"] }
                },
                "normalizer": {
                    "lowercase": { "type": "custom", "filter": ["lowercase", "asciifolding"] }
                }
            }
        },
        "mappings": {
            "dynamic": "strict",
            "properties": {
                "id": { "type": "long" },
                "title": { "type": "text", "analyzer": "product_text" },
                "description": { "type": "text", "analyzer": "product_text" },
                "brand": {
                    "type": "keyword",
                    "fields": {
                        "lower": { "type": "keyword", "normalizer": "lowercase" },
                        "text": { "type": "text", "analyzer": "product_text" }
                    }
                },
                "category_id": { "type": "long" },
                "category_slug": { "type": "keyword" },
                "category_path": { "type": "long" },
                "price_minor": { "type": "long" },
                "currency": { "type": "keyword" },
                "available": { "type": "long" },
                "rating": { "type": "float" },
                "rating_count": { "type": "long" },
                "created_at": { "type": "date" }
            }
        }
    })
}

/// The document of a product.
pub fn document(doc: &IndexDoc) -> Value {
    json!({
        "id": doc.id,
        "title": doc.title,
        "description": doc.description,
        "brand": doc.brand,
        "category_id": doc.category_id,
        "category_slug": doc.category_slug,
        "category_path": doc.category_path,
        "price_minor": doc.price_minor,
        "currency": doc.currency,
        "available": doc.available,
        "rating": doc.rating,
        "rating_count": doc.rating_count,
        "created_at": doc.created_at.to_rfc3339(),
    })
}

/// Bulk lines (NDJSON) replacing and deleting documents of `index`.
pub fn bulk_lines(index: &str, changes: &IndexChanges) -> Vec<Value> {
    let mut lines = Vec::with_capacity(changes.deletes.len() + 2 * changes.upserts.len());
    for id in &changes.deletes {
        lines.push(json!({ "delete": { "_index": index, "_id": id.to_string() } }));
    }
    for doc in &changes.upserts {
        lines.push(json!({ "index": { "_index": index, "_id": doc.id.to_string() } }));
        lines.push(document(doc));
    }
    lines
}

/// Words as the standard tokenizer would split them (for the per-word fuzzy clauses).
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// The search request: the text and stock filter in `query`; category, brand and price in
/// `post_filter` (so aggregations see past them), and each facet's aggregation filtered by the
/// two other filters.
pub fn search_body(q: &IndexQuery) -> Value {
    let words = words(&q.text);
    let text = if words.is_empty() {
        json!({ "match_all": {} })
    } else {
        let mut must: Vec<Value> = words
            .iter()
            .map(|w| {
                json!({ "multi_match": {
                    "query": w,
                    "fields": ["title^3", "brand.text^2", "description"],
                    "fuzziness": "AUTO:4,8",
                    "prefix_length": 0
                } })
            })
            .collect();
        let mut clause = json!({ "bool": { "must": [] } });
        clause["bool"]["must"] = Value::Array(std::mem::take(&mut must));
        if words.len() >= 2 {
            clause["bool"]["should"] = json!([{ "match_phrase": { "title": { "query": q.text, "boost": 4.0 } } }]);
        }
        clause
    };
    let mut query_filters = Vec::new();
    if q.in_stock {
        query_filters.push(json!({ "range": { "available": { "gt": 0 } } }));
    }
    let category = q.category.map(|c| json!({ "term": { "category_path": c } }));
    let brand = (!q.brands.is_empty())
        .then(|| json!({ "terms": { "brand.lower": q.brands.iter().map(|b| b.to_lowercase()).collect::<Vec<_>>() } }));
    let price = (q.min_price.is_some() || q.max_price.is_some()).then(|| {
        let mut range = serde_json::Map::new();
        if let Some(min) = q.min_price {
            range.insert("gte".into(), json!(min));
        }
        if let Some(max) = q.max_price {
            range.insert("lte".into(), json!(max));
        }
        json!({ "range": { "price_minor": range } })
    });
    let all_of = |filters: &[&Option<Value>]| -> Value {
        let list: Vec<Value> = filters.iter().filter_map(|f| (*f).clone()).collect();
        json!({ "bool": { "filter": list } })
    };
    let ranges: Vec<Value> = PRICE_BANDS
        .iter()
        .map(|(from, to)| match to {
            Some(to) => json!({ "from": from, "to": to }),
            None => json!({ "from": from }),
        })
        .collect();
    let sort = match q.sort {
        Sort::Relevance => json!(["_score", { "id": "asc" }]),
        Sort::PriceAsc => json!([{ "price_minor": "asc" }, { "id": "asc" }]),
        Sort::PriceDesc => json!([{ "price_minor": "desc" }, { "id": "asc" }]),
        Sort::Newest => json!([{ "created_at": "desc" }, { "id": "desc" }]),
        Sort::Rating => json!([{ "rating": "desc" }, { "rating_count": "desc" }, { "id": "asc" }]),
    };
    json!({
        "from": q.offset,
        "size": q.limit,
        "track_total_hits": true,
        "track_scores": false,
        "_source": ["id", "title", "brand", "price_minor", "currency", "available", "category_id"],
        "query": { "bool": { "must": [text], "filter": query_filters } },
        "post_filter": all_of(&[&category, &brand, &price]),
        "sort": sort,
        "aggs": {
            "category": {
                "filter": all_of(&[&brand, &price]),
                "aggs": { "values": { "terms": { "field": "category_id", "size": 1000 } } }
            },
            "brand": {
                "filter": all_of(&[&category, &price]),
                "aggs": { "values": { "terms": { "field": "brand", "size": 1000 } } }
            },
            "price": {
                "filter": all_of(&[&category, &brand]),
                "aggs": { "values": { "range": { "field": "price_minor", "ranges": ranges } } }
            }
        }
    })
}

/// Reads a search answer.
pub fn parse_search(answer: &Value) -> Result<IndexResults, SearchError> {
    let bad = |what: &str| SearchError::OpenSearch(format!("search answer without {what}"));
    let hits_json = answer["hits"]["hits"].as_array().ok_or_else(|| bad("hits"))?;
    let mut hits = Vec::with_capacity(hits_json.len());
    for hit in hits_json {
        let s = &hit["_source"];
        hits.push(Hit {
            id: s["id"].as_i64().ok_or_else(|| bad("_source.id"))?,
            title: s["title"].as_str().unwrap_or_default().to_owned(),
            brand: s["brand"].as_str().unwrap_or_default().to_owned(),
            price_minor: s["price_minor"].as_i64().unwrap_or_default(),
            currency: s["currency"].as_str().unwrap_or_default().to_owned(),
            available: s["available"].as_i64().unwrap_or_default(),
            category_id: s["category_id"].as_i64().unwrap_or_default(),
            score: hit["_score"].as_f64().unwrap_or_default() as f32,
        });
    }
    let total = answer["hits"]["total"]["value"].as_u64().or_else(|| answer["hits"]["total"].as_u64()).unwrap_or(0);
    let buckets = |name: &str| answer["aggregations"][name]["values"]["buckets"].as_array().cloned().unwrap_or_default();
    let categories =
        buckets("category").iter().filter_map(|b| Some((b["key"].as_i64()?, b["doc_count"].as_u64()?))).filter(|(_, n)| *n > 0).collect();
    let brands = buckets("brand")
        .iter()
        .filter_map(|b| Some((b["key"].as_str()?.to_owned(), b["doc_count"].as_u64()?)))
        .filter(|(_, n)| *n > 0)
        .collect();
    let price_buckets = buckets("price");
    let price_bands =
        PRICE_BANDS.iter().enumerate().map(|(i, _)| price_buckets.get(i).and_then(|b| b["doc_count"].as_u64()).unwrap_or(0)).collect();
    Ok(IndexResults { total, hits, facets: Facets { categories, brands, price_bands } })
}

/// Autocomplete: titles whose words start with the typed ones, most reviewed first.
pub fn suggest_body(prefix: &str, size: usize) -> Value {
    json!({
        "size": size,
        "_source": ["title"],
        "query": { "match_phrase_prefix": { "title": { "query": prefix, "max_expansions": 50 } } },
        "sort": [{ "rating_count": "desc" }, { "id": "asc" }]
    })
}

#[async_trait]
impl SearchIndex for OpenSearchIndex {
    async fn search(&self, query: &IndexQuery) -> Result<IndexResults, SearchError> {
        let answer = self
            .call(Method::Post, &format!("/{}/_search", self.alias), Some(search_body(query)))
            .await?
            .ok_or_else(|| os_err(format!("alias {} does not exist yet", self.alias)))?;
        parse_search(&answer)
    }

    async fn suggest(&self, prefix: &str, limit: usize) -> Result<Vec<String>, SearchError> {
        let answer =
            self.call(Method::Post, &format!("/{}/_search", self.alias), Some(suggest_body(prefix, limit * 5))).await?.unwrap_or_default();
        let mut titles: Vec<String> = Vec::new();
        for hit in answer["hits"]["hits"].as_array().into_iter().flatten() {
            if let Some(title) = hit["_source"]["title"].as_str()
                && !titles.iter().any(|t| t == title)
            {
                titles.push(title.to_owned());
                if titles.len() == limit {
                    break;
                }
            }
        }
        Ok(titles)
    }

    async fn checkpoint(&self) -> Result<Option<Checkpoint>, SearchError> {
        Ok(self.current().await?.and_then(|c| c.checkpoint))
    }

    async fn apply(&self, changes: IndexChanges, checkpoint: Checkpoint) -> Result<(), SearchError> {
        let current = self.current().await?.ok_or_else(|| os_err("no index to apply changes to"))?;
        // through the alias: if a rebuild swapped indexes meanwhile, the change lands in the new
        // one (whose checkpoint replays it anyway) rather than in a deleted one
        self.bulk(bulk_lines(&self.alias, &changes), true).await?;
        self.save_checkpoint(&current.index, &checkpoint).await?;
        self.state.store(Arc::new(Some(Current { index: current.index, checkpoint: Some(checkpoint) })));
        Ok(())
    }

    async fn begin_rebuild(&self) -> Result<Box<dyn Rebuild>, SearchError> {
        // the meta index may exist already: that answer is a 400 we can ignore
        let meta = format!("/{}", self.meta_index());
        if let Err(err) = self.call(Method::Put, &meta, Some(json!({}))).await
            && !err.to_string().contains("resource_already_exists")
        {
            return Err(err);
        }
        let index = format!("{}-{}", self.alias, uuid::Uuid::now_v7().simple());
        self.call(Method::Put, &format!("/{index}"), Some(mapping())).await?;
        Ok(Box::new(OpenSearchRebuild { owner: self.clone(), index }))
    }

    async fn refresh(&self) -> Result<bool, SearchError> {
        let before = self.state.load().as_ref().as_ref().map(|c| c.index.clone());
        let after = self.reload().await?.map(|c| c.index);
        Ok(before.is_some() && before != after)
    }

    fn generation(&self) -> String {
        match self.state.load().as_ref() {
            Some(c) => format!("{}:{}", c.index, c.checkpoint.as_ref().map_or(0, |c| c.sequence)),
            None => "none".to_owned(),
        }
    }

    async fn num_docs(&self) -> Result<u64, SearchError> {
        let answer = self.call(Method::Get, &format!("/{}/_count", self.alias), None).await?.unwrap_or_default();
        Ok(answer["count"].as_u64().unwrap_or(0))
    }
}

struct OpenSearchRebuild {
    owner: OpenSearchIndex,
    index: String,
}

#[async_trait]
impl Rebuild for OpenSearchRebuild {
    async fn add(&mut self, docs: Vec<IndexDoc>) -> Result<(), SearchError> {
        for chunk in docs.chunks(5_000) {
            let changes = IndexChanges { upserts: chunk.to_vec(), deletes: Vec::new() };
            self.owner.bulk(bulk_lines(&self.index, &changes), false).await?;
        }
        Ok(())
    }

    async fn finish(self: Box<Self>, checkpoint: Checkpoint) -> Result<(), SearchError> {
        let owner = &self.owner;
        owner.call(Method::Post, &format!("/{}/_refresh", self.index), None).await?;
        owner.save_checkpoint(&self.index, &checkpoint).await?;
        let old = owner.resolve_alias().await?;
        // one call: the alias moves atomically from the old index to the new one
        let mut actions = vec![json!({ "add": { "index": self.index, "alias": owner.alias } })];
        if let Some(old) = &old {
            actions.insert(0, json!({ "remove": { "index": old, "alias": owner.alias } }));
        }
        owner.call(Method::Post, "/_aliases", Some(json!({ "actions": actions }))).await?;
        owner.state.store(Arc::new(Some(Current { index: self.index.clone(), checkpoint: Some(checkpoint) })));
        if let Some(old) = old
            && let Err(err) = owner.call(Method::Delete, &format!("/{old}"), None).await
        {
            tracing::warn!(error = %err, index = %old, "could not delete the replaced OpenSearch index");
        }
        Ok(())
    }
}
