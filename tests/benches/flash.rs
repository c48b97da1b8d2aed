//! Flash-sale entry benchmark: entries per second and latency over HTTP with many concurrent
//! clients (one Lua script in Redis per entry, Postgres only for winners), next to a plain
//! Postgres row-lock design (`UPDATE … SET remaining = remaining - 1 WHERE remaining > 0` per
//! entry) on the same machine in the same run. Asserts exactly N winners for N units.
//!
//!     scripts/bench.sh flash            (CLIENTS=256 ENTRIES=100000 UNITS=1000 by default)
//!
//! Both designs are served the same way (poem, the bearer-token check, the same connection pool)
//! and driven by the same load generator: one keep-alive connection per client.

// the allocator the API and worker binaries run with
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::Utc;
use hyper::{Method, StatusCode};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde_json::json;
use uuid::Uuid;

use emporium_api::{
    auth::{TokenKind, TokenService},
    metrics::Metrics,
};
use emporium_entities::entity::users::Role;
use emporium_tests::{
    TestApp,
    load::{LoadClient, percentile},
    spawn_app_with,
    worker::{TestWorker, unique_task_queue},
};
use poem::{
    EndpointExt,
    listener::{Acceptor, Listener},
};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Figures {
    entries: usize,
    winners: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    /// entries answered 409 / 429: the admission decision alone
    refused_p99: Duration,
    /// entries that won a unit: the claim is recorded (and, in the Redis design, its workflow started)
    winners_p50: Duration,
}

impl Figures {
    fn per_second(&self) -> f64 {
        self.entries as f64 / self.elapsed.as_secs_f64()
    }

    fn print(&self, name: &str) {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "{name:<34} {:>7} entries  {:>5} winners  {:>9.0} entries/s  p50 {:>7.2} ms  p99 {:>7.2} ms  (refused p99 {:>6.2} ms, winners p50 {:>7.2} ms)",
            self.entries,
            self.winners,
            self.per_second(),
            ms(self.p50),
            ms(self.p99),
            ms(self.refused_p99),
            ms(self.winners_p50),
        );
    }
}

fn figures(latencies: Vec<(Duration, bool)>, winners: usize, elapsed: Duration) -> Figures {
    let sorted = |won: Option<bool>| {
        let mut v: Vec<Duration> = latencies.iter().filter(|(_, w)| won.is_none_or(|won| *w == won)).map(|(d, _)| *d).collect();
        v.sort();
        v
    };
    let (all, refused, won) = (sorted(None), sorted(Some(false)), sorted(Some(true)));
    Figures {
        entries: all.len(),
        winners,
        elapsed,
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
        refused_p99: percentile(&refused, 0.99),
        winners_p50: percentile(&won, 0.50),
    }
}

/// `n` customers inserted straight into Postgres (hashing n passwords would take minutes), with
/// access tokens minted by the app's token service.
async fn customers(app: &TestApp, n: usize) -> Vec<String> {
    let tag = Uuid::new_v4().simple().to_string();
    app.db()
        .execute_unprepared(&format!(
            "INSERT INTO users (id, email, password_hash, role) \
             SELECT gen_random_uuid(), 'bench-' || i || '-{tag}@example.com', 'not-a-hash', 'customer' FROM generate_series(1, {n}) i"
        ))
        .await
        .expect("insert customers");
    let ids: Vec<Uuid> = app
        .db()
        .query_all_raw(Statement::from_string(DbBackend::Postgres, format!("SELECT id FROM users WHERE email LIKE '%-{tag}@example.com'")))
        .await
        .expect("customer ids")
        .iter()
        .map(|row| row.try_get("", "id").unwrap())
        .collect();
    let tokens = TokenService::new(&app.config.jwt_secret, Duration::from_secs(3600), Duration::from_secs(3600));
    ids.into_iter().map(|id| tokens.issue_pair(id, Role::Customer).expect("token").access_token).collect()
}

async fn redis_design(app: &TestApp, admin: &str, tokens: Arc<Vec<String>>, clients: usize, entries: usize, units: usize) -> Figures {
    let category = app.create_category(admin, "Bench flash", None).await;
    let product = app.create_product(admin, category, &format!("BENCH-FLASH-{}", Uuid::new_v4().simple()), 9_999, units as i64).await["id"]
        .as_i64()
        .unwrap();
    let created = app
        .post(
            "/admin/flash-sales",
            Some(admin),
            json!({
                "productId": product, "price": { "amount": 999, "currency": "USD" }, "quantity": units,
                "startsAt": Utc::now().to_rfc3339(), "endsAt": (Utc::now() + chrono::Duration::minutes(30)).to_rfc3339(),
                "perUserLimit": 1, "admissionPerSecond": 0,
            }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let sale = created.body["id"].as_str().unwrap().to_owned();
    let (all, elapsed) = stampede(&app.address, &format!("/flash-sales/{sale}/enter"), tokens, clients, entries).await;
    let claims: i64 = app
        .db()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT COUNT(*) AS n FROM flash_sale_claims WHERE sale_id = '{sale}'"),
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "n")
        .unwrap();
    // repeated entries of a winner return their claim (200 again); count distinct claims
    assert_eq!(claims as usize, units, "exactly N claims for N units");
    figures(all, claims as usize, elapsed)
}

/// The bearer-token check of the real route.
fn signed_in(req: &poem::Request, tokens: &TokenService) -> bool {
    let token = req.headers().get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    token.and_then(|t| tokens.verify(t, TokenKind::Access)).is_some()
}

/// The row-lock design served like the real route: poem with the API's middleware, the bearer-
/// token check, then one `UPDATE … WHERE remaining > 0` on the API's own connection pool; 200,
/// or 409 sold out.
#[poem::handler]
async fn row_lock_enter(req: &poem::Request, state: poem::web::Data<&Arc<SideServer>>) -> poem::Response {
    if !signed_in(req, &state.tokens) {
        return poem::Response::builder().status(StatusCode::UNAUTHORIZED).finish();
    }
    let won = state
        .db
        .execute_raw(Statement::from_string(
            DbBackend::Postgres,
            "UPDATE bench_row_lock_sales SET remaining = remaining - 1 WHERE id = 1 AND remaining > 0",
        ))
        .await
        .expect("row-lock entry")
        .rows_affected();
    let (status, body) =
        if won == 1 { (StatusCode::OK, r#"{"result":"claimed"}"#) } else { (StatusCode::CONFLICT, r#"{"code":"sold_out"}"#) };
    poem::Response::builder().status(status).content_type("application/json").body(body)
}

/// The floor under both designs: the same HTTP stack and token check, then a fixed 409 with no
/// store behind it. No admission design served this way can answer faster.
#[poem::handler]
async fn http_floor_enter(req: &poem::Request, state: poem::web::Data<&Arc<SideServer>>) -> poem::Response {
    if !signed_in(req, &state.tokens) {
        return poem::Response::builder().status(StatusCode::UNAUTHORIZED).finish();
    }
    poem::Response::builder().status(StatusCode::CONFLICT).content_type("application/json").body(r#"{"code":"sold_out"}"#)
}

struct SideServer {
    db: DatabaseConnection,
    tokens: TokenService,
}

/// Serves the row-lock design and the HTTP floor on a port of their own, inside the API's own
/// middleware (request metrics, error rendering, tracing) and with its connection pool.
async fn side_server(app: &TestApp) -> (String, tokio::task::JoinHandle<std::io::Result<()>>) {
    let state = Arc::new(SideServer {
        db: app.db().clone(),
        tokens: TokenService::new(&app.config.jwt_secret, Duration::from_secs(3600), Duration::from_secs(3600)),
    });
    let acceptor = poem::listener::TcpListener::bind("127.0.0.1:0").into_acceptor().await.expect("bind");
    let address = format!("http://{}", acceptor.local_addr()[0].as_socket_addr().expect("a TCP address"));
    let metrics = Metrics::new();
    let routes = poem::Route::new()
        .at("/row-lock/enter", poem::post(row_lock_enter))
        .at("/http-floor/enter", poem::post(http_floor_enter))
        .around(move |ep, req| emporium_api::metrics::record(metrics.clone(), ep, req))
        .catch_all_error(emporium_api::error::render_error)
        .data(state)
        .with(poem::middleware::Tracing);
    (address, tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(routes)))
}

async fn row_lock_design(app: &TestApp, side: &str, tokens: Arc<Vec<String>>, clients: usize, entries: usize, units: usize) -> Figures {
    app.db()
        .execute_unprepared(&format!(
            "CREATE TABLE IF NOT EXISTS bench_row_lock_sales (id int PRIMARY KEY, remaining int NOT NULL); \
             INSERT INTO bench_row_lock_sales VALUES (1, {units}) ON CONFLICT (id) DO UPDATE SET remaining = {units}"
        ))
        .await
        .expect("row-lock table");
    let (all, elapsed) = stampede(side, "/row-lock/enter", tokens, clients, entries).await;
    let won = all.iter().filter(|(_, won)| *won).count();
    assert_eq!(won, units, "exactly N winners for N units");
    figures(all, won, elapsed)
}

/// `entries` POSTs to `path` from `clients` keep-alive connections, each entry with the next
/// token; (latency, won) per entry and the elapsed time. 200 wins, 409 and 429 refuse.
async fn stampede(
    address: &str,
    path: &str,
    tokens: Arc<Vec<String>>,
    clients: usize,
    entries: usize,
) -> (Vec<(Duration, bool)>, Duration) {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks = (0..clients).map(|_| {
        let (mut client, path, tokens, next) = (LoadClient::new(address), path.to_owned(), tokens.clone(), next.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= entries {
                    return latencies;
                }
                let sent = Instant::now();
                let (status, body) = client.send(Method::POST, &path, Some(&tokens[i % tokens.len()]), &[], None).await;
                latencies.push((sent.elapsed(), status == StatusCode::OK));
                match status {
                    StatusCode::OK | StatusCode::CONFLICT | StatusCode::TOO_MANY_REQUESTS => {}
                    other => panic!("{path} answered {other}: {}", String::from_utf8_lossy(&body)),
                }
            }
        })
    });
    let mut all = Vec::with_capacity(entries);
    for task in futures::future::join_all(tasks).await {
        all.extend(task.expect("client"));
    }
    (all, started.elapsed())
}

#[tokio::main]
async fn main() {
    let clients = env_or("CLIENTS", 256);
    let entries = env_or("ENTRIES", 100_000);
    let units = env_or("UNITS", 1_000);
    let queue = unique_task_queue();
    let q = queue.clone();
    let app = spawn_app_with(move |config| {
        config.task_queue = q;
        config.database_max_connections = 40;
    })
    .await;
    let _worker = TestWorker::start(&queue, app.db().clone());
    let admin = app.admin_token().await;
    println!("flash-sale entry: {clients} concurrent clients, {entries} entries, {units} units, API and load in one process");

    // five attempts each, the most the rate limit allows: a stampede of distinct users; the
    // row-lock design gets the same ones
    let tokens = Arc::new(customers(&app, entries.div_ceil(5)).await);
    let redis = redis_design(&app, &admin, tokens.clone(), clients, entries, units).await;
    redis.print("Redis Lua admission (HTTP)");
    let (side, side_server) = side_server(&app).await;
    let row_lock = row_lock_design(&app, &side, tokens.clone(), clients, entries, units).await;
    row_lock.print("Postgres row lock (HTTP)");
    // the same users again, against a handler that only checks the token
    let (all, elapsed) = stampede(&side, "/http-floor/enter", tokens, clients, entries).await;
    side_server.abort();
    let floor = figures(all, 0, elapsed);
    floor.print("HTTP floor: token check, fixed 409");
    println!("ratio: {:.1}x the entries/s of the row-lock design", redis.per_second() / row_lock.per_second());
    println!(
        "share of the HTTP floor: Redis design {:.0}%, row-lock design {:.0}%   (design targets: >= 30,000 entries/s, >= 20x the row lock)",
        100.0 * redis.per_second() / floor.per_second(),
        100.0 * row_lock.per_second() / floor.per_second()
    );
}
