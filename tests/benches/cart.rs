//! Cart add/update benchmark: throughput and p50/p99 latency over HTTP with concurrent clients,
//! for anonymous carts (Redis) and signed-in carts (Postgres + Redis cache), side by side.
//!
//!     scripts/bench.sh cart            (CLIENTS=32 OPS=1000 by default; CARTS=signed-in for one kind)

// the allocator the API and worker binaries run with
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::{Method, StatusCode, header::HeaderName};
use serde_json::json;

use emporium_tests::{TestApp, load::LoadClient, spawn_app_with};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Figures {
    ops: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Figures {
    fn per_second(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    fn print(&self, name: &str) {
        println!(
            "{name:<22} {:>8} ops  {:>9.0} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
            self.ops,
            self.per_second(),
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.max.as_secs_f64() * 1e3
        );
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Each client alternates "add 1" and "set quantity to 1" on its own line, on its own
/// keep-alive connection.
async fn run(app: &TestApp, clients: usize, ops: usize, products: &[i64], identities: Vec<Identity>) -> Figures {
    let started = Instant::now();
    let tasks = identities.into_iter().enumerate().map(|(i, identity)| {
        let mut client = LoadClient::new(&app.address);
        let product = products[i % products.len()];
        let add = Bytes::from(json!({ "productId": product, "quantity": 1 }).to_string());
        let set = Bytes::from(json!({ "quantity": 1 }).to_string());
        let item = format!("/cart/items/{product}");
        tokio::spawn(async move {
            let session = HeaderName::from_static("x-session-id");
            let mut latencies = Vec::with_capacity(ops);
            for op in 0..ops {
                let (method, path, body) =
                    if op % 2 == 0 { (Method::POST, "/cart/items", add.clone()) } else { (Method::PATCH, item.as_str(), set.clone()) };
                let sent = Instant::now();
                let (status, _) = match &identity {
                    Identity::Token(token) => client.send(method, path, Some(token), &[], Some(body)).await,
                    Identity::Session(id) => client.send(method, path, None, &[(session.clone(), id)], Some(body)).await,
                };
                latencies.push(sent.elapsed());
                assert_eq!(status, StatusCode::OK, "cart write failed");
            }
            latencies
        })
    });
    let mut all: Vec<Duration> = Vec::with_capacity(clients * ops);
    for task in futures::future::join_all(tasks).await {
        all.extend(task.expect("client task"));
    }
    let elapsed = started.elapsed();
    all.sort();
    Figures { ops: all.len(), elapsed, p50: percentile(&all, 0.50), p99: percentile(&all, 0.99), max: *all.last().unwrap() }
}

enum Identity {
    Token(String),
    Session(String),
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let clients = env_or("CLIENTS", 32);
    let ops = env_or("OPS", 1000);
    // DB_POOL: the API's Postgres connections (the tests' default otherwise)
    let pool = std::env::var("DB_POOL").ok().and_then(|v| v.parse::<u32>().ok());
    let app = spawn_app_with(|config| {
        if let Some(pool) = pool {
            config.database_max_connections = pool;
        }
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

    // CARTS=signed-in (or anonymous) runs one kind alone, e.g. to profile it
    let kinds = std::env::var("CARTS").unwrap_or_else(|_| "anonymous,signed-in".to_owned());
    println!("cart benchmark: {clients} concurrent clients x {ops} requests (add / update alternating), API in-process, one keep-alive connection per client");
    let anonymous = match kinds.contains("anonymous") {
        true => Some(run(&app, clients, ops, &products, sessions).await),
        false => None,
    };
    let signed_in = match kinds.contains("signed-in") {
        true => Some(run(&app, clients, ops, &products, tokens).await),
        false => None,
    };
    if let Some(figures) = &anonymous {
        figures.print("anonymous (Redis)");
    }
    if let Some(figures) = &signed_in {
        figures.print("signed-in (Postgres)");
    }
    if let (Some(anonymous), Some(signed_in)) = (anonymous, signed_in) {
        println!(
            "signed-in / anonymous: throughput {:.2}x, p99 {:.2}x   (design target: p99 <= 10 ms)",
            signed_in.per_second() / anonymous.per_second(),
            signed_in.p99.as_secs_f64() / anonymous.p99.as_secs_f64()
        );
    }
}
