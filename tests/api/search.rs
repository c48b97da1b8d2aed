//! Product search: relevance, typos, filters and facets against SQL, sorts, pagination, the
//! indexer (latency, crash and restart, late commits), reindex, the cache and bad parameters.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait, Value as SqlValue};
use serde_json::{Value, json};

use emporium_api::{
    catalogue_generator::seed_catalogue,
    search::{CategoryTree, IndexChanges, IndexDoc, IndexQuery, SearchIndex, Sort, indexer::Indexer, tantivy::TantivyIndex},
};
use emporium_entities::store::catalog::{self, NewProduct};
use emporium_tests::{TestApp, TestDatabase, spawn_app, spawn_app_with};

async fn rows(db: &DatabaseConnection, sql: &str, values: Vec<SqlValue>) -> Vec<sea_orm::QueryResult> {
    db.query_all_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, values)).await.expect(sql)
}

/// A seeded catalogue, fully indexed.
async fn seeded_app(products: u64) -> TestApp {
    let app = spawn_app().await;
    seed_catalogue(app.db(), products).await.expect("seed");
    app.wait_for_search_index().await;
    app
}

async fn search(app: &TestApp, query: &str) -> Value {
    let response = app.get(&format!("/products/search?{query}"), None).await;
    assert_eq!(response.status, StatusCode::OK, "{query}: {}", response.text);
    response.body
}

fn ids(body: &Value) -> Vec<i64> {
    body["items"].as_array().unwrap().iter().map(|i| i["id"].as_i64().unwrap()).collect()
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn an_exact_title_ranks_first() {
    let app = seeded_app(400).await;
    for id in [3i64, 77, 251] {
        let title: String =
            rows(app.db(), "SELECT title FROM products WHERE id = $1", vec![id.into()]).await[0].try_get("", "title").unwrap();
        let body = search(&app, &format!("q={}", enc(&title))).await;
        assert_eq!(ids(&body).first(), Some(&id), "{title}: {body}");
        assert_eq!(body["items"][0]["title"], title);
    }
}

#[tokio::test]
async fn misspelt_words_still_find_their_product() {
    let app = seeded_app(200).await;
    let admin = app.admin_token().await;
    let audio = app.create_category(&admin, "Audio", None).await;
    let created = app
        .post(
            "/admin/products",
            Some(&admin),
            json!({ "sku": "TYPO-1", "title": "Zephyr Wireless Headphones", "brand": "Quietude",
                    "description": "Over-ear with a long battery life", "categoryId": audio,
                    "price": { "amount": 8_999, "currency": "USD" }, "stock": 4 }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.body["id"].as_i64().unwrap();
    app.wait_for_search_index().await;
    // seeded products have "Wireless Headphones" too: found among them
    let body = search(&app, "q=wireles+hedphones&limit=100").await;
    assert!(ids(&body).contains(&id), "did not find the product: {body}");
    assert!(body["total"].as_u64().unwrap() < 100, "{body}");
    for query in ["zephyr wireles hedphones", "zephir headphones", "quietud", "Zephyr Wirless Headphnes", "zephyr"] {
        let body = search(&app, &format!("q={}", enc(query))).await;
        assert!(ids(&body).contains(&id), "{query:?} did not find the product: {body}");
        assert_eq!(ids(&body)[0], id, "{query:?} should rank it first");
    }
    // short words must be exact: a typo in a three-letter word finds nothing extra
    let body = search(&app, "q=zephyr+xyz").await;
    assert!(ids(&body).is_empty(), "{body}");
}

/// Ground truth in SQL for browse (and a single whole word) queries.
struct Truth<'a> {
    db: &'a DatabaseConnection,
}

impl Truth<'_> {
    /// (total, category facet, brand facet, price facet), each facet under the other filters.
    async fn answer(
        &self,
        word: Option<&str>,
        category: Option<&str>,
        brands: &[&str],
        price: (Option<i64>, Option<i64>),
        in_stock: bool,
    ) -> (i64, BTreeMap<String, i64>, BTreeMap<String, i64>, Vec<i64>) {
        let mut base = String::from(
            "FROM products p JOIN categories c ON c.id = p.category_id LEFT JOIN inventory i ON i.product_id = p.id \
             WHERE p.deleted_at IS NULL",
        );
        if let Some(word) = word {
            base.push_str(&format!(" AND (p.title || ' ' || p.brand || ' ' || p.description) ~* '\\m{word}\\M'"));
        }
        if in_stock {
            base.push_str(" AND COALESCE(i.available, 0) > 0");
        }
        let (cat, brand) = (category_sql(category), brands_sql(brands));
        let mut pr = String::new();
        if let Some(min) = price.0 {
            pr.push_str(&format!(" AND p.price_minor >= {min}"));
        }
        if let Some(max) = price.1 {
            pr.push_str(&format!(" AND p.price_minor <= {max}"));
        }
        let total: i64 = rows(self.db, &format!("SELECT COUNT(*) AS n {base}{cat}{brand}{pr}"), vec![]).await[0].try_get("", "n").unwrap();
        let group = |key: &str, filters: String| format!("SELECT {key} AS k, COUNT(*) AS n {base}{filters} GROUP BY 1");
        let mut categories = BTreeMap::new();
        for row in rows(self.db, &group("c.slug", format!("{brand}{pr}")), vec![]).await {
            categories.insert(row.try_get("", "k").unwrap(), row.try_get("", "n").unwrap());
        }
        let mut brand_counts = BTreeMap::new();
        for row in rows(self.db, &group("p.brand", format!("{cat}{pr}")), vec![]).await {
            brand_counts.insert(row.try_get("", "k").unwrap(), row.try_get("", "n").unwrap());
        }
        let bands = "CASE WHEN p.price_minor < 1000 THEN 0 WHEN p.price_minor < 2500 THEN 1 WHEN p.price_minor < 5000 THEN 2 \
            WHEN p.price_minor < 10000 THEN 3 WHEN p.price_minor < 25000 THEN 4 WHEN p.price_minor < 50000 THEN 5 \
            WHEN p.price_minor < 100000 THEN 6 ELSE 7 END";
        let mut price_counts = vec![0i64; 8];
        for row in rows(self.db, &group(bands, format!("{cat}{brand}")), vec![]).await {
            let band: i32 = row.try_get("", "k").unwrap();
            price_counts[band as usize] = row.try_get("", "n").unwrap();
        }
        (total, categories, brand_counts, price_counts)
    }
}

/// ` AND` the product is in the category or one below it; empty without a category.
fn category_sql(category: Option<&str>) -> String {
    category
        .map(|slug| {
            format!(
                " AND p.category_id IN (WITH RECURSIVE t AS (SELECT id FROM categories WHERE slug = '{slug}' \
                 UNION ALL SELECT x.id FROM categories x JOIN t ON x.parent_id = t.id) SELECT id FROM t)"
            )
        })
        .unwrap_or_default()
}

/// ` AND` the product is of one of the brands; empty without brands.
fn brands_sql(brands: &[&str]) -> String {
    if brands.is_empty() {
        return String::new();
    }
    // brand filters are case-insensitive
    let list = brands.iter().map(|b| format!("'{}'", b.to_lowercase().replace('\'', "''"))).collect::<Vec<_>>().join(",");
    format!(" AND lower(p.brand) IN ({list})")
}

fn facet_map(body: &Value, name: &str) -> BTreeMap<String, i64> {
    body["facets"][name]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["value"].as_str().unwrap().to_owned(), f["count"].as_i64().unwrap()))
        .collect()
}

#[tokio::test]
async fn every_filter_and_facet_matches_sql() {
    let app = seeded_app(1_500).await;
    let truth = Truth { db: app.db() };
    type Case<'a> = (Option<&'a str>, Option<&'a str>, Vec<&'a str>, (Option<i64>, Option<i64>), bool);
    let cases: Vec<Case> = vec![
        (None, None, vec![], (None, None), false),
        (None, Some("electronics"), vec![], (None, None), false),
        (None, Some("headphones"), vec![], (None, None), false),
        (None, None, vec!["Sony"], (None, None), false),
        (None, None, vec!["Sony", "Lenovo", "LEGO"], (None, None), false),
        (None, None, vec![], (Some(2_500), Some(9_999)), false),
        (None, None, vec![], (Some(50_000), None), false),
        (None, None, vec![], (None, None), true),
        (None, Some("computers"), vec!["Dell", "HP"], (Some(10_000), Some(200_000)), true),
        (Some("blender"), None, vec![], (None, None), false),
        (Some("blender"), Some("home-kitchen"), vec![], (None, Some(40_000)), true),
        (Some("laptop"), None, vec!["Dell", "Asus"], (Some(5_000), None), false),
        // category and brands together: only documents matching one of them are visited
        (None, Some("computers"), vec!["Dell", "HP"], (None, None), false),
        (None, Some("electronics"), vec!["sony", "BOSE", "Apple"], (None, None), true),
        (Some("laptop"), Some("computers"), vec!["dell", "Asus"], (None, Some(150_000)), false),
    ];
    for (word, category, brands, price, in_stock) in cases {
        let mut query = format!("limit=5&q={}", word.unwrap_or(""));
        if let Some(c) = category {
            query.push_str(&format!("&category={c}"));
        }
        for b in &brands {
            query.push_str(&format!("&brand={}", enc(b)));
        }
        if let Some(min) = price.0 {
            query.push_str(&format!("&minPrice={min}"));
        }
        if let Some(max) = price.1 {
            query.push_str(&format!("&maxPrice={max}"));
        }
        if in_stock {
            query.push_str("&inStock=true");
        }
        let body = search(&app, &query).await;
        let (total, categories, brand_counts, price_counts) = truth.answer(word, category, &brands, price, in_stock).await;
        assert!(total > 0, "{query}: the case should match something");
        assert_eq!(body["total"], total, "{query}: total");
        assert_eq!(facet_map(&body, "category"), categories, "{query}: category facet");
        assert_eq!(facet_map(&body, "brand"), brand_counts, "{query}: brand facet");
        let prices: Vec<i64> = body["facets"]["price"].as_array().unwrap().iter().map(|p| p["count"].as_i64().unwrap()).collect();
        assert_eq!(prices, price_counts, "{query}: price facet");
        // every hit obeys every filter
        for item in body["items"].as_array().unwrap() {
            let price_minor = item["price"]["amount"].as_i64().unwrap();
            assert!(price.0.is_none_or(|m| price_minor >= m) && price.1.is_none_or(|m| price_minor <= m), "{query}: {item}");
            let brand = item["brand"].as_str().unwrap();
            assert!(brands.is_empty() || brands.iter().any(|b| b.eq_ignore_ascii_case(brand)), "{query}: {item}");
            assert!(!in_stock || item["available"].as_i64().unwrap() > 0, "{query}: {item}");
        }
    }
}

#[tokio::test]
async fn sorts_are_ordered_and_pages_have_no_duplicates_or_gaps() {
    let app = seeded_app(600).await;
    for sort in ["relevance", "price_asc", "price_desc", "newest", "rating"] {
        let q = if sort == "relevance" { "q=wireless&" } else { "category=electronics&" };
        let whole = search(&app, &format!("{q}sort={sort}&limit=100")).await;
        let total = whole["total"].as_u64().unwrap() as usize;
        assert!(total > 7, "{sort}: {total}");
        let all = ids(&whole);
        let keys = all.iter().map(|id| id.to_string()).collect::<Vec<_>>().join(",");
        let facts: BTreeMap<i64, (i64, f64, i64, i64)> = rows(
            app.db(),
            &format!(
                "SELECT id, price_minor, rating::float8 AS rating, rating_count::int8 AS rating_count, \
                 (extract(epoch from created_at) * 1000000)::int8 AS created FROM products WHERE id IN ({keys})"
            ),
            vec![],
        )
        .await
        .iter()
        .map(|r| {
            (
                r.try_get("", "id").unwrap(),
                (
                    r.try_get("", "price_minor").unwrap(),
                    r.try_get("", "rating").unwrap(),
                    r.try_get("", "rating_count").unwrap(),
                    r.try_get("", "created").unwrap(),
                ),
            )
        })
        .collect();
        let scores: Vec<f64> = whole["items"].as_array().unwrap().iter().map(|i| i["score"].as_f64().unwrap()).collect();
        for (n, pair) in all.windows(2).enumerate() {
            let (a, b) = (facts[&pair[0]], facts[&pair[1]]);
            let ordered = match sort {
                "relevance" => scores[n] >= scores[n + 1],
                "price_asc" => a.0 <= b.0,
                "price_desc" => a.0 >= b.0,
                "newest" => a.3 >= b.3,
                _ => a.1 >= b.1 - 1e-6,
            };
            assert!(ordered, "{sort}: {} before {}: {a:?} {b:?}", pair[0], pair[1]);
        }
        // the same order, seven at a time
        let mut paged = Vec::new();
        let mut page = 1;
        loop {
            let body = search(&app, &format!("{q}sort={sort}&limit=7&page={page}")).await;
            assert_eq!(body["total"].as_u64().unwrap() as usize, total);
            let got = ids(&body);
            if got.is_empty() {
                break;
            }
            paged.extend(got);
            page += 1;
        }
        assert_eq!(paged.len(), total, "{sort}: pages add up to the total");
        assert_eq!(paged.iter().collect::<HashSet<_>>().len(), total, "{sort}: no product twice");
        assert_eq!(&paged[..all.len().min(paged.len())], &all[..], "{sort}: pages follow the same order");
    }
}

#[tokio::test]
async fn equal_keys_page_by_id_without_losing_any() {
    // Thirty products of one price, indexed out of id order (as re-indexed products are): the
    // id alone orders them, so every page boundary is a tie the top-of-page selection must
    // break the same way each time, whatever order it visits the documents in.
    let dir = tempfile::tempdir().unwrap();
    let index = TantivyIndex::open(dir.path(), 2).unwrap();
    let ids: Vec<i64> = (1..=30).map(|i| (i * 7) % 31).collect();
    let upserts = ids
        .iter()
        .map(|&id| IndexDoc {
            id,
            title: format!("Tie {id}"),
            description: String::new(),
            brand: "Same".to_owned(),
            category_id: 1,
            category_slug: "ties".to_owned(),
            category_path: vec![1],
            price_minor: 1_500,
            currency: "USD".to_owned(),
            available: 3,
            rating: 4.0,
            rating_count: 10,
            created_at: chrono::Utc::now(),
        })
        .collect();
    let checkpoint = emporium_api::search::Checkpoint { written_at: chrono::Utc::now(), ..Default::default() };
    index.apply(IndexChanges { upserts, deletes: vec![] }, checkpoint).await.unwrap();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    for sort in [Sort::PriceAsc, Sort::PriceDesc, Sort::Relevance, Sort::Rating] {
        let mut paged = Vec::new();
        for page in 0..5 {
            let query = IndexQuery {
                text: String::new(),
                category: Some(1),
                category_ids: vec![1],
                category_slugs: vec!["ties".to_owned()],
                brands: vec![],
                min_price: None,
                max_price: None,
                in_stock: false,
                sort,
                offset: page * 7,
                limit: 7,
            };
            paged.extend(index.search(&query).await.unwrap().hits.iter().map(|h| h.id));
        }
        assert_eq!(paged, sorted, "{sort:?}: equal keys come in id order, each once");
    }
}

/// Polls `query` until `done` holds, at most `within` after `since`; returns how long it took.
async fn reflected(app: &TestApp, query: &str, since: Instant, within: Duration, done: impl Fn(&Value) -> bool) -> Duration {
    loop {
        let body = search(app, query).await;
        if done(&body) {
            return since.elapsed();
        }
        assert!(since.elapsed() < within, "{query}: not reflected within {within:?}: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn created_repriced_sold_out_and_deleted_products_reach_search_within_a_second() {
    let app = seeded_app(300).await;
    let admin = app.admin_token().await;
    let category = app.create_category(&admin, "Gadgets", None).await;
    let second = Duration::from_secs(1);
    let query = "q=gizmotron&inStock=true";

    let started = Instant::now();
    let created = app
        .post(
            "/admin/products",
            Some(&admin),
            json!({ "sku": "GIZ-1", "title": "Gizmotron Deluxe", "brand": "Acme", "categoryId": category,
                    "price": { "amount": 4_200, "currency": "USD" }, "stock": 3 }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = created.body["id"].as_i64().unwrap();
    reflected(&app, query, started, second, |b| ids(b) == [id]).await;

    let started = Instant::now();
    let repriced =
        app.patch(&format!("/admin/products/{id}"), Some(&admin), json!({ "price": { "amount": 3_900, "currency": "USD" } })).await;
    assert_eq!(repriced.status, StatusCode::OK);
    reflected(&app, query, started, second, |b| b["items"][0]["price"]["amount"] == 3_900).await;

    let started = Instant::now();
    let sold_out = app.put(&format!("/admin/products/{id}/inventory"), Some(&admin), json!({ "available": 0 })).await;
    assert_eq!(sold_out.status, StatusCode::OK);
    reflected(&app, query, started, second, |b| ids(b).is_empty()).await;
    let with_sold_out = search(&app, "q=gizmotron").await;
    assert_eq!(with_sold_out["items"][0]["available"], 0);

    let started = Instant::now();
    app.put(&format!("/admin/products/{id}/inventory"), Some(&admin), json!({ "available": 5 })).await;
    reflected(&app, query, started, second, |b| ids(b) == [id]).await;

    let started = Instant::now();
    assert_eq!(app.delete(&format!("/admin/products/{id}"), Some(&admin)).await.status, StatusCode::NO_CONTENT);
    reflected(&app, "q=gizmotron", started, second, |b| b["total"] == 0).await;
}

/// Inserts a product with its stock and outbox row inside `tx` (not committed here).
async fn insert_product(tx: &sea_orm::DatabaseTransaction, category: i64, sku: &str) -> i64 {
    catalog::create_product(
        tx,
        NewProduct {
            sku: sku.to_owned(),
            title: format!("Indexer probe {sku}"),
            description: String::new(),
            brand: "Probe".to_owned(),
            category_id: category,
            price_minor: 1_000,
            currency: "USD".to_owned(),
            attributes: json!({}),
            image_keys: vec![],
            initial_stock: 1,
        },
    )
    .await
    .expect("create product")
    .id
}

/// Every id in the index, in pages (the index answers the same as the API does).
async fn indexed_ids(index: &dyn SearchIndex) -> Vec<i64> {
    let mut all = Vec::new();
    for page in 0.. {
        let query = emporium_api::search::IndexQuery {
            text: String::new(),
            category: None,
            category_ids: vec![],
            category_slugs: Vec::new(),
            brands: vec![],
            min_price: None,
            max_price: None,
            in_stock: false,
            sort: emporium_api::search::Sort::PriceAsc,
            offset: page * 100,
            limit: 100,
        };
        let results = index.search(&query).await.unwrap();
        if results.hits.is_empty() {
            break;
        }
        all.extend(results.hits.iter().map(|h| h.id));
    }
    all
}

#[tokio::test]
async fn an_indexer_restarted_mid_stream_loses_and_duplicates_nothing_even_with_late_commits() {
    emporium_tests::init_logging();
    let database = TestDatabase::create().await;
    let db = database.db.clone();
    let dir = tempfile::tempdir().unwrap();
    seed_catalogue(&db, 150).await.unwrap();
    let category: i64 = rows(&db, "SELECT id FROM categories ORDER BY id LIMIT 1", vec![]).await[0].try_get("", "id").unwrap();

    let open = || {
        let index: Arc<dyn SearchIndex> = Arc::new(TantivyIndex::open(dir.path(), 2).unwrap());
        let categories = Arc::new(arc_swap::ArcSwap::from_pointee(CategoryTree::default()));
        (index.clone(), Indexer::new(db.clone(), index, categories, Duration::from_secs(3600)).with_batch(7))
    };
    // an empty index is built from the outbox, not rebuilt, so that the follower is exercised
    let (index, indexer) = open();
    {
        let c = emporium_api::search::Checkpoint { written_at: chrono::Utc::now(), ..Default::default() };
        index.apply(Default::default(), c).await.unwrap();
    }

    // a transaction that takes its outbox id now and commits last
    let late = db.begin().await.unwrap();
    let late_id = insert_product(&late, category, "LATE-1").await;
    // changes committed after it, with larger ids: created, then changed
    let mut committed = Vec::new();
    for i in 0..12 {
        let tx = db.begin().await.unwrap();
        committed.push(insert_product(&tx, category, &format!("AFTER-{i}")).await);
        tx.commit().await.unwrap();
    }
    let tx = db.begin().await.unwrap();
    catalog::set_available_stock(&tx, committed[0], 0).await.unwrap();
    catalog::delete_product(&tx, committed[1]).await.unwrap();
    tx.commit().await.unwrap();

    // a few steps, then a crash (the index and indexer are dropped; only commits survive)
    for _ in 0..9 {
        indexer.step().await.unwrap();
    }
    drop((index, indexer));

    let (index, indexer) = open();
    let deadline = Instant::now() + Duration::from_secs(20);
    while indexer.pending().await.unwrap() > 0 {
        indexer.step().await.unwrap();
        assert!(Instant::now() < deadline, "indexer did not catch up");
    }
    let before_late = indexed_ids(index.as_ref()).await;
    assert!(!before_late.contains(&late_id), "not committed yet");
    // rows committed after the open transaction are searchable without waiting for it
    for id in &committed[2..] {
        assert!(before_late.contains(id), "product {id} waits for an unrelated open transaction");
    }

    late.commit().await.unwrap();
    // crash once more right after the late row was applied
    indexer.step().await.unwrap();
    drop((index, indexer));
    let (index, indexer) = open();
    while indexer.pending().await.unwrap() > 0 {
        indexer.step().await.unwrap();
        assert!(Instant::now() < deadline, "indexer did not catch up");
    }

    let live: Vec<i64> = rows(&db, "SELECT id FROM products WHERE deleted_at IS NULL ORDER BY id", vec![])
        .await
        .iter()
        .map(|r| r.try_get("", "id").unwrap())
        .collect();
    let mut indexed = indexed_ids(index.as_ref()).await;
    let distinct: HashSet<i64> = indexed.iter().copied().collect();
    assert_eq!(distinct.len(), indexed.len(), "a product is indexed twice");
    indexed.sort();
    assert_eq!(indexed, live, "index and Postgres disagree");
    assert!(indexed.contains(&late_id));
    assert!(!indexed.contains(&committed[1]), "deleted product still indexed");
    assert_eq!(index.num_docs().await.unwrap() as usize, live.len());
    let checkpoint = index.checkpoint().await.unwrap().unwrap();
    assert!(checkpoint.applied.len() <= 20, "remembered rows are released: {checkpoint:?}");
}

#[tokio::test]
async fn reindex_swaps_in_a_new_index_while_searches_keep_answering() {
    let app = seeded_app(500).await;
    let before = app.search_dir.path().read_dir().unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).collect::<Vec<_>>();
    // a product only a rebuild can see: written without an outbox row
    let category: i64 = rows(app.db(), "SELECT id FROM categories ORDER BY id LIMIT 1", vec![]).await[0].try_get("", "id").unwrap();
    app.db()
        .execute_unprepared(&format!(
            "INSERT INTO products (sku, title, brand, category_id, price_minor, currency) \
             VALUES ('HIDDEN-1', 'Quasar Hidden Lantern', 'Nobody', {category}, 1234, 'USD')"
        ))
        .await
        .unwrap();

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (answered, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let hammer = {
        let (client, base) = (app.client.clone(), app.address.clone());
        let (stop, answered, failed) = (stop.clone(), answered.clone(), failed.clone());
        tokio::spawn(async move {
            let queries = ["q=wireless", "q=laptop&sort=price_asc", "category=books", "q=tent&inStock=true"];
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let url = format!("{base}/products/search?{}", queries[n % queries.len()]);
                n += 1;
                match client.get(url).send().await {
                    Ok(r) if r.status() == StatusCode::OK => {
                        let body: Value = r.json().await.unwrap();
                        if body["total"].as_u64().unwrap_or(0) == 0 {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };

    let rebuilt = emporium_api::search::reindex(&app.config).await.expect("reindex");
    assert_eq!(rebuilt, 501);
    let started = Instant::now();
    reflected(&app, "q=quasar", started, Duration::from_secs(5), |b| b["total"] == 1).await;
    stop.store(true, Ordering::Relaxed);
    hammer.await.unwrap();
    assert_eq!(failed.load(Ordering::Relaxed), 0, "a search failed or came back empty during the swap");
    assert!(answered.load(Ordering::Relaxed) > 10);

    // the old generation's directory is gone, one generation is left
    let after = app.search_dir.path().read_dir().unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).collect::<Vec<_>>();
    let generations = |names: &[std::ffi::OsString]| names.iter().filter(|n| n.to_string_lossy().starts_with("gen-")).count();
    assert_eq!((generations(&before), generations(&after)), (1, 1));
    assert_ne!(
        before.iter().find(|n| n.to_string_lossy().starts_with("gen-")),
        after.iter().find(|n| n.to_string_lossy().starts_with("gen-"))
    );

    // the follower goes on from the new index's checkpoint
    let admin = app.admin_token().await;
    let created = app.create_product(&admin, category, "AFTER-REINDEX", 777, 1).await;
    let started = Instant::now();
    reflected(&app, "q=AFTER-REINDEX", started, Duration::from_secs(2), |b| ids(b).contains(&created["id"].as_i64().unwrap())).await;
}

#[tokio::test]
async fn suggest_completes_titles_from_a_prefix() {
    let app = seeded_app(400).await;
    let body = app.get("/products/suggest?q=wirel", None).await;
    assert_eq!(body.status, StatusCode::OK, "{}", body.text);
    let suggestions = body.body["suggestions"].as_array().unwrap();
    assert!(!suggestions.is_empty() && suggestions.len() <= 10, "{}", body.text);
    for s in suggestions {
        assert!(s.as_str().unwrap().to_lowercase().split_whitespace().any(|w| w.starts_with("wirel")), "{s}");
    }
    let phrase = app.get("/products/suggest?q=wireless%20hea", None).await;
    for s in phrase.body["suggestions"].as_array().unwrap() {
        assert!(s.as_str().unwrap().to_lowercase().contains("wireless hea"), "{s}");
    }
    let empty = app.get("/products/suggest?q=", None).await;
    assert_eq!(empty.body["suggestions"], json!([]));
}

async fn cache_count(app: &TestApp, result: &str) -> u64 {
    let metrics = app.get("/metrics", None).await.text;
    metrics
        .lines()
        .find(|l| l.starts_with(&format!("search_cache_requests_total{{result=\"{result}\"}}")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn identical_searches_are_cached_until_the_index_changes() {
    let app = seeded_app(200).await;
    let query = "q=laptop&sort=price_desc";
    let first = search(&app, query).await;
    let (hits, misses) = (cache_count(&app, "hit").await, cache_count(&app, "miss").await);
    let second = search(&app, query).await;
    assert_eq!(first, second);
    assert_eq!(cache_count(&app, "hit").await, hits + 1);
    assert_eq!(cache_count(&app, "miss").await, misses);

    // a change to the index makes the cached answer unreachable
    let admin = app.admin_token().await;
    let id = ids(&first)[0];
    app.put(&format!("/admin/products/{id}/inventory"), Some(&admin), json!({ "available": 0 })).await;
    app.wait_for_search_index().await;
    let third = search(&app, query).await;
    assert_eq!(third["items"][0]["available"], 0);
    assert_eq!(cache_count(&app, "miss").await, misses + 1);
}

#[tokio::test]
async fn the_cache_can_be_turned_off() {
    let app = spawn_app_with(|c| c.search.cache_ttl = None).await;
    seed_catalogue(app.db(), 50).await.unwrap();
    app.wait_for_search_index().await;
    search(&app, "q=laptop").await;
    search(&app, "q=laptop").await;
    assert_eq!((cache_count(&app, "hit").await, cache_count(&app, "miss").await), (0, 0));
}

#[tokio::test]
async fn every_bad_parameter_is_a_400_with_its_code() {
    let app = spawn_app().await;
    let cases = [
        ("minPrice=500&maxPrice=100", StatusCode::BAD_REQUEST, "invalid_price_range"),
        ("minPrice=-1", StatusCode::BAD_REQUEST, "invalid_price"),
        ("maxPrice=-5", StatusCode::BAD_REQUEST, "invalid_price"),
        ("minPrice=abc", StatusCode::BAD_REQUEST, "invalid_parameter"),
        ("sort=cheapest", StatusCode::BAD_REQUEST, "invalid_sort"),
        ("limit=101", StatusCode::BAD_REQUEST, "limit_too_large"),
        ("limit=0", StatusCode::BAD_REQUEST, "invalid_parameter"),
        ("limit=-4", StatusCode::BAD_REQUEST, "invalid_parameter"),
        ("page=-1", StatusCode::BAD_REQUEST, "invalid_page"),
        ("page=0", StatusCode::BAD_REQUEST, "invalid_page"),
        ("page=x", StatusCode::BAD_REQUEST, "invalid_parameter"),
        ("page=500&limit=100", StatusCode::BAD_REQUEST, "page_too_deep"),
        ("inStock=maybe", StatusCode::BAD_REQUEST, "invalid_parameter"),
        ("category=no-such-category", StatusCode::UNPROCESSABLE_ENTITY, "unknown_category"),
    ];
    for (query, status, code) in cases {
        let response = app.get(&format!("/products/search?{query}"), None).await;
        assert_eq!((response.status, response.code()), (status, code), "{query}: {}", response.text);
    }
    let long = app.get(&format!("/products/search?q={}", "a".repeat(201)), None).await;
    assert_eq!((long.status, long.code()), (StatusCode::BAD_REQUEST, "query_too_long"));
    let brands: String = (0..21).map(|i| format!("&brand=b{i}")).collect();
    let many = app.get(&format!("/products/search?{brands}"), None).await;
    assert_eq!((many.status, many.code()), (StatusCode::BAD_REQUEST, "too_many_brands"));
    let suggest = app.get(&format!("/products/suggest?q={}", "a".repeat(201)), None).await;
    assert_eq!((suggest.status, suggest.code()), (StatusCode::BAD_REQUEST, "query_too_long"));
}

/// Every browse without text or price range (no filter, a category, brands, both; with and
/// without "in stock"; four sorts; two pages) against Postgres.
async fn browsing_matches_sql(app: &TestApp, round: &str) {
    let truth = Truth { db: app.db() };
    let filters: [(Option<&str>, &[&str]); 4] =
        [(None, &[]), (Some("electronics"), &[]), (None, &["Sony", "lenovo"]), (Some("computers"), &["Dell", "HP"])];
    for (category, brands) in filters {
        for in_stock in [false, true] {
            let (total, categories, brand_counts, prices) = truth.answer(None, category, brands, (None, None), in_stock).await;
            assert!(total > 0, "{round} {category:?} {brands:?}: the case should match something");
            let mut filter = category.map(|c| format!("&category={c}")).unwrap_or_default();
            for b in brands {
                filter.push_str(&format!("&brand={}", enc(b)));
            }
            if in_stock {
                filter.push_str("&inStock=true");
            }
            for (sort, order) in [
                ("relevance", "p.id"),
                ("price_asc", "p.price_minor, p.id"),
                ("price_desc", "p.price_minor DESC, p.id"),
                ("newest", "p.created_at DESC, p.id DESC"),
            ] {
                let query = format!("q=&sort={sort}&limit=100{filter}");
                let first = search(app, &query).await;
                let second = search(app, &format!("{query}&page=2")).await;
                assert_eq!(first["total"], total, "{round} {query}: total");
                assert_eq!(facet_map(&first, "category"), categories, "{round} {query}: category facet");
                assert_eq!(facet_map(&first, "brand"), brand_counts, "{round} {query}: brand facet");
                let counts: Vec<i64> = first["facets"]["price"].as_array().unwrap().iter().map(|p| p["count"].as_i64().unwrap()).collect();
                assert_eq!(counts, prices, "{round} {query}: price facet");
                let stock = if in_stock { " AND COALESCE(i.available, 0) > 0" } else { "" };
                let expected: Vec<i64> = rows(
                    app.db(),
                    &format!(
                        "SELECT p.id FROM products p LEFT JOIN inventory i ON i.product_id = p.id \
                         WHERE p.deleted_at IS NULL{stock}{}{} ORDER BY {order} LIMIT 200",
                        category_sql(category),
                        brands_sql(brands)
                    ),
                    vec![],
                )
                .await
                .iter()
                .map(|r| r.try_get("", "id").unwrap())
                .collect();
                let pages: Vec<i64> = ids(&first).into_iter().chain(ids(&second)).collect();
                assert_eq!(pages, expected, "{round} {query}: two pages in order");
            }
        }
    }
}

/// Browsing without text or price range is answered from per-segment tables; it must agree
/// with Postgres, also after products are deleted or sell out (deleted documents in old
/// segments).
#[tokio::test]
async fn browsing_everything_matches_sql_before_and_after_changes() {
    let app = seeded_app(700).await;
    let admin = app.admin_token().await;
    browsing_matches_sql(&app, "fresh").await;

    // the cheapest product goes, another sells out: both leave deleted documents behind
    let cheapest = ids(&search(&app, "q=&sort=price_asc&limit=1").await)[0];
    let priciest = ids(&search(&app, "q=&sort=price_desc&limit=1&inStock=true").await)[0];
    // and the same in the filtered browse: the newest Dell computer goes, the next one sells out
    let dells = ids(&search(&app, "q=&category=computers&brand=Dell&sort=newest&limit=2&inStock=true").await);
    assert_eq!(dells.len(), 2, "the catalogue should have two Dell computers in stock");
    for product in [cheapest, dells[0]] {
        assert_eq!(app.delete(&format!("/admin/products/{product}"), Some(&admin)).await.status, StatusCode::NO_CONTENT);
    }
    for product in [priciest, dells[1]] {
        let sold_out = app.put(&format!("/admin/products/{product}/inventory"), Some(&admin), json!({ "available": 0 })).await;
        assert_eq!(sold_out.status, StatusCode::OK, "{}", sold_out.text);
    }
    let since = Instant::now();
    reflected(&app, "q=&sort=price_desc&limit=1&inStock=true", since, Duration::from_secs(5), |b| ids(b) != [priciest]).await;
    reflected(&app, "q=&sort=price_asc&limit=1", since, Duration::from_secs(5), |b| ids(b) != [cheapest]).await;
    let dell_query = "q=&category=computers&brand=Dell&sort=newest&limit=2&inStock=true";
    reflected(&app, dell_query, since, Duration::from_secs(5), |b| !ids(b).contains(&dells[0]) && !ids(b).contains(&dells[1])).await;
    browsing_matches_sql(&app, "after a delete and a sell-out").await;
}
