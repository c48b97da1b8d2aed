//! Checkout benchmark: N checkouts (POST /checkout, then POST /checkout/{id}/payment until the
//! order exists) from concurrent clients through the API and CheckoutWorkflow, next to the same
//! saga steps run as plain async Rust (the same activity code, no Temporal, no HTTP) on the same
//! database in the same run. The difference is the price of durability.
//!
//!     scripts/bench.sh checkout          (CHECKOUTS=200 CLIENTS=8 by default)

// the allocator the API and worker binaries run with
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use reqwest::StatusCode;
use serde_json::json;
use temporalio_client::WorkflowFetchHistoryOptions;

use emporium_activities::{CheckoutActivities, PaymentActivities, SandboxGateway};
use emporium_tests::{
    TestApp, spawn_app_with,
    worker::{TestWorker, temporal_client, unique_task_queue},
};
use emporium_workflows::checkout::{
    CheckoutWorkflow,
    contract::{ChargeInput, ChargeResult, CreateOrderInput, ReserveCheckoutInput, ShippingAddress, charge_key, workflow_id},
};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Figures {
    count: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Figures {
    fn per_second(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
    }

    fn print(&self, name: &str) {
        println!(
            "{name:<34} {:>5} checkouts  {:>7.1} /s  p50 {:>7.1} ms  p99 {:>7.1} ms",
            self.count,
            self.per_second(),
            self.percentile(0.5).as_secs_f64() * 1e3,
            self.percentile(0.99).as_secs_f64() * 1e3
        );
    }
}

/// Runs `job` once per item with `clients` concurrent workers, timing each.
async fn drive<T, F, Fut>(items: Vec<T>, clients: usize, job: F) -> Figures
where
    T: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let count = items.len();
    let queue = Arc::new(Mutex::new(items));
    let job = Arc::new(job);
    let started = Instant::now();
    let tasks = (0..clients).map(|_| {
        let queue = queue.clone();
        let job = job.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let Some(item) = queue.lock().unwrap().pop() else { break };
                let sent = Instant::now();
                job(item).await;
                latencies.push(sent.elapsed());
            }
            latencies
        })
    });
    let mut latencies = Vec::new();
    for task in futures::future::join_all(tasks).await {
        latencies.extend(task.expect("client task"));
    }
    Figures { count, elapsed: started.elapsed(), latencies }
}

async fn shoppers(app: &TestApp, product: i64, n: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let (token, user) = app.register_customer().await;
        let added = app.post("/cart/items", Some(&token), json!({ "productId": product, "quantity": 1 })).await;
        assert_eq!(added.status, StatusCode::OK);
        out.push((token, user));
    }
    out
}

fn address() -> serde_json::Value {
    json!({ "name": "Bench", "line1": "1 Load St", "city": "Leeds", "postalCode": "LS1 1AA", "country": "GB" })
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let checkouts = env_or("CHECKOUTS", 200);
    let clients = env_or("CLIENTS", 8);
    let queue = unique_task_queue();
    let q = queue.clone();
    let app = Arc::new(spawn_app_with(move |config| config.task_queue = q).await);
    let worker = TestWorker::start(&queue, app.db().clone());
    let admin = app.admin_token().await;
    let category = app.create_category(&admin, "Bench", None).await;
    let product = app.create_product(&admin, category, "BENCH-CHECKOUT", 1_999, 10_000_000).await["id"].as_i64().unwrap();
    println!("preparing {} shoppers with a one-line cart ...", 2 * checkouts);
    let durable_shoppers = shoppers(&app, product, checkouts).await;
    let plain_shoppers = shoppers(&app, product, checkouts).await;

    println!("checkout benchmark: {checkouts} checkouts, {clients} concurrent clients, API + worker in-process");
    let last_checkout = Arc::new(Mutex::new(String::new()));
    let durable = {
        let app = app.clone();
        let last = last_checkout.clone();
        drive(durable_shoppers, clients, move |(token, _)| {
            let app = app.clone();
            let last = last.clone();
            async move {
                let started = app.post("/checkout", Some(&token), json!({})).await;
                assert_eq!(started.status, StatusCode::CREATED, "{}", started.text);
                let id = started.body["checkoutId"].as_str().unwrap().to_owned();
                let paid = app
                    .post(
                        &format!("/checkout/{id}/payment"),
                        Some(&token),
                        json!({ "paymentMethod": "pm_card_visa", "shippingAddress": address() }),
                    )
                    .await;
                assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.text);
                *last.lock().unwrap() = id;
            }
        })
        .await
    };

    let db = app.db().clone();
    let steps = Arc::new(CheckoutActivities::new(db.clone(), emporium_tests::redis(&app.config.redis_url).await));
    let payments = Arc::new(PaymentActivities::new(db.clone(), Arc::new(SandboxGateway::new(db.clone()))));
    let plain = drive(plain_shoppers, clients, move |(_, user)| {
        let steps = steps.clone();
        let payments = payments.clone();
        async move {
            let checkout_id = uuid::Uuid::now_v7().to_string();
            let owner = workflow_id(&checkout_id);
            let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
            let reserved = steps
                .reserve_checkout_now(ReserveCheckoutInput {
                    checkout_id: checkout_id.clone(),
                    user_id: user.clone(),
                    owner: owner.clone(),
                    reserved_until_ms: now_ms + 600_000,
                })
                .await
                .expect("reserve");
            let charge = ChargeInput {
                checkout_id: checkout_id.clone(),
                idempotency_key: charge_key(&checkout_id),
                amount_minor: reserved.totals.total_minor,
                currency: reserved.totals.currency.clone(),
                payment_method: "pm_card_visa".to_owned(),
                flash_claim_id: None,
            };
            let ChargeResult::Charged { payment_id } = payments.charge_payment_now(charge).await.expect("charge") else {
                panic!("declined")
            };
            steps
                .create_order_now(CreateOrderInput {
                    checkout_id,
                    user_id: user.clone(),
                    owner,
                    payment_id,
                    lines: reserved.lines,
                    totals: reserved.totals,
                    shipping_address: ShippingAddress {
                        name: "Bench".into(),
                        line1: "1 Load St".into(),
                        city: "Leeds".into(),
                        postal_code: "LS1 1AA".into(),
                        country: "GB".into(),
                    },
                })
                .await
                .expect("order");
        }
    })
    .await;

    let events = {
        let client = temporal_client().await;
        let id = last_checkout.lock().unwrap().clone();
        let history =
            client.get_workflow_handle::<CheckoutWorkflow>(workflow_id(&id)).fetch_history(WorkflowFetchHistoryOptions::default());
        history.into_events().await.map(|e| e.len()).unwrap_or(0)
    };
    durable.print("durable (API + CheckoutWorkflow)");
    plain.print("plain async Rust (same steps)");
    println!(
        "durable / plain: throughput {:.2}x, p50 {:.2}x, p99 {:.2}x; {events} history events per checkout",
        durable.per_second() / plain.per_second(),
        durable.percentile(0.5).as_secs_f64() / plain.percentile(0.5).as_secs_f64(),
        durable.percentile(0.99).as_secs_f64() / plain.percentile(0.99).as_secs_f64(),
    );
    worker.stop();
}
