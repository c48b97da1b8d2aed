//! The OpenSearch index against a local stand-in server (no OpenSearch can run here): the
//! requests it sends (paths, bodies, NDJSON bulk, alias swap) and how it reads the answers.

use std::sync::{Arc, Mutex};

use chrono::{TimeZone, Utc};
use serde_json::{Value, json};

use emporium_api::search::{Checkpoint, IndexChanges, IndexDoc, IndexQuery, SearchIndex, Sort, opensearch::OpenSearchIndex};
use emporium_tests::free_port;

#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    content_type: String,
    body: String,
}

impl Recorded {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{} {} body is not JSON ({e}): {}", self.method, self.path, self.body))
    }
}

type Responder = dyn Fn(&Recorded) -> (u16, Value) + Send + Sync;

/// An HTTP server that records every request and answers with `responder`.
struct StandIn {
    url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    server: tokio::task::JoinHandle<()>,
}

impl StandIn {
    async fn start(responder: impl Fn(&Recorded) -> (u16, Value) + Send + Sync + 'static) -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let responder: Arc<Responder> = Arc::new(responder);
        let endpoint = {
            let requests = requests.clone();
            poem::endpoint::make(move |mut req: poem::Request| {
                let (requests, responder) = (requests.clone(), responder.clone());
                async move {
                    let body = req.take_body().into_string().await.unwrap_or_default();
                    let recorded = Recorded {
                        method: req.method().to_string(),
                        path: req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default(),
                        content_type: req.header("content-type").unwrap_or_default().to_owned(),
                        body,
                    };
                    let (status, answer) = responder(&recorded);
                    requests.lock().unwrap().push(recorded);
                    poem::Response::builder()
                        .status(poem::http::StatusCode::from_u16(status).unwrap())
                        .content_type("application/json")
                        .body(answer.to_string())
                }
            })
        };
        let port = free_port();
        let server = tokio::spawn(async move {
            poem::Server::new(poem::listener::TcpListener::bind(format!("127.0.0.1:{port}"))).run(endpoint).await.unwrap();
        });
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        StandIn { url: format!("http://127.0.0.1:{port}"), requests, server }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn doc(id: i64) -> IndexDoc {
    IndexDoc {
        id,
        title: format!("Sony Wireless Headphones {id}"),
        description: "Over-ear".into(),
        brand: "Sony".into(),
        category_id: 4,
        category_slug: "headphones".into(),
        category_path: vec![4, 1],
        price_minor: 12_999,
        currency: "USD".into(),
        available: 3,
        rating: 4.5,
        rating_count: 120,
        created_at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
    }
}

fn checkpoint(sequence: u64) -> Checkpoint {
    Checkpoint {
        txid: 900 + sequence,
        id: 41,
        applied: vec![(950, 43)],
        written_at: Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
        sequence,
        database: "16384:emporium".into(),
    }
}

#[tokio::test]
async fn a_search_sends_filters_facets_and_sort_and_reads_the_answer() {
    let standin = StandIn::start(|_| {
        (200, json!({
            "took": 3,
            "hits": {
                "total": { "value": 42, "relation": "eq" },
                "hits": [
                    { "_id": "7", "_score": 3.5, "_source": { "id": 7, "title": "Sony WH-1000", "brand": "Sony", "price_minor": 1999, "currency": "USD", "available": 2, "category_id": 4 } },
                    { "_id": "9", "_score": 1.25, "_source": { "id": 9, "title": "Bose QC", "brand": "Bose", "price_minor": 2999, "currency": "USD", "available": 0, "category_id": 5 } }
                ]
            },
            "aggregations": {
                "category": { "doc_count": 50, "values": { "buckets": [ { "key": 4, "doc_count": 30 }, { "key": 5, "doc_count": 20 } ] } },
                "brand": { "doc_count": 60, "values": { "buckets": [ { "key": "Sony", "doc_count": 40 }, { "key": "Bose", "doc_count": 2 } ] } },
                "price": { "doc_count": 42, "values": { "buckets": [
                    { "key": "0.0-1000.0", "from": 0.0, "to": 1000.0, "doc_count": 0 },
                    { "key": "1000.0-2500.0", "from": 1000.0, "to": 2500.0, "doc_count": 12 },
                    { "key": "2500.0-5000.0", "from": 2500.0, "to": 5000.0, "doc_count": 30 }
                ] } }
            }
        }))
    })
    .await;
    let index = OpenSearchIndex::new(&standin.url, "products").unwrap();
    let query = IndexQuery {
        text: "wireles Headphones".into(),
        category: Some(1),
        category_ids: vec![1, 4, 5],
        category_slugs: Vec::new(),
        brands: vec!["Sony".into(), "Bose".into()],
        min_price: Some(1_000),
        max_price: Some(50_000),
        in_stock: true,
        sort: Sort::PriceAsc,
        offset: 20,
        limit: 10,
    };
    let results = index.search(&query).await.unwrap();

    let requests = standin.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/products/_search"));
    assert!(request.content_type.starts_with("application/json"), "{}", request.content_type);
    let body = request.json();
    assert_eq!((body["from"].clone(), body["size"].clone()), (json!(20), json!(10)));
    assert_eq!(body["track_total_hits"], true);
    let words = body["query"]["bool"]["must"][0]["bool"]["must"].as_array().unwrap();
    assert_eq!(words.len(), 2, "one clause per word: {body}");
    assert_eq!(words[0]["multi_match"]["query"], "wireles");
    assert_eq!(words[0]["multi_match"]["fuzziness"], "AUTO:4,8");
    assert_eq!(words[0]["multi_match"]["fields"], json!(["title^3", "brand.text^2", "description"]));
    assert_eq!(body["query"]["bool"]["must"][0]["bool"]["should"][0]["match_phrase"]["title"]["query"], "wireles Headphones");
    assert_eq!(body["query"]["bool"]["filter"], json!([{ "range": { "available": { "gt": 0 } } }]));
    let category = json!({ "term": { "category_path": 1 } });
    let brand = json!({ "terms": { "brand.lower": ["sony", "bose"] } });
    let price = json!({ "range": { "price_minor": { "gte": 1000, "lte": 50000 } } });
    assert_eq!(body["post_filter"], json!({ "bool": { "filter": [category, brand, price] } }));
    // each facet is filtered by the two other filters, never by its own
    assert_eq!(body["aggs"]["category"]["filter"], json!({ "bool": { "filter": [brand, price] } }));
    assert_eq!(body["aggs"]["brand"]["filter"], json!({ "bool": { "filter": [category, price] } }));
    assert_eq!(body["aggs"]["price"]["filter"], json!({ "bool": { "filter": [category, brand] } }));
    assert_eq!(body["aggs"]["category"]["aggs"]["values"]["terms"]["field"], "category_id");
    assert_eq!(body["aggs"]["brand"]["aggs"]["values"]["terms"]["field"], "brand");
    assert_eq!(body["aggs"]["price"]["aggs"]["values"]["range"]["ranges"][0], json!({ "from": 0, "to": 1000 }));
    assert_eq!(body["aggs"]["price"]["aggs"]["values"]["range"]["ranges"][7], json!({ "from": 100000 }));
    assert_eq!(body["sort"], json!([{ "price_minor": "asc" }, { "id": "asc" }]));

    assert_eq!(results.total, 42);
    assert_eq!(results.hits.iter().map(|h| h.id).collect::<Vec<_>>(), vec![7, 9]);
    assert_eq!((results.hits[0].score, results.hits[0].price_minor, results.hits[0].category_id), (3.5, 1999, 4));
    assert_eq!((results.hits[1].brand.as_str(), results.hits[1].available), ("Bose", 0));
    assert_eq!(results.facets.categories, vec![(4, 30), (5, 20)]);
    assert_eq!(results.facets.brands, vec![("Sony".to_owned(), 40), ("Bose".to_owned(), 2)]);
    assert_eq!(results.facets.price_bands, vec![0, 12, 30, 0, 0, 0, 0, 0]);
}

#[tokio::test]
async fn browsing_sends_match_all_and_relevance_sorts_by_score_then_id() {
    let standin = StandIn::start(|_| (200, json!({ "hits": { "total": { "value": 0 }, "hits": [] } }))).await;
    let index = OpenSearchIndex::new(&standin.url, "products").unwrap();
    let query = IndexQuery {
        text: "  ".into(),
        category: None,
        category_ids: vec![],
        category_slugs: Vec::new(),
        brands: vec![],
        min_price: None,
        max_price: None,
        in_stock: false,
        sort: Sort::Relevance,
        offset: 0,
        limit: 20,
    };
    let results = index.search(&query).await.unwrap();
    assert_eq!(results.total, 0);
    let body = standin.requests()[0].json();
    assert_eq!(body["query"]["bool"]["must"], json!([{ "match_all": {} }]));
    assert_eq!(body["post_filter"], json!({ "bool": { "filter": [] } }));
    assert_eq!(body["sort"], json!(["_score", { "id": "asc" }]));
}

fn alias_and_meta(request: &Recorded) -> Option<(u16, Value)> {
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/_alias/products") => Some((200, json!({ "products-0001": { "aliases": { "products": {} } } }))),
        ("GET", "/products-meta/_doc/products-0001") => Some((
            200,
            json!({
                "_index": "products-meta", "_id": "products-0001", "found": true,
                "_source": { "checkpoint": serde_json::to_value(checkpoint(1)).unwrap() }
            }),
        )),
        _ => None,
    }
}

#[tokio::test]
async fn changes_go_in_one_ndjson_bulk_and_then_the_checkpoint_is_saved() {
    let standin = StandIn::start(|r| {
        alias_and_meta(r).unwrap_or_else(|| match (r.method.as_str(), r.path.as_str()) {
            ("POST", "/_bulk?refresh=true") => (
                200,
                json!({ "took": 1, "errors": false, "items": [
                { "delete": { "_index": "products-0001", "_id": "9", "status": 404, "result": "not_found" } },
                { "index": { "_index": "products-0001", "_id": "7", "status": 200, "result": "updated" } }
            ] }),
            ),
            ("PUT", "/products-meta/_doc/products-0001?refresh=true") => (200, json!({ "result": "updated" })),
            _ => (500, json!({ "error": format!("unexpected {} {}", r.method, r.path) })),
        })
    })
    .await;
    let index = OpenSearchIndex::new(&standin.url, "products").unwrap();
    assert_eq!(index.checkpoint().await.unwrap(), Some(checkpoint(1)));
    let generation = index.generation();
    assert_eq!(generation, "products-0001:1");

    index.apply(IndexChanges { upserts: vec![doc(7)], deletes: vec![9] }, checkpoint(2)).await.unwrap();
    let requests = standin.requests();
    let paths: Vec<String> = requests.iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    assert_eq!(
        paths,
        [
            "GET /_alias/products",
            "GET /products-meta/_doc/products-0001",
            "POST /_bulk?refresh=true",
            "PUT /products-meta/_doc/products-0001?refresh=true"
        ]
    );
    let bulk = &requests[2];
    assert_eq!(bulk.content_type, "application/x-ndjson");
    assert!(bulk.body.ends_with('\n'), "NDJSON ends with a newline");
    let lines: Vec<Value> = bulk.body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0], json!({ "delete": { "_index": "products", "_id": "9" } }));
    assert_eq!(lines[1], json!({ "index": { "_index": "products", "_id": "7" } }));
    assert_eq!(lines[2]["title"], "Sony Wireless Headphones 7");
    assert_eq!(lines[2]["category_path"], json!([4, 1]));
    assert_eq!(lines[2]["price_minor"], 12_999);
    assert_eq!(lines[2]["created_at"], "2026-01-02T03:04:05+00:00");
    assert_eq!(requests[3].json()["checkpoint"], serde_json::to_value(checkpoint(2)).unwrap());
    assert_eq!(index.checkpoint().await.unwrap(), Some(checkpoint(2)));
    assert_ne!(index.generation(), generation, "the cache key moves on");
}

#[tokio::test]
async fn a_failed_bulk_item_fails_the_apply_and_keeps_the_checkpoint() {
    let standin = StandIn::start(|r| {
        alias_and_meta(r).unwrap_or_else(|| match r.path.as_str() {
            "/_bulk?refresh=true" => (
                200,
                json!({ "errors": true, "items": [
                { "index": { "_id": "7", "status": 400, "error": { "type": "mapper_parsing_exception", "reason": "bad" } } }
            ] }),
            ),
            _ => (500, json!({})),
        })
    })
    .await;
    let index = OpenSearchIndex::new(&standin.url, "products").unwrap();
    let err = index.apply(IndexChanges { upserts: vec![doc(7)], deletes: vec![] }, checkpoint(2)).await.unwrap_err();
    assert!(err.to_string().contains("mapper_parsing_exception"), "{err}");
    assert_eq!(index.checkpoint().await.unwrap(), Some(checkpoint(1)));
    assert!(!standin.requests().iter().any(|r| r.method == "PUT"), "no checkpoint after a failed bulk");
}

#[tokio::test]
async fn a_rebuild_fills_a_new_mapped_index_and_moves_the_alias_in_one_call() {
    let standin = StandIn::start(|r| {
        alias_and_meta(r).unwrap_or_else(|| match (r.method.as_str(), r.path.as_str()) {
            ("PUT", "/products-meta") => (400, json!({ "error": { "type": "resource_already_exists_exception" }, "status": 400 })),
            ("PUT", p) if p.starts_with("/products-") && !p.contains("_doc") => (200, json!({ "acknowledged": true })),
            ("POST", "/_bulk") => (200, json!({ "errors": false, "items": [] })),
            ("POST", p) if p.ends_with("/_refresh") => (200, json!({})),
            ("PUT", p) if p.starts_with("/products-meta/_doc/") => (201, json!({ "result": "created" })),
            ("POST", "/_aliases") => (200, json!({ "acknowledged": true })),
            ("DELETE", "/products-0001") => (200, json!({ "acknowledged": true })),
            _ => (500, json!({ "error": format!("unexpected {} {}", r.method, r.path) })),
        })
    })
    .await;
    let index = OpenSearchIndex::new(&standin.url, "products").unwrap();
    let mut rebuild = index.begin_rebuild().await.unwrap();
    rebuild.add(vec![doc(1), doc(2)]).await.unwrap();
    rebuild.finish(checkpoint(5)).await.unwrap();

    let requests = standin.requests();
    let create = &requests[1];
    assert_eq!(create.method, "PUT");
    let new_index = create.path.trim_start_matches('/').to_owned();
    assert!(new_index.starts_with("products-") && new_index != "products-meta", "{new_index}");
    let mapping = create.json();
    assert_eq!(mapping["settings"]["analysis"]["analyzer"]["product_text"]["tokenizer"], "standard");
    assert_eq!(mapping["mappings"]["properties"]["title"]["analyzer"], "product_text");
    assert_eq!(mapping["mappings"]["properties"]["brand"]["fields"]["lower"]["normalizer"], "lowercase");
    assert_eq!(mapping["mappings"]["properties"]["category_path"]["type"], "long");

    let bulk = requests.iter().find(|r| r.path == "/_bulk").unwrap();
    let lines: Vec<Value> = bulk.body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["index"]["_index"], new_index.as_str());

    let aliases = requests.iter().find(|r| r.path == "/_aliases").unwrap().json();
    assert_eq!(
        aliases,
        json!({ "actions": [
            { "remove": { "index": "products-0001", "alias": "products" } },
            { "add": { "index": new_index, "alias": "products" } }
        ] })
    );
    let order: Vec<String> = requests.iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    let position = |needle: &str| order.iter().position(|p| p.contains(needle)).unwrap_or_else(|| panic!("{needle} in {order:?}"));
    assert!(position("_refresh") < position("/_aliases"), "searchable before it is swapped in: {order:?}");
    assert!(position(&format!("_doc/{new_index}")) < position("/_aliases"), "checkpoint before the swap: {order:?}");
    assert!(position("/_aliases") < position("DELETE /products-0001"), "old index deleted after the swap: {order:?}");
    assert_eq!(index.checkpoint().await.unwrap(), Some(checkpoint(5)));
}

#[tokio::test]
async fn suggestions_are_distinct_titles_from_a_phrase_prefix_query() {
    let standin = StandIn::start(|_| {
        (
            200,
            json!({ "hits": { "total": { "value": 3 }, "hits": [
            { "_source": { "title": "Sony Wireless Headphones" } },
            { "_source": { "title": "Sony Wireless Headphones" } },
            { "_source": { "title": "Bose Wireless Headset" } }
        ] } }),
        )
    })
    .await;
    let index = OpenSearchIndex::new(&standin.url, "products").unwrap();
    let titles = index.suggest("wireless hea", 10).await.unwrap();
    assert_eq!(titles, vec!["Sony Wireless Headphones".to_owned(), "Bose Wireless Headset".to_owned()]);
    let body = standin.requests()[0].json();
    assert_eq!(body["query"]["match_phrase_prefix"]["title"]["query"], "wireless hea");
    assert_eq!(body["sort"][0], json!({ "rating_count": "desc" }));
}
