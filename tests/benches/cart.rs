//! Cart add/update benchmark: throughput and p50/p99 latency over HTTP with concurrent clients,
//! for anonymous carts (Redis) and signed-in carts (Postgres + Redis cache), side by side.
//!
//!     scripts/bench.sh cart            (CLIENTS=32 OPS=1000 WARMUP=100 ROUNDS=1 by default; CARTS=signed-in for one kind)
//!
//! Signed-in changes run twice: batched as the API sends them (`WRITE_BATCHES` in flight), and
//! one statement and commit per change, the simpler design, in a second API beside it.
//!
//! Each kind runs twice: saturated (every client sends again as soon as it has an answer), which
//! gives the capacity, then paced at a share of that capacity (`LOADS`, half and three quarters by default) with the
//! same clients, which gives the latency a shopper sees at that load: each request goes out when it
//! falls due, on another connection of its client if the last is still unanswered. Saturated latency is mostly
//! queueing (32 clients / throughput by Little's law); half load is where the design states
//! checkout's latency target. RATES (requests a second, comma-separated) paces every kind at those
//! rates instead, so that builds or settings of different capacity are compared at the same
//! offered load. TAIL=1 also prints, for each run, the slowest requests with when
//! they were sent and how the slowest 1% spread over the run (a stall shows as a cluster).

// the allocator the API and worker binaries run with
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::{Method, StatusCode, header::HeaderName};
use serde_json::json;

use emporium_tests::{
    TestApp,
    load::{Connections, Exchange, Pace, drive, latency_loads, percentile},
    spawn_app_with,
};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Figures {
    ops: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    max: Duration,
    /// connections the clients have opened so far (one each while only saturated)
    connections: usize,
}

impl Figures {
    fn per_second(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    fn print(&self, name: &str) {
        println!(
            "{name:<52} {:>8} ops  {:>9.0} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  {:>4} connections",
            self.ops,
            self.per_second(),
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.max.as_secs_f64() * 1e3,
            self.connections
        );
    }
}

/// Each client alternates "add 1" and "set quantity to 1" on its own line, on keep-alive
/// connections of its own (one when saturating; when paced, as many as its requests in flight
/// need, see `load::drive`), at `pace`.
async fn run(pace: Pace, ops: usize, products: &[i64], identities: &[Identity], connections: &[Connections]) -> Figures {
    let clients = identities.len();
    let started = Instant::now();
    let start = tokio::time::Instant::now();
    let tasks = identities.iter().cloned().zip(connections.iter().cloned()).enumerate().map(|(i, (identity, connections))| {
        let product = products[i % products.len()];
        let add = Bytes::from(json!({ "productId": product, "quantity": 1 }).to_string());
        let set = Bytes::from(json!({ "quantity": 1 }).to_string());
        let item = format!("/cart/items/{product}");
        tokio::spawn(async move {
            drive(&connections, pace, i, clients, start, ops, |op| {
                let mut exchange = if op % 2 == 0 {
                    Exchange { body: Some(add.clone()), ..Exchange::new(Method::POST, "/cart/items") }
                } else {
                    Exchange { body: Some(set.clone()), ..Exchange::new(Method::PATCH, item.as_str()) }
                };
                match &identity {
                    Identity::Token(token) => exchange.bearer = Some(token.clone()),
                    Identity::Session(id) => exchange.headers.push((HeaderName::from_static("x-session-id"), id.clone())),
                }
                exchange
            })
            .await
        })
    });
    let mut timed: Vec<(Duration, Duration)> = Vec::with_capacity(clients * ops);
    for task in futures::future::join_all(tasks).await {
        for request in task.expect("client task") {
            assert_eq!(request.status, StatusCode::OK, "cart write failed");
            timed.push((request.latency, request.at));
        }
    }
    let elapsed = started.elapsed();
    if std::env::var("TAIL").is_ok() {
        print_tail(&mut timed, pace);
    }
    let mut all: Vec<Duration> = timed.into_iter().map(|(latency, _)| latency).collect();
    all.sort();
    Figures {
        ops: all.len(),
        elapsed,
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
        max: *all.last().unwrap(),
        connections: connections.iter().map(Connections::opened).sum(),
    }
}

/// The slowest requests with when they were sent: a stall shows as a cluster in time.
fn print_tail(timed: &mut [(Duration, Duration)], pace: Pace) {
    timed.sort_by_key(|&(latency, _)| std::cmp::Reverse(latency));
    let slow = timed.len() / 100;
    let mut at: Vec<Duration> = timed[..slow].iter().map(|&(_, at)| at).collect();
    at.sort();
    println!("slowest 1% {} ({slow} requests), latency and send time of the 16 slowest:", pace.describe());
    for (latency, at) in timed.iter().take(16) {
        println!("  {:>9.1} ms  {:>7.2} ms", at.as_secs_f64() * 1e3, latency.as_secs_f64() * 1e3);
    }
    // how the slowest 1% spread over the run, in 100 ms windows
    let mut windows: std::collections::BTreeMap<u128, usize> = Default::default();
    for t in &at {
        *windows.entry(t.as_millis() / 100).or_default() += 1;
    }
    let line: Vec<String> = windows.iter().map(|(w, n)| format!("{}:{n}", w * 100)).collect();
    println!("  slowest 1% by 100 ms window (start ms:count): {}", line.join(" "));
}

#[derive(Clone)]
enum Identity {
    Token(String),
    Session(String),
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let clients = env_or("CLIENTS", 32);
    let ops = env_or("OPS", 1000);
    let warmup = env_or("WARMUP", 100);
    // ROUNDS: run every kind this many times, interleaved, and summarise the p99s
    let rounds = env_or("ROUNDS", 1).max(1);
    // DB_POOL: the API's Postgres connections (the tests' default otherwise)
    let pool = std::env::var("DB_POOL").ok().and_then(|v| v.parse::<u32>().ok());
    // WRITE_BATCHES: signed-in change batches in flight at once (the API's default otherwise)
    let write_batches = env_or("WRITE_BATCHES", emporium_api::config::DEFAULT_CART_WRITE_BATCHES);
    // CARTS=signed-in (or anonymous, or unbatched) runs one kind alone, e.g. to profile it
    let kinds = std::env::var("CARTS").unwrap_or_else(|_| "anonymous,signed-in,unbatched".to_owned());
    let selected = |kind: &str| kinds.split(',').any(|k| k.trim() == kind);
    let shop = Shop::open(clients, pool, write_batches).await;
    // the simpler design beside it: every signed-in change its own statement and commit
    let unbatched = if selected("unbatched") { Some(Shop::open(clients, pool, 0).await) } else { None };

    println!(
        "cart benchmark: {clients} concurrent clients x {ops} requests (add / update alternating, after {warmup} unmeasured each), API in-process, one keep-alive connection per client when saturated (paced: more when a request falls due before the last is answered); signed-in changes batched {write_batches} at a time"
    );
    let offered = Offered::from_env();
    let mut results: Vec<KindRun> = Vec::new();
    let kinds_to_run = [
        ("anonymous", "anonymous (Redis)", Some(&shop), true),
        ("signed-in", "signed-in (Postgres, batched)", Some(&shop), false),
        ("unbatched", "signed-in (Postgres, one per statement)", unbatched.as_ref(), false),
    ];
    // Rounds interleave the kinds, so that the machine's drift over minutes falls on all of them.
    for round in 1..=rounds {
        for (kind, name, shop, anonymous) in kinds_to_run {
            let Some(shop) = shop.filter(|_| selected(kind)) else { continue };
            let identities = if anonymous { &shop.sessions } else { &shop.tokens };
            // kept across this kind's runs in a round, as a shopper's browser keeps its connections
            let connections: Vec<Connections> = identities.iter().map(|_| Connections::new(&shop.app.address)).collect();
            // Unmeasured first: the pool's Postgres backends compile `cart_changes()` and fill
            // their caches, and the clients open their connections, once per process, not per
            // request a shopper makes.
            run(Pace::Saturate, warmup, &shop.products, identities, &connections).await;
            let saturated = run(Pace::Saturate, ops, &shop.products, identities, &connections).await;
            let mut paced = Vec::new();
            for offer in &offered {
                let pace = offer.pace(saturated.per_second());
                let label = offer.describe(pace, saturated.per_second());
                paced.push((label, run(pace, ops, &shop.products, identities, &connections).await));
            }
            results.push(KindRun { kind, name, round, saturated, paced });
        }
    }
    println!();
    for result in &results {
        let round = if rounds > 1 { format!(", round {}", result.round) } else { String::new() };
        result.saturated.print(&format!("{}, saturated{round}", result.name));
        for (label, figures) in &result.paced {
            figures.print(&format!("{}, {label}{round}", result.name));
        }
    }
    if rounds > 1 {
        println!();
        print_rounds_summary(&results, &offered);
    }
    // ratios within each round, where both designs ran minutes apart at most
    let ratios = |a: &str, b: &str, of: fn(&Figures) -> f64| -> Vec<f64> {
        let per_round = |kind: &str, round: usize| results.iter().find(|r| r.kind == kind && r.round == round).map(|r| &r.saturated);
        (1..=rounds).filter_map(|round| Some(of(per_round(a, round)?) / of(per_round(b, round)?))).collect()
    };
    let capacity = |f: &Figures| f.per_second();
    let p99 = |f: &Figures| f.p99.as_secs_f64();
    for (a, b, label) in [
        ("signed-in", "unbatched", "signed-in, batched / one per statement"),
        ("signed-in", "anonymous", "signed-in (batched) / anonymous"),
    ] {
        let (capacities, p99s) = (ratios(a, b, capacity), ratios(a, b, p99));
        if !capacities.is_empty() {
            println!("{label}: capacity {}x, saturated p99 {}x", range(&capacities, 2), range(&p99s, 2));
        }
    }
    println!(
        "design target: p99 <= 10 ms (saturated p99 is mostly clients / throughput queueing; the paced lines are the latency at that load)"
    );
}

/// One kind of cart in one round: saturated, then paced at each load.
struct KindRun {
    kind: &'static str,
    name: &'static str,
    round: usize,
    saturated: Figures,
    /// what was offered (see `Offered::describe`) and what came of it
    paced: Vec<(String, Figures)>,
}

/// The load of a paced run.
enum Offered {
    /// This share of the kind's capacity as measured saturated in the same round (`LOADS`).
    Share(f64),
    /// This many requests a second, whatever the capacity (`RATES`).
    Rate(f64),
}

impl Offered {
    /// `RATES` when set, else `LOADS` (see `load::latency_loads`).
    fn from_env() -> Vec<Self> {
        let rates: Vec<Self> = std::env::var("RATES")
            .map(|v| v.split(',').filter_map(|r| r.trim().parse::<f64>().ok()).filter(|r| *r > 0.0).map(Offered::Rate).collect())
            .unwrap_or_default();
        if rates.is_empty() { latency_loads().into_iter().map(Offered::Share).collect() } else { rates }
    }

    fn pace(&self, capacity_per_second: f64) -> Pace {
        match *self {
            Offered::Share(fraction) => Pace::share_of(capacity_per_second, fraction),
            Offered::Rate(rate) => Pace::Rate(rate),
        }
    }

    fn label(&self) -> String {
        match self {
            Offered::Share(fraction) => format!("{:.0}% load", fraction * 100.0),
            Offered::Rate(rate) => format!("{rate:.0}/s"),
        }
    }

    /// The label with the other side of the pair: the rate a share came to, or the share of
    /// this run's capacity a rate was.
    fn describe(&self, pace: Pace, capacity_per_second: f64) -> String {
        match self {
            Offered::Share(_) => format!("{} ({})", self.label(), pace.describe()),
            Offered::Rate(rate) => format!("{} ({:.0}% of capacity)", self.label(), rate / capacity_per_second * 100.0),
        }
    }
}

/// Per kind and load, the p99 over the rounds and how many rounds met the design's 10 ms.
fn print_rounds_summary(results: &[KindRun], offered: &[Offered]) {
    println!("over the rounds: p99 median, range, and rounds that met p99 <= 10 ms");
    // every round runs the same kinds, in the same order
    for first in results.iter().filter(|r| r.round == 1) {
        let (kind, name) = (first.kind, first.name);
        let runs: Vec<&KindRun> = results.iter().filter(|r| r.kind == kind).collect();
        let mut lines = vec![("saturated".to_owned(), runs.iter().map(|r| &r.saturated).collect::<Vec<_>>())];
        for (i, offer) in offered.iter().enumerate() {
            lines.push((offer.label(), runs.iter().map(|r| &r.paced[i].1).collect()));
        }
        for (label, figures) in lines {
            let mut p99s: Vec<Duration> = figures.iter().map(|f| f.p99).collect();
            p99s.sort();
            let met = p99s.iter().filter(|&&p99| p99 <= Duration::from_millis(10)).count();
            let median = percentile(&p99s, 0.5);
            let p99s: Vec<f64> = p99s.iter().map(|p99| p99.as_secs_f64() * 1e3).collect();
            let per_second: Vec<f64> = figures.iter().map(|f| f.per_second()).collect();
            println!(
                "{:<52} {:>13} ops/s  p99 median {:>6.2} ms, {:>15} ms  met in {met} of {}",
                format!("{name}, {label}"),
                range(&per_second, 0),
                median.as_secs_f64() * 1e3,
                range(&p99s, 2),
                p99s.len()
            );
        }
    }
}

/// "low - high" (or the one value) with `decimals` places.
fn range(values: &[f64], decimals: usize) -> String {
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if values.len() < 2 || low == high { format!("{low:.decimals$}") } else { format!("{low:.decimals$} - {high:.decimals$}") }
}

/// An API with its own database, products and shoppers: anonymous sessions and signed-in users.
struct Shop {
    app: TestApp,
    products: Vec<i64>,
    sessions: Vec<Identity>,
    tokens: Vec<Identity>,
}

impl Shop {
    async fn open(clients: usize, pool: Option<u32>, write_batches: usize) -> Self {
        let app = spawn_app_with(|config| {
            if let Some(pool) = pool {
                config.database_max_connections = pool;
            }
            config.cart_write_batches = write_batches;
            // the tokens are made before the first kind runs and must outlast the last
            config.access_token_ttl = Duration::from_secs(3600);
        })
        .await;
        let admin = app.admin_token().await;
        let category = app.create_category(&admin, "Bench", None).await;
        let mut products = Vec::new();
        for i in 0..clients.min(64) {
            products.push(app.create_product(&admin, category, &format!("BENCH-{i}"), 1_000, 1_000_000).await["id"].as_i64().unwrap());
        }
        let mut sessions = Vec::new();
        for &product in products.iter().cycle().take(clients) {
            let first = app.post("/cart/items", None, json!({ "productId": product, "quantity": 1 })).await;
            sessions.push(Identity::Session(first.headers["x-session-id"].to_str().unwrap().to_owned()));
        }
        let mut tokens = Vec::new();
        for _ in 0..clients {
            tokens.push(Identity::Token(app.register_customer().await.0));
        }
        Self { app, products, sessions, tokens }
    }
}
