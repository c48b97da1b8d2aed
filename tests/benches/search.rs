//! Search benchmark: rotating queries with filters and facets through the HTTP API (tantivy,
//! cache off) next to the same queries answered by Postgres full-text search (a tsvector column
//! with a GIN index, the same filters, facet counts by GROUP BY) on the same catalogue, in the
//! same run. Also the time to load and to index the catalogue.
//!
//!     scripts/bench.sh search                       (PRODUCTS=1000000 CLIENTS=16 REQUESTS=200)
//!     PRODUCTS=100000 scripts/bench.sh search       (a smaller catalogue)
//!
//! The API side runs saturated first (each client sends again as soon as it has an answer), which
//! gives its capacity, then paced at a share of that capacity (`LOADS`, half and three quarters by default) with the
//! same clients, which gives the latency a shopper sees at that load: saturated latency is mostly
//! queueing (clients / throughput by Little's law).
//!
//! PG_REQUESTS (default REQUESTS / 4) sets the requests per client on the Postgres side, which
//! is much slower; PG_REQUESTS=0 leaves the Postgres side out (and its minute of tsvector and
//! GIN building), for quick runs of the tantivy side alone. SLOWEST=1 also prints the slowest
//! queries run alone, TAIL=1 the slowest requests of each run with when they were sent.
//! SEARCH_THREADS sets how many searches the API runs at once (four per core by default). The
//! catalogue lives in a database of its own, dropped at the end.

// the allocator the API and worker binaries run with
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use sea_orm::{ConnectionTrait, DatabaseConnection};

use emporium_api::catalogue_generator::seed_catalogue;
use emporium_tests::{
    TestApp, TestDatabase,
    load::{Connections, Exchange, LoadClient, Pace, drive, latency_loads, percentile},
    spawn_app_on,
};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(default)
}

/// One benchmark query: its filters, as an HTTP query string and as SQL.
#[derive(Debug, Clone)]
struct BenchQuery {
    text: &'static str,
    category: Option<&'static str>,
    brands: &'static [&'static str],
    price: (Option<i64>, Option<i64>),
    in_stock: bool,
    sort: &'static str,
}

const TEXTS: &[&str] = &[
    "wireless headphones",
    "laptop",
    "tent",
    "coffee beans",
    "espresso machine",
    "yoga mat",
    "board game",
    "office chair",
    "air fryer",
    "running shoes",
    "mechanical keyboard",
    "dog bed",
    "",
    "portable speaker",
    "cast iron",
    "hiking backpack",
    "electric toothbrush",
    "garden hose",
    "dark chocolate",
    "novel",
];
const CATEGORIES: &[Option<&str>] =
    &[None, Some("electronics"), None, Some("computers"), Some("home-kitchen"), None, Some("sports-outdoors")];
const BRANDS: &[&[&str]] = &[&[], &["Sony", "Bose"], &[], &["Lenovo", "Dell", "HP"], &[], &["Ninja"], &[]];
const PRICES: &[(Option<i64>, Option<i64>)] = &[(None, None), (Some(1_000), Some(20_000)), (None, Some(5_000)), (Some(10_000), None)];
const SORTS: &[&str] = &["relevance", "price_asc", "relevance", "rating", "newest", "price_desc"];

/// 60 combinations of text, category, brands, price range, stock and sort.
fn queries() -> Vec<BenchQuery> {
    (0..60)
        .map(|i| BenchQuery {
            text: TEXTS[i % TEXTS.len()],
            category: CATEGORIES[i % CATEGORIES.len()],
            brands: BRANDS[(i / 3) % BRANDS.len()],
            price: PRICES[i % PRICES.len()],
            in_stock: i % 2 == 0,
            sort: SORTS[i % SORTS.len()],
        })
        .collect()
}

impl BenchQuery {
    fn http(&self) -> String {
        let mut q = format!("/products/search?limit=20&sort={}&q={}", self.sort, self.text.replace(' ', "+"));
        if let Some(c) = self.category {
            q.push_str(&format!("&category={c}"));
        }
        for b in self.brands {
            q.push_str(&format!("&brand={b}"));
        }
        if let Some(min) = self.price.0 {
            q.push_str(&format!("&minPrice={min}"));
        }
        if let Some(max) = self.price.1 {
            q.push_str(&format!("&maxPrice={max}"));
        }
        if self.in_stock {
            q.push_str("&inStock=true");
        }
        q
    }

    /// The page with its total, and the three facets, each under the other filters.
    fn sql(&self) -> [String; 4] {
        let tsquery = format!("plainto_tsquery('english', '{}')", self.text);
        let mut base = String::from(
            "FROM products p JOIN categories c ON c.id = p.category_id LEFT JOIN inventory i ON i.product_id = p.id \
             WHERE p.deleted_at IS NULL",
        );
        if !self.text.is_empty() {
            base.push_str(&format!(" AND p.search @@ {tsquery}"));
        }
        if self.in_stock {
            base.push_str(" AND i.available > 0");
        }
        let category = self
            .category
            .map(|slug| {
                format!(
                    " AND p.category_id IN (WITH RECURSIVE t AS (SELECT id FROM categories WHERE slug = '{slug}' \
                     UNION ALL SELECT x.id FROM categories x JOIN t ON x.parent_id = t.id) SELECT id FROM t)"
                )
            })
            .unwrap_or_default();
        let brand = if self.brands.is_empty() {
            String::new()
        } else {
            format!(" AND p.brand IN ({})", self.brands.iter().map(|b| format!("'{b}'")).collect::<Vec<_>>().join(","))
        };
        let mut price = String::new();
        if let Some(min) = self.price.0 {
            price.push_str(&format!(" AND p.price_minor >= {min}"));
        }
        if let Some(max) = self.price.1 {
            price.push_str(&format!(" AND p.price_minor <= {max}"));
        }
        let rank = if self.text.is_empty() { "1.0".to_owned() } else { format!("ts_rank(p.search, {tsquery})") };
        let order = match self.sort {
            "price_asc" => "p.price_minor ASC, p.id",
            "price_desc" => "p.price_minor DESC, p.id",
            "newest" => "p.created_at DESC, p.id DESC",
            "rating" => "p.rating DESC, p.rating_count DESC, p.id",
            _ => "score DESC, p.id",
        };
        let bands = "CASE WHEN p.price_minor < 1000 THEN 0 WHEN p.price_minor < 2500 THEN 1 WHEN p.price_minor < 5000 THEN 2 \
            WHEN p.price_minor < 10000 THEN 3 WHEN p.price_minor < 25000 THEN 4 WHEN p.price_minor < 50000 THEN 5 \
            WHEN p.price_minor < 100000 THEN 6 ELSE 7 END";
        [
            format!(
                "SELECT p.id, p.title, p.brand, p.price_minor, p.currency, i.available, c.slug, {rank} AS score, \
                 COUNT(*) OVER () AS total {base}{category}{brand}{price} ORDER BY {order} LIMIT 20"
            ),
            format!("SELECT c.slug, COUNT(*) AS n {base}{brand}{price} GROUP BY c.slug"),
            format!("SELECT p.brand, COUNT(*) AS n {base}{category}{price} GROUP BY p.brand"),
            format!("SELECT {bands} AS band, COUNT(*) AS n {base}{category}{brand} GROUP BY 1"),
        ]
    }
}

struct Figures {
    requests: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Figures {
    fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn print(&self, name: &str) {
        println!(
            "{name:<44} {:>7} queries  {:>8.1} q/s  p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms",
            self.requests,
            self.per_second(),
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.max.as_secs_f64() * 1e3
        );
    }
}

fn figures(mut all: Vec<Duration>, elapsed: Duration) -> Figures {
    all.sort();
    Figures { requests: all.len(), elapsed, p50: percentile(&all, 0.50), p99: percentile(&all, 0.99), max: *all.last().unwrap() }
}

async fn run_http(app: &TestApp, queries: &[BenchQuery], pace: Pace, clients: usize, per_client: usize) -> Figures {
    let started = Instant::now();
    let start = tokio::time::Instant::now();
    let tasks = (0..clients).map(|c| {
        let connections = Connections::new(&app.address);
        let paths: Vec<String> = queries.iter().map(BenchQuery::http).collect();
        tokio::spawn(async move {
            // the query of the client's n-th request
            let which = |n: usize| (c * 7 + n) % paths.len();
            let timed =
                drive(&connections, pace, c, clients, start, per_client, |n| Exchange::new(Method::GET, paths[which(n)].as_str())).await;
            timed
                .into_iter()
                .map(|request| {
                    let which = which(request.op);
                    assert_eq!(request.status, StatusCode::OK, "{}", paths[which]);
                    (request.latency, request.at, which)
                })
                .collect::<Vec<_>>()
        })
    });
    let mut all = Vec::new();
    for task in futures::future::join_all(tasks).await {
        all.extend(task.expect("client"));
    }
    if std::env::var("TAIL").is_ok() {
        // when the slowest requests were sent and what they asked: a stall shows as a cluster
        // in time, a costly query as the same query again and again
        all.sort_by_key(|(latency, ..)| std::cmp::Reverse(*latency));
        let began = std::time::SystemTime::now() - started.elapsed();
        let began_ms = began.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
        println!("slowest requests {} (sent at, latency, query; the run began at unix {began_ms} ms):", pace.describe());
        for (latency, at, which) in all.iter().take(16) {
            println!("  {:>9.1} ms  {:>7.2} ms  {}", at.as_secs_f64() * 1e3, latency.as_secs_f64() * 1e3, queries[*which].http());
        }
    }
    figures(all.into_iter().map(|(latency, ..)| latency).collect(), started.elapsed())
}

async fn run_postgres(db: &DatabaseConnection, queries: &[BenchQuery], clients: usize, per_client: usize) -> Figures {
    let started = Instant::now();
    let tasks = (0..clients).map(|c| {
        let db = db.clone();
        let statements: Vec<[String; 4]> = queries.iter().map(BenchQuery::sql).collect();
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_client);
            for n in 0..per_client {
                let sql = &statements[(c * 7 + n) % statements.len()];
                let sent = Instant::now();
                for statement in sql {
                    db.query_all_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, statement.clone()))
                        .await
                        .unwrap_or_else(|e| panic!("{statement}: {e}"));
                }
                latencies.push(sent.elapsed());
            }
            latencies
        })
    });
    let mut all = Vec::new();
    for task in futures::future::join_all(tasks).await {
        all.extend(task.expect("client"));
    }
    figures(all, started.elapsed())
}

/// Postgres FTS on the catalogue: a generated tsvector column and a GIN index, in this database
/// only; returns a pool for the Postgres side.
async fn postgres_fts(db_url: &str, clients: usize) -> DatabaseConnection {
    let pg = emporium_entities::db::connect(db_url, (clients + 4) as u32).await.expect("connect");
    let started = Instant::now();
    pg.execute_unprepared(
        "ALTER TABLE products ADD COLUMN search tsvector GENERATED ALWAYS AS ( \
             setweight(to_tsvector('english', title), 'A') || setweight(to_tsvector('english', brand), 'B') || \
             setweight(to_tsvector('english', description), 'C')) STORED; \
         CREATE INDEX products_search_idx ON products USING GIN (search); \
         CREATE INDEX products_brand_idx ON products (brand); \
         CREATE INDEX products_price_idx ON products (price_minor); \
         ANALYZE products; ANALYZE inventory;",
    )
    .await
    .expect("tsvector column and GIN index");
    // Adding the column rewrote the table: vacuum it now, or autovacuum does it during the
    // measurements below and takes a fifth of the CPU from whichever design is running.
    pg.execute_unprepared("VACUUM (ANALYZE) products, inventory").await.expect("vacuum");
    println!("Postgres tsvector column + GIN index built: {:.1} s", started.elapsed().as_secs_f64());
    pg
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let products = env_or("PRODUCTS", 1_000_000) as u64;
    let clients = env_or("CLIENTS", 16);
    let requests = env_or("REQUESTS", 200);
    let pg_requests = env_or("PG_REQUESTS", (requests / 4).max(1));
    let queries = queries();
    println!("search benchmark: {products} products, {} rotating queries, {clients} concurrent clients", queries.len());

    let database = TestDatabase::create().await;
    let started = Instant::now();
    seed_catalogue(&database.db, products).await.expect("seed");
    let seeded = started.elapsed();
    println!("catalogue generated and loaded: {:.1} s", seeded.as_secs_f64());

    // The API starts on an empty index directory and builds the whole index from Postgres.
    let db_url = database.url.clone();
    let started = Instant::now();
    // SEARCH_THREADS: searches run at once (four per core otherwise)
    let search_threads = std::env::var("SEARCH_THREADS").ok().and_then(|v| v.parse::<usize>().ok());
    let app = spawn_app_on(database, |c| {
        c.search.cache_ttl = None;
        c.database_max_connections = 40;
        if let Some(threads) = search_threads {
            c.search.threads = threads;
        }
    })
    .await;
    app.wait_for_search_index_within(Duration::from_secs(3600)).await;
    let indexed = started.elapsed();
    println!("tantivy index built ({products} products): {:.1} s", indexed.as_secs_f64());

    let pg = if pg_requests > 0 { Some(postgres_fts(&db_url, clients).await) } else { None };

    // warm both (page cache, mmaps, plans) with one pass over the queries
    run_http(&app, &queries, Pace::Saturate, 1, queries.len()).await;
    if let Some(pg) = &pg {
        run_postgres(pg, &queries, 1, queries.len().min(12)).await;
    }

    let tantivy = run_http(&app, &queries, Pace::Saturate, clients, requests).await;
    let mut paced = Vec::new();
    for load in latency_loads() {
        let pace = Pace::share_of(tantivy.per_second(), load);
        paced.push((load, pace, run_http(&app, &queries, pace, clients, requests).await));
    }
    let postgres = match &pg {
        Some(pg) => Some(run_postgres(pg, &queries, clients, pg_requests).await),
        None => None,
    };
    println!();
    tantivy.print("HTTP API, tantivy, no cache, saturated");
    for (load, pace, figures) in &paced {
        figures.print(&format!("HTTP API, tantivy, {:.0}% load ({})", load * 100.0, pace.describe()));
    }
    if let Some(postgres) = &postgres {
        postgres.print("Postgres FTS + GROUP BY, saturated");
        println!(
            "tantivy / Postgres: throughput {:.1}x, saturated p99 {:.2}x",
            tantivy.per_second() / postgres.per_second(),
            tantivy.p99.as_secs_f64() / postgres.p99.as_secs_f64()
        );
    }
    println!(
        "design targets: >= 10x Postgres; p99 <= 20 ms (saturated p99 is mostly clients / throughput queueing; the paced lines are the latency at that load)"
    );
    println!("indexing: {products} products in {:.1} s ({:.0} products/s)", indexed.as_secs_f64(), products as f64 / indexed.as_secs_f64());
    if std::env::var("SLOWEST").is_ok() {
        // one client, each query 5 times: which queries make the tail
        let mut client = LoadClient::new(&app.address);
        let mut costs = Vec::new();
        for query in &queries {
            let path = query.http();
            let sent = Instant::now();
            for _ in 0..5 {
                client.send(Method::GET, &path, None, &[], None).await;
            }
            costs.push((sent.elapsed() / 5, path));
        }
        costs.sort_by_key(|c| std::cmp::Reverse(c.0));
        println!("slowest queries alone (mean of 5, one client):");
        for (cost, path) in costs.iter().take(12) {
            println!("  {:>8.2} ms  {path}", cost.as_secs_f64() * 1e3);
        }
    }
    drop(pg);
    drop(app);
}
