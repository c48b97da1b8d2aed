//! Flash sales end to end: HTTP entry through the Redis script, claims held by
//! `FlashSaleClaimWorkflow`, payment into orders, `FlashSaleWorkflow` reconciliation.

use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::Utc;
use fred::interfaces::KeysInterface;
use reqwest::StatusCode;
use serde_json::{Value, json};
use temporalio_client::{
    WorkflowExecuteUpdateOptions, WorkflowFetchHistoryOptions, WorkflowGetResultOptions, WorkflowHistory, errors::WorkflowUpdateError,
};
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};
use tokio::sync::Semaphore;

use emporium_tests::{
    TestApp, TestResponse, count, spawn_app_with,
    worker::{TestWorker, temporal_client, unique_task_queue},
};
use emporium_workflows::flash::{
    FlashSaleClaimWorkflow, FlashSaleWorkflow,
    contract::{ClaimPayment, REFUSAL_CLAIM_EXPIRED, claim_workflow_id, sale_workflow_id},
};

struct Sale {
    app: TestApp,
    _worker: TestWorker,
    admin: String,
}

/// An API and worker whose claims are held for `claim_ttl_secs`.
async fn setup(claim_ttl_secs: u64) -> Sale {
    let queue = unique_task_queue();
    let q = queue.clone();
    let app = spawn_app_with(move |config| {
        config.task_queue = q;
        config.flash_sale_claim_ttl = Duration::from_secs(claim_ttl_secs);
    })
    .await;
    let worker = TestWorker::start(&queue, app.db().clone());
    let admin = app.admin_token().await;
    Sale { app, _worker: worker, admin }
}

impl Sale {
    /// A product with `stock` units and a live sale of `quantity` of them lasting `secs`.
    async fn sale(&self, sku: &str, stock: i64, quantity: i64, per_user: i64, admission: i64, secs: i64) -> (String, i64) {
        let category = self.app.create_category(&self.admin, &format!("Flash {sku}"), None).await;
        let product = self.app.create_product(&self.admin, category, sku, 5_000, stock).await["id"].as_i64().unwrap();
        let created = self
            .app
            .post(
                "/admin/flash-sales",
                Some(&self.admin),
                json!({
                    "productId": product,
                    "price": { "amount": 1_999, "currency": "USD" },
                    "quantity": quantity,
                    "startsAt": (Utc::now() - chrono::Duration::seconds(1)).to_rfc3339(),
                    "endsAt": (Utc::now() + chrono::Duration::seconds(secs)).to_rfc3339(),
                    "perUserLimit": per_user,
                    "admissionPerSecond": admission,
                }),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        (created.body["id"].as_str().unwrap().to_owned(), product)
    }

    async fn enter(&self, sale: &str, token: &str) -> TestResponse {
        self.app.post(&format!("/flash-sales/{sale}/enter"), Some(token), json!({})).await
    }

    async fn pay(&self, sale: &str, token: &str, claim: &str, method: &str) -> TestResponse {
        self.app
            .post(
                &format!("/flash-sales/{sale}/claims/{claim}/payment"),
                Some(token),
                json!({
                    "paymentMethod": method,
                    "shippingAddress": { "name": "Grace Hopper", "line1": "1 Harbor Rd", "city": "Arlington", "postalCode": "22201", "country": "US" },
                }),
            )
            .await
    }

    async fn admin_view(&self, sale: &str) -> Value {
        self.app.get(&format!("/admin/flash-sales/{sale}"), Some(&self.admin)).await.body
    }

    /// (available, reserved, sold).
    async fn stock(&self, product: i64) -> (i64, i64, i64) {
        let sql = |column: &str| format!("SELECT {column}::bigint AS n FROM inventory WHERE product_id = {product}");
        let db = self.app.db();
        (count(db, &sql("available")).await, count(db, &sql("reserved")).await, count(db, &sql("sold")).await)
    }

    /// What an API that died between recording a claim and starting its workflow leaves: the
    /// claim in Postgres, expired two minutes ago, its unit taken off the Redis counter, and no
    /// workflow that will ever end it. The sale must be loaded in Redis already.
    async fn abandoned_claim(&self, sale: &str, user: &str) -> uuid::Uuid {
        use sea_orm::{ConnectionTrait, DbBackend, Statement};
        let claim = uuid::Uuid::now_v7();
        let insert = format!(
            "INSERT INTO flash_sale_claims (id, sale_id, user_id, quantity, status, expires_at) \
             VALUES ('{claim}', '{sale}', '{user}', 1, 'CLAIMED', now() - interval '2 minutes')"
        );
        self.app.db().execute_raw(Statement::from_string(DbBackend::Postgres, insert)).await.expect("abandoned claim");
        let redis = emporium_tests::redis(&self.app.config.redis_url).await;
        let _: i64 = fred::interfaces::HashesInterface::hincrby(&redis, format!("{{fs:{sale}}}:sale"), "remaining", -1).await.unwrap();
        claim
    }

    async fn customers(&self, n: usize) -> Vec<(String, String)> {
        let permits = Arc::new(Semaphore::new(8));
        futures::future::join_all((0..n).map(|_| {
            let permits = permits.clone();
            async move {
                let _permit = permits.acquire().await.unwrap();
                self.app.register_customer().await
            }
        }))
        .await
    }
}

async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    for _ in 0..150 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Waits for a workflow to close and, with EMPORIUM_RECORD_HISTORIES set, saves its history.
async fn record_claim(sale: &str, user: &str, name: &str) {
    let client = temporal_client().await;
    let handle = client.get_workflow_handle::<FlashSaleClaimWorkflow>(claim_workflow_id(sale, user));
    handle.get_result(WorkflowGetResultOptions::default()).await.expect("claim workflow completes");
    if std::env::var_os("EMPORIUM_RECORD_HISTORIES").is_some() {
        let json = handle.fetch_history(WorkflowFetchHistoryOptions::default()).to_json().await.expect("history");
        std::fs::write(format!("{}/tests/histories/{name}.json", env!("CARGO_MANIFEST_DIR")), json).expect("write history");
    }
}

#[tokio::test]
async fn two_thousand_entries_from_five_hundred_users_win_exactly_the_hundred_units() {
    let shop = setup(120).await;
    let (sale, product) = shop.sale("STAMPEDE", 150, 100, 1, 0, 300).await;
    assert_eq!(shop.stock(product).await, (50, 100, 0), "the sale's units are set aside");
    let users = shop.customers(500).await;

    let permits = Arc::new(Semaphore::new(128));
    let attempts = futures::future::join_all((0..2_000).map(|i| {
        let permits = permits.clone();
        let token = users[i % 500].0.clone();
        let sale = sale.clone();
        let shop = &shop;
        async move {
            let _permit = permits.acquire().await.unwrap();
            let response = shop.enter(&sale, &token).await;
            (i % 500, response)
        }
    }))
    .await;

    let mut claims: HashMap<usize, String> = HashMap::new();
    for (user, response) in &attempts {
        match response.status {
            StatusCode::OK => {
                let claim = response.body["claimId"].as_str().unwrap().to_owned();
                // a user's repeated entries return their one claim
                assert_eq!(claims.entry(*user).or_insert_with(|| claim.clone()), &claim);
            }
            StatusCode::CONFLICT => assert!(["sold_out", "purchase_limit_reached"].contains(&response.code()), "{}", response.text),
            other => panic!("unexpected {other}: {}", response.text),
        }
    }
    assert_eq!(claims.len(), 100, "exactly one winner per unit");
    let db = shop.app.db();
    assert_eq!(count(db, &format!("SELECT COUNT(*) AS n FROM flash_sale_claims WHERE sale_id = '{sale}'")).await, 100);
    assert_eq!(
        count(db, &format!("SELECT COUNT(*) AS n FROM (SELECT user_id FROM flash_sale_claims WHERE sale_id = '{sale}' GROUP BY user_id HAVING SUM(quantity) > 1) t")).await,
        0,
        "no user above their limit"
    );
    let view = shop.admin_view(&sale).await;
    assert_eq!(view["remaining"], 0);
    assert_eq!(view["claimed"], 100);
    let metrics = shop.app.get("/metrics", None).await.text;
    assert!(metrics.contains("flash_sale_entries_total{outcome=\"claimed\"} 100"), "{metrics}");
}

#[tokio::test]
async fn the_sixth_attempt_in_a_minute_is_rate_limited_with_retry_after() {
    let shop = setup(120).await;
    let (sale, _) = shop.sale("RATE", 10, 1, 1, 0, 300).await;
    let users = shop.customers(2).await;
    assert_eq!(shop.enter(&sale, &users[0].0).await.status, StatusCode::OK);
    for _ in 0..5 {
        assert_eq!(shop.enter(&sale, &users[1].0).await.code(), "sold_out");
    }
    let sixth = shop.enter(&sale, &users[1].0).await;
    assert_eq!(sixth.status, StatusCode::TOO_MANY_REQUESTS, "{}", sixth.text);
    assert_eq!(sixth.code(), "rate_limited");
    let retry_after: u64 = sixth.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
}

#[tokio::test]
async fn an_expired_claim_returns_its_unit_and_a_later_user_wins_it() {
    // claims held 5 s: the renewed claim must still be held after a payment attempt and a
    // Temporal update on a loaded machine
    let shop = setup(5).await;
    let (sale, product) = shop.sale("EXPIRE", 5, 1, 1, 0, 300).await;
    let users = shop.customers(2).await;
    let first = shop.enter(&sale, &users[0].0).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let claim = first.body["claimId"].as_str().unwrap().to_owned();
    assert_eq!(shop.enter(&sale, &users[1].0).await.code(), "sold_out");

    let db = shop.app.db();
    wait_until("the claim to expire", || async {
        count(db, &format!("SELECT COUNT(*) AS n FROM flash_sale_claims WHERE id = '{claim}' AND status = 'EXPIRED'")).await == 1
    })
    .await;
    record_claim(&sale, &users[0].1, "flash_claim_expired").await;
    assert_eq!(shop.pay(&sale, &users[0].0, &claim, "pm_card_visa").await.code(), "claim_expired");

    // the same buyer wins the unit again: a payment for the expired claim must not pay the new
    // one, whose workflow has the same id
    let again = shop.enter(&sale, &users[0].0).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    let renewed = again.body["claimId"].as_str().unwrap().to_owned();
    assert_ne!(renewed, claim);
    assert_eq!(shop.pay(&sale, &users[0].0, &claim, "pm_card_visa").await.code(), "claim_expired");
    // and the workflow itself refuses it, should the expired claim look open to the API
    let handle = temporal_client().await.get_workflow_handle::<FlashSaleClaimWorkflow>(claim_workflow_id(&sale, &users[0].1));
    let stale = ClaimPayment { request: crate::checkout::card_payment(), claim_id: Some(claim.clone()) };
    let options = WorkflowExecuteUpdateOptions::builder().update_id(format!("stale-{claim}")).build();
    match handle.execute_update(FlashSaleClaimWorkflow::submit_payment, stale, options).await {
        Err(WorkflowUpdateError::Failed(failure)) => assert_eq!(failure.message, REFUSAL_CLAIM_EXPIRED),
        other => panic!("a payment for the expired claim was not refused: {other:?}"),
    }
    assert_eq!(count(db, &format!("SELECT COUNT(*) AS n FROM flash_sale_claims WHERE id = '{renewed}' AND status = 'CLAIMED'")).await, 1);
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM payments WHERE flash_claim_id IS NOT NULL").await, 0, "nothing charged");
    wait_until("the renewed claim to expire", || async {
        count(db, &format!("SELECT COUNT(*) AS n FROM flash_sale_claims WHERE id = '{renewed}' AND status = 'EXPIRED'")).await == 1
    })
    .await;

    let second = shop.enter(&sale, &users[1].0).await;
    assert_eq!(second.status, StatusCode::OK, "the returned unit is won again: {}", second.text);
    let paid = shop.pay(&sale, &users[1].0, second.body["claimId"].as_str().unwrap(), "pm_card_visa").await;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.text);
    assert_eq!(shop.stock(product).await, (4, 0, 1));
    let view = shop.admin_view(&sale).await;
    assert_eq!((view["sold"].as_i64(), view["expiredClaims"].as_i64(), view["remaining"].as_i64()), (Some(1), Some(2), Some(0)));
}

#[tokio::test]
async fn paid_claims_become_orders_and_reconciliation_returns_the_rest() {
    // Claims held 6 s, the sale open 15 s: long enough for three entries and two payments on a
    // loaded machine (with 2 s claims and a 4 s sale, a loaded CI run saw the sale end first),
    // and the unpaid claim still expires before the end that reconciliation waits for.
    let shop = setup(6).await;
    let (sale, product) = shop.sale("PAID", 20, 5, 1, 0, 15).await;
    let users = shop.customers(4).await;
    let mut orders = Vec::new();
    for (i, (token, _)) in users[..3].iter().enumerate() {
        let entry = shop.enter(&sale, token).await;
        assert_eq!(entry.status, StatusCode::OK, "{}", entry.text);
        let claim = entry.body["claimId"].as_str().unwrap().to_owned();
        if i < 2 {
            let paid = shop.pay(&sale, token, &claim, "pm_card_visa").await;
            assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.text);
            assert_eq!(paid.body["items"][0]["unitPrice"]["amount"], 1_999, "the sale price");
            assert_eq!(paid.body["status"], "PLACED");
            // paying again is the same order, one charge
            let again = shop.pay(&sale, token, &claim, "pm_card_visa").await;
            assert_eq!(again.body["orderId"], paid.body["orderId"]);
            orders.push(paid.body["orderId"].as_str().unwrap().to_owned());
        }
    }
    record_claim(&sale, &users[0].1, "flash_claim_paid").await;
    let db = shop.app.db();
    let abandoned = shop.abandoned_claim(&sale, &users[3].1).await;
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM payments WHERE flash_claim_id IS NOT NULL AND status = 'COMPLETED'").await, 2);
    assert_eq!(shop.stock(product).await, (15, 3, 2), "2 sold, 3 still set aside");
    // the third claim expires, the sale ends, reconciliation returns the 3 unsold units
    let client = temporal_client().await;
    let handle = client.get_workflow_handle::<FlashSaleWorkflow>(sale_workflow_id(&sale));
    let outcome = tokio::time::timeout(Duration::from_secs(120), handle.get_result(WorkflowGetResultOptions::default()))
        .await
        .expect("the sale is reconciled despite the abandoned claim")
        .expect("sale workflow completes");
    assert!(outcome.reconciled && outcome.consistent, "{outcome:?}");
    assert_eq!(count(db, &format!("SELECT COUNT(*) AS n FROM flash_sale_claims WHERE id = '{abandoned}' AND status = 'EXPIRED'")).await, 1);
    assert_eq!((outcome.paid_claims, outcome.returned_to_stock), (2, 3));
    if std::env::var_os("EMPORIUM_RECORD_HISTORIES").is_some() {
        let json = handle.fetch_history(WorkflowFetchHistoryOptions::default()).to_json().await.expect("history");
        std::fs::write(format!("{}/tests/histories/flash_sale_reconciled.json", env!("CARGO_MANIFEST_DIR")), json).expect("write history");
    }
    assert_eq!(shop.stock(product).await, (18, 0, 2), "units stocked = available + reserved + sold");
    let view = shop.admin_view(&sale).await;
    assert_eq!(view["lifecycle"], "RECONCILED");
    assert_eq!(view["reconciliation"]["consistent"], true);
    assert_eq!(view["reconciliation"]["redisTaken"], 2);
    assert_eq!(view["reconciliation"]["orders"], 2);
    assert_eq!(view["reconciliation"]["returnedToStock"], 3);
    assert_eq!(view["reconciliation"]["expiredClaims"], 2, "the unpaid claim and the abandoned one");
    assert_eq!(
        count(
            db,
            &format!("SELECT COUNT(*) AS n FROM orders WHERE id IN ('{}', '{}') AND flash_claim_id IS NOT NULL", orders[0], orders[1])
        )
        .await,
        2
    );
    assert_eq!(shop.app.get(&format!("/flash-sales/{sale}"), None).await.body["status"], "ended");
    assert_eq!(shop.enter(&sale, &users[2].0).await.code(), "sale_ended");
}

#[tokio::test]
async fn redis_losing_the_sale_mid_way_never_oversells() {
    let shop = setup(120).await;
    let (sale, _) = shop.sale("AMNESIA", 20, 10, 1, 0, 300).await;
    let users = shop.customers(30).await;
    for (token, _) in &users[..6] {
        assert_eq!(shop.enter(&sale, token).await.status, StatusCode::OK);
    }
    // Redis restarts without persistence: every key of the sale is gone
    let redis = emporium_tests::redis(&shop.app.config.redis_url).await;
    let forget_everything = || async {
        use fred::interfaces::ClientLike;
        let keys: Vec<String> = redis.custom(fred::cmd!("KEYS"), vec![format!("{{fs:{sale}}}*")]).await.unwrap();
        assert!(!keys.is_empty());
        let _: i64 = redis.del(keys).await.unwrap();
    };
    forget_everything().await;

    // the next buyer finds the sale gone: the counter is rebuilt from the claims in Postgres,
    // 10 − 6 − the one this buyer wins
    let first = shop.enter(&sale, &users[6].0).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(shop.app.get(&format!("/flash-sales/{sale}"), None).await.body["remaining"], 3, "rebuilt, not from scratch");
    let attempts: Option<i64> = redis.get(format!("{{fs:{sale}}}:attempts:{}", users[6].1)).await.unwrap();
    assert_eq!(attempts, Some(1), "finding the sale gone and entering after the rebuild is one attempt");
    forget_everything().await;

    // the next 23 buyers arrive at once: one of them rebuilds the counter, the rest wait for it
    let entries = futures::future::join_all(users[7..].iter().map(|(token, _)| shop.enter(&sale, token))).await;
    let mut won = 7;
    for entry in &entries {
        match entry.status {
            StatusCode::OK => won += 1,
            _ => assert_eq!(entry.code(), "sold_out", "{}", entry.text),
        }
    }
    assert_eq!(won, 10, "the counter was rebuilt from Postgres: 4 more, not 10");
    assert_eq!(count(shop.app.db(), &format!("SELECT COUNT(*) AS n FROM flash_sale_claims WHERE sale_id = '{sale}'")).await, 10);
    let metrics = shop.app.get("/metrics", None).await.text;
    assert!(metrics.contains("flash_sale_counter_rebuilds_total 2\n"), "one rebuild for the whole stampede: {metrics}");

    // a counter that believes in a unit Postgres does not have (a rebuild that raced a claim's
    // commit): Postgres refuses the claim, and the counter loses the phantom unit
    let _: i64 = fred::interfaces::HashesInterface::hset(&redis, format!("{{fs:{sale}}}:sale"), ("remaining", 1)).await.unwrap();
    let (late, _) = shop.app.register_customer().await;
    assert_eq!(shop.enter(&sale, &late).await.code(), "sold_out");
    assert_eq!(shop.app.get(&format!("/flash-sales/{sale}"), None).await.body["remaining"], 0, "the phantom unit is gone");
    assert_eq!(count(shop.app.db(), &format!("SELECT COUNT(*) AS n FROM flash_sale_claims WHERE sale_id = '{sale}'")).await, 10);
}

#[tokio::test]
async fn a_claim_whose_workflow_never_started_does_not_hold_its_buyer_at_the_limit() {
    let shop = setup(120).await;
    let (sale, _) = shop.sale("ORPHAN", 10, 2, 1, 0, 300).await;
    let users = shop.customers(1).await;
    let (token, user) = &users[0];
    // The sale's workflow loads it into Redis in the background from Postgres's claims: wait
    // for that before making the claim below in both, or the load would count it too (or the
    // decrement would make a hash with nothing but the counter).
    let redis = emporium_tests::redis(&shop.app.config.redis_url).await;
    wait_until("the sale to be loaded into Redis", || async {
        let starts: Option<String> =
            fred::interfaces::HashesInterface::hget(&redis, format!("{{fs:{sale}}}:sale"), "starts_ms").await.unwrap();
        starts.is_some()
    })
    .await;
    let abandoned = shop.abandoned_claim(&sale, user).await;
    // and the buyer's claim in Redis, which holds them at their limit
    let expired_ms = (Utc::now() - chrono::Duration::minutes(2)).timestamp_millis();
    let _: i64 = fred::interfaces::HashesInterface::hset(
        &redis,
        format!("{{fs:{sale}}}:user:{user}"),
        vec![("claim", abandoned.to_string()), ("claim_expires_ms", expired_ms.to_string()), ("units", "1".to_owned())],
    )
    .await
    .unwrap();

    let entry = shop.enter(&sale, token).await;
    assert_eq!(entry.status, StatusCode::OK, "the abandoned claim is expired and the buyer wins again: {}", entry.text);
    assert_ne!(entry.body["claimId"], abandoned.to_string());
    let db = shop.app.db();
    assert_eq!(count(db, &format!("SELECT COUNT(*) AS n FROM flash_sale_claims WHERE id = '{abandoned}' AND status = 'EXPIRED'")).await, 1);
    assert_eq!(count(db, &format!("SELECT COUNT(*) AS n FROM flash_sale_claims WHERE sale_id = '{sale}' AND status = 'CLAIMED'")).await, 1);
    // the abandoned unit went back before the new claim took one: 2 − 1
    assert_eq!(shop.app.get(&format!("/flash-sales/{sale}"), None).await.body["remaining"], 1);
}

#[tokio::test]
async fn the_waiting_room_admits_in_arrival_order_and_positions_never_go_back() {
    let shop = setup(120).await;
    let (sale, _) = shop.sale("QUEUE", 20, 10, 1, 1, 300).await;
    let users = shop.customers(4).await;
    // one admission a second: within one second, the first is admitted and the rest queue in order
    let mut positions = Vec::new();
    for (token, _) in &users {
        let entry = shop.enter(&sale, token).await;
        positions.push((entry.status, entry.body["position"].as_i64()));
    }
    let queued: Vec<i64> = positions.iter().filter_map(|(_, p)| *p).collect();
    assert!(positions.iter().any(|(s, _)| *s == StatusCode::OK), "{positions:?}");
    assert!(queued.windows(2).all(|w| w[0] < w[1]), "arrival order: {positions:?}");
    let metrics = shop.app.get("/metrics", None).await.text;
    assert!(
        metrics.contains(&format!("flash_sale_queue_length{{sale=\"{sale}\"}} {}\n", queued.len())),
        "the queue length is on /metrics: {metrics}"
    );

    // everyone polls until admitted, the last to arrive first; nobody overtakes anyone queued
    // before them
    let mut admitted_order: Vec<usize> = (0..users.len()).filter(|&i| positions[i].0 == StatusCode::OK).collect();
    let mut last_position: HashMap<usize, i64> = HashMap::new();
    for _ in 0..60 {
        for (i, (token, _)) in users.iter().enumerate().rev() {
            if admitted_order.contains(&i) {
                continue;
            }
            let entry = shop.enter(&sale, token).await;
            match entry.status {
                StatusCode::OK => admitted_order.push(i),
                StatusCode::ACCEPTED => {
                    let position = entry.body["position"].as_i64().unwrap();
                    if let Some(previous) = last_position.insert(i, position) {
                        assert!(position <= previous, "user {i} went back from {previous} to {position}");
                    }
                }
                other => panic!("unexpected {other}: {}", entry.text),
            }
        }
        if admitted_order.len() == users.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(admitted_order, vec![0, 1, 2, 3], "first come, first served");
    assert_eq!(shop.admin_view(&sale).await["queued"], 0);
}

#[tokio::test]
async fn a_long_queue_is_told_to_come_back_before_its_place_would_lapse() {
    let shop = setup(120).await;
    let (sale, _) = shop.sale("LONGQUEUE", 50, 40, 1, 1, 300).await;
    let users = shop.customers(40).await;
    let mut last = None;
    for (token, _) in &users {
        let entry = shop.enter(&sale, token).await;
        assert!([StatusCode::OK, StatusCode::ACCEPTED].contains(&entry.status), "{}", entry.text);
        if entry.status == StatusCode::ACCEPTED {
            last = Some((entry.body["position"].as_i64().unwrap(), entry.body["retryAfterMs"].as_i64().unwrap()));
        }
    }
    // at one admission a second, the 30th in line would wait about 30 s: longer than a place is
    // kept without a poll
    let (position, retry_after_ms) = last.expect("the room queued");
    assert!(position > 30, "position {position}");
    let idle = emporium_entities::flash_redis::QUEUE_IDLE_MS as i64;
    assert!((1..=idle / 2).contains(&retry_after_ms), "retry after {retry_after_ms} ms with a place kept {idle} ms");
}

#[tokio::test]
async fn bad_flash_sale_input_is_refused_and_changes_nothing() {
    let shop = setup(120).await;
    let category = shop.app.create_category(&shop.admin, "Flash bad", None).await;
    let product = shop.app.create_product(&shop.admin, category, "FLASH-BAD", 5_000, 5).await["id"].as_i64().unwrap();
    let now = Utc::now();
    let body = |quantity: i64, starts: i64, ends: i64, per_user: i64, currency: &str| {
        json!({
            "productId": product, "price": { "amount": 100, "currency": currency }, "quantity": quantity,
            "startsAt": (now + chrono::Duration::seconds(starts)).to_rfc3339(),
            "endsAt": (now + chrono::Duration::seconds(ends)).to_rfc3339(), "perUserLimit": per_user,
        })
    };
    for (payload, status, code) in [
        (body(6, 0, 60, 1, "USD"), StatusCode::CONFLICT, "insufficient_stock"),
        (body(0, 0, 60, 1, "USD"), StatusCode::BAD_REQUEST, "invalid_flash_sale"),
        (body(1, 60, 30, 1, "USD"), StatusCode::BAD_REQUEST, "invalid_flash_sale"),
        (body(1, -120, -60, 1, "USD"), StatusCode::BAD_REQUEST, "invalid_flash_sale"),
        (body(1, 0, 60, 0, "USD"), StatusCode::BAD_REQUEST, "invalid_flash_sale"),
        (body(1, 0, 60, 1, "EUR"), StatusCode::CONFLICT, "currency_mismatch"),
    ] {
        let refused = shop.app.post("/admin/flash-sales", Some(&shop.admin), payload.clone()).await;
        assert_eq!((refused.status, refused.code()), (status, code), "{payload}: {}", refused.text);
    }
    let (customer, _) = shop.app.register_customer().await;
    assert_eq!(shop.app.post("/admin/flash-sales", Some(&customer), body(1, 0, 60, 1, "USD")).await.code(), "forbidden");
    assert_eq!(count(shop.app.db(), "SELECT COUNT(*) AS n FROM flash_sales").await, 0);
    assert_eq!(shop.stock(product).await, (5, 0, 0));

    let unknown = "00000000-0000-0000-0000-000000000000";
    assert_eq!(shop.app.get(&format!("/flash-sales/{unknown}"), None).await.code(), "sale_not_found");
    assert_eq!(shop.enter(unknown, &customer).await.code(), "sale_not_found");
    // entries to a sale Redis does not have reach Postgres: they count against the rate limit
    for _ in 0..4 {
        assert_eq!(shop.enter(unknown, &customer).await.code(), "sale_not_found");
    }
    assert_eq!(shop.enter(unknown, &customer).await.code(), "rate_limited");
    assert_eq!(shop.app.post(&format!("/flash-sales/{unknown}/enter"), None, json!({})).await.status, StatusCode::UNAUTHORIZED);

    // a sale that has not started
    let upcoming = shop.app.post("/admin/flash-sales", Some(&shop.admin), body(1, 3600, 7200, 1, "USD")).await;
    assert_eq!(upcoming.status, StatusCode::CREATED, "{}", upcoming.text);
    let id = upcoming.body["id"].as_str().unwrap();
    assert_eq!(shop.app.get(&format!("/flash-sales/{id}"), None).await.body["status"], "upcoming");
    assert_eq!(shop.enter(id, &customer).await.code(), "sale_not_started");
    assert_eq!(shop.pay(id, &customer, unknown, "pm_card_visa").await.code(), "claim_not_found");
}

#[tokio::test]
async fn committed_flash_sale_histories_replay_with_the_current_code() {
    let directory = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/histories");
    let options = WorkflowReplayerOptions::new()
        .register_workflow::<FlashSaleClaimWorkflow>()
        .expect("register")
        .register_workflow::<FlashSaleWorkflow>()
        .expect("register")
        .build();
    let replayer = WorkflowReplayer::new(options).expect("replayer");
    // flash_claim_paid_before_claim_id: recorded before a payment named its claim
    for name in ["flash_claim_paid", "flash_claim_paid_before_claim_id", "flash_claim_expired", "flash_sale_reconciled"] {
        let bytes =
            std::fs::read(format!("{directory}/{name}.json")).unwrap_or_else(|_| panic!("tests/histories/{name}.json is committed"));
        let history = WorkflowHistory::from_json(&bytes).expect("SDK history JSON");
        replayer.replay_workflow(history).await.unwrap_or_else(|e| panic!("{name} does not replay: {e}"));
    }
}
