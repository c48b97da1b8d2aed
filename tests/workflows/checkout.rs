//! Checkout end to end: HTTP API → CheckoutWorkflow on a worker in this process → Postgres.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use temporalio_client::{WorkflowExecuteUpdateOptions, WorkflowFetchHistoryOptions, WorkflowGetResultOptions, WorkflowHistory};
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};

use emporium_activities::Webhook;
use emporium_tests::{
    TestApp, TestResponse, count, spawn_app_with,
    worker::{TestWorker, temporal_client, unique_task_queue},
};
use emporium_worker::WorkerDependencies;
use emporium_workflows::checkout::{
    CheckoutWorkflow,
    contract::{PaymentOutcome, PaymentRequest, ShippingAddress, workflow_id},
};

pub(crate) struct Shop {
    pub(crate) app: TestApp,
    pub(crate) worker: Option<TestWorker>,
    pub(crate) admin: String,
}

async fn shop(reservation_secs: u64) -> Shop {
    shop_with(reservation_secs, 30 * 24 * 3600, None).await
}

/// A shop whose orders accept returns for `return_window_secs` after delivery and whose
/// notifications go to `webhook` (logged without one).
pub(crate) async fn shop_with(reservation_secs: u64, return_window_secs: u64, webhook: Option<Webhook>) -> Shop {
    let queue = unique_task_queue();
    let q = queue.clone();
    let app = spawn_app_with(move |config| {
        config.task_queue = q;
        config.checkout_reservation = Duration::from_secs(reservation_secs);
        config.order_return_window = Duration::from_secs(return_window_secs);
    })
    .await;
    let mut deps = WorkerDependencies::sandbox(app.db().clone());
    deps.webhook = webhook;
    let worker = TestWorker::start_with(&queue, deps);
    let admin = app.admin_token().await;
    Shop { app, worker: Some(worker), admin }
}

impl Shop {
    pub(crate) async fn product(&self, sku: &str, price: i64, stock: i64) -> i64 {
        let category = match self.app.get("/categories", None).await.body.as_array().and_then(|c| c.first().cloned()) {
            Some(c) => c["id"].as_i64().unwrap(),
            None => self.app.create_category(&self.admin, "Checkout", None).await,
        };
        self.app.create_product(&self.admin, category, sku, price, stock).await["id"].as_i64().unwrap()
    }

    /// A new customer with `quantity` of `product` in their cart.
    pub(crate) async fn shopper(&self, product: i64, quantity: i64) -> String {
        let (token, _) = self.app.register_customer().await;
        let added = self.app.post("/cart/items", Some(&token), json!({ "productId": product, "quantity": quantity })).await;
        assert_eq!(added.status, StatusCode::OK, "{}", added.text);
        token
    }

    pub(crate) async fn checkout(&self, token: &str, key: Option<&str>) -> TestResponse {
        let mut request = self.app.client.post(format!("{}/checkout", self.app.address)).bearer_auth(token);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        TestResponse { status, headers, body: serde_json::from_str(&text).unwrap_or(Value::Null), text }
    }

    pub(crate) async fn pay(&self, token: &str, checkout_id: &str, method: &str) -> TestResponse {
        self.app
            .post(
                &format!("/checkout/{checkout_id}/payment"),
                Some(token),
                json!({
                    "paymentMethod": method,
                    "shippingAddress": { "name": "Ada Lovelace", "line1": "1 Analytical St", "city": "London", "postalCode": "N1 9GU", "country": "GB" },
                }),
            )
            .await
    }

    /// (available, reserved, sold) of a product.
    pub(crate) async fn stock(&self, product: i64) -> (i64, i64, i64) {
        let sql = |column: &str| format!("SELECT {column}::bigint AS n FROM inventory WHERE product_id = {product}");
        (
            count(self.app.db(), &sql("available")).await,
            count(self.app.db(), &sql("reserved")).await,
            count(self.app.db(), &sql("sold")).await,
        )
    }

    pub(crate) async fn wait_for_status(&self, token: &str, checkout_id: &str, status: &str) -> Value {
        let mut last = Value::Null;
        for _ in 0..100 {
            last = self.app.get(&format!("/checkout/{checkout_id}"), Some(token)).await.body;
            if last["status"] == status {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("checkout {checkout_id} never reached {status}; last {last}");
    }

    /// Waits for the workflow to close and, with EMPORIUM_RECORD_HISTORIES set, saves its
    /// history as `tests/histories/<name>.json` for the replay test.
    async fn finished(&self, checkout_id: &str, name: &str) {
        let client = temporal_client().await;
        let handle = client.get_workflow_handle::<CheckoutWorkflow>(workflow_id(checkout_id));
        handle.get_result(WorkflowGetResultOptions::default()).await.expect("checkout workflow completes");
        if std::env::var_os("EMPORIUM_RECORD_HISTORIES").is_some() {
            let json = handle.fetch_history(WorkflowFetchHistoryOptions::default()).to_json().await.expect("history");
            std::fs::write(format!("{}/tests/histories/{name}.json", env!("CARGO_MANIFEST_DIR")), json).expect("write history");
        }
    }
}

/// A card payment as `Shop::pay` sends it, for updates sent to a workflow directly.
pub(crate) fn card_payment() -> PaymentRequest {
    PaymentRequest {
        payment_method: "pm_card_visa".to_owned(),
        shipping_address: ShippingAddress {
            name: "Ada Lovelace".into(),
            line1: "1 Analytical St".into(),
            city: "London".into(),
            postal_code: "N1 9GU".into(),
            country: "GB".into(),
        },
    }
}

pub(crate) fn id_of(response: &TestResponse) -> String {
    response.body["checkoutId"].as_str().unwrap_or_else(|| panic!("no checkout id in {}", response.text)).to_owned()
}

#[tokio::test]
async fn happy_path_cart_to_order_with_stock_taken_cart_emptied_and_one_payment() {
    let shop = shop(600).await;
    let product = shop.product("HAPPY-1", 2_500, 10).await;
    let token = shop.shopper(product, 3).await;

    let started = shop.checkout(&token, None).await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.text);
    assert_eq!(started.body["status"], "AWAITING_PAYMENT");
    assert_eq!(started.body["totals"]["subtotal"]["amount"], 7_500);
    assert_eq!(started.body["totals"]["tax"]["amount"], 600);
    assert_eq!(started.body["totals"]["shipping"]["amount"], 0);
    assert_eq!(started.body["totals"]["total"]["amount"], 8_100);
    assert_eq!(started.body["lines"][0]["quantity"], 3);
    assert!(started.body["reservedUntil"].is_string());
    assert_eq!(shop.stock(product).await, (7, 3, 0), "reserved while waiting for payment");
    let checkout_id = id_of(&started);

    let paid = shop.pay(&token, &checkout_id, "pm_card_visa").await;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.text);
    assert_eq!(paid.body["status"], "PLACED");
    assert_eq!(paid.body["totals"]["total"]["amount"], 8_100);
    assert_eq!(paid.body["items"][0]["unitPrice"]["amount"], 2_500);
    let kinds: Vec<&str> = paid.body["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ORDER_CREATED", "PAYMENT_CONFIRMED"]);
    let order_id = paid.body["orderId"].as_str().unwrap().to_owned();

    assert_eq!(shop.stock(product).await, (7, 0, 3), "sold");
    assert_eq!(shop.app.get("/cart", Some(&token)).await.body["lines"], json!([]), "bought units left the cart");
    let db = shop.app.db();
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM payments WHERE status = 'COMPLETED' AND amount_minor = 8100").await, 1);
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM payments").await, 1);
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM inventory_reservations WHERE status = 'CONFIRMED'").await, 1);
    assert_eq!(shop.wait_for_status(&token, &checkout_id, "COMPLETED").await["orderId"], order_id.as_str());

    let orders = shop.app.get("/orders", Some(&token)).await;
    assert_eq!(orders.body["total"], 1);
    assert_eq!(orders.body["items"][0]["orderId"], order_id.as_str());
    let order = shop.app.get(&format!("/orders/{order_id}"), Some(&token)).await;
    assert_eq!(order.status, StatusCode::OK);
    assert_eq!(order.body["shippingAddress"]["city"], "London");

    shop.finished(&checkout_id, "checkout_completed").await;
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM notifications WHERE kind = 'ORDER_PLACED'").await, 1);
}

#[tokio::test]
async fn an_order_empties_the_cached_cart_even_when_the_api_never_answers_the_payment() {
    let shop = shop(600).await;
    let product = shop.product("CACHED-1", 1_000, 5).await;
    let token = shop.shopper(product, 2).await;
    assert_eq!(shop.app.get("/cart", Some(&token)).await.body["lines"][0]["quantity"], 2, "read once: now cached");
    let started = shop.checkout(&token, None).await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.text);

    // the payment reaches the workflow, but not through the API (a client that went away
    // before the answer looks the same to the cart)
    let handle = temporal_client().await.get_workflow_handle::<CheckoutWorkflow>(workflow_id(&id_of(&started)));
    let options = WorkflowExecuteUpdateOptions::builder().update_id("paid-elsewhere".to_owned()).build();
    let outcome = handle.execute_update(CheckoutWorkflow::submit_payment, card_payment(), options).await.expect("payment update");
    assert!(matches!(outcome, PaymentOutcome::Paid { .. }), "{outcome:?}");
    assert_eq!(shop.app.get("/cart", Some(&token)).await.body["lines"], json!([]), "the cached cart went with the order");
}

#[tokio::test]
async fn a_line_repriced_in_another_currency_is_not_charged_with_the_rest() {
    let shop = shop(600).await;
    let dollars = shop.product("CURRENCY-USD", 1_000, 5).await;
    let repriced = shop.product("CURRENCY-EUR", 2_000, 5).await;
    let token = shop.shopper(dollars, 1).await;
    shop.app.post("/cart/items", Some(&token), json!({ "productId": repriced, "quantity": 1 })).await;
    let patched = shop
        .app
        .patch(&format!("/admin/products/{repriced}"), Some(&shop.admin), json!({ "price": { "amount": 1_800, "currency": "EUR" } }))
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);

    let refused = shop.checkout(&token, None).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::CONFLICT, "out_of_stock"), "{}", refused.text);
    assert_eq!(refused.body["details"]["products"], json!([{ "productId": repriced, "requested": 1, "available": 0 }]));
    assert_eq!(shop.stock(dollars).await, (5, 0, 0), "nothing held");
    // without that line, the rest is charged in the cart's currency
    shop.app.delete(&format!("/cart/items/{repriced}"), Some(&token)).await;
    let started = shop.checkout(&token, None).await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.text);
    assert_eq!(
        (started.body["totals"]["subtotal"]["amount"].as_i64(), started.body["totals"]["subtotal"]["currency"].as_str()),
        (Some(1_000), Some("USD"))
    );
}

#[tokio::test]
async fn a_declined_card_leaves_no_order_and_returns_the_stock() {
    let shop = shop(600).await;
    let product = shop.product("DECLINE-1", 1_000, 5).await;
    let token = shop.shopper(product, 2).await;
    let checkout_id = id_of(&shop.checkout(&token, None).await);

    let declined = shop.pay(&token, &checkout_id, "pm_card_chargeDeclined").await;
    assert_eq!(declined.status, StatusCode::PAYMENT_REQUIRED, "{}", declined.text);
    assert_eq!(declined.code(), "payment_declined");
    assert_eq!(declined.body["details"]["declineCode"], "card_declined");

    let view = shop.wait_for_status(&token, &checkout_id, "DECLINED").await;
    assert_eq!(view["failure"], "card_declined");
    shop.finished(&checkout_id, "checkout_declined").await;
    assert_eq!(shop.stock(product).await, (5, 0, 0));
    let db = shop.app.db();
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM orders").await, 0);
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM payments WHERE status = 'FAILED'").await, 1);
    assert_eq!(shop.app.get("/cart", Some(&token)).await.body["itemCount"], 2, "the cart is kept for another try");
    // paying again gets the same answer, without a second charge attempt
    assert_eq!(shop.pay(&token, &checkout_id, "pm_card_visa").await.code(), "payment_declined");
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM sandbox_gateway_requests").await, 1);
}

#[tokio::test]
async fn transient_gateway_errors_are_retried_and_charge_exactly_once() {
    let shop = shop(600).await;
    let product = shop.product("FLAKY-1", 1_000, 5).await;
    let token = shop.shopper(product, 1).await;
    let checkout_id = id_of(&shop.checkout(&token, None).await);

    let paid = shop.pay(&token, &checkout_id, "pm_card_processingError").await;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.text);
    let db = shop.app.db();
    assert_eq!(count(db, "SELECT attempts::bigint AS n FROM sandbox_gateway_requests WHERE operation = 'charge'").await, 3);
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM sandbox_gateway_requests WHERE outcome = 'succeeded'").await, 1);
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM payments WHERE status = 'COMPLETED'").await, 1);
    assert_eq!(shop.stock(product).await, (4, 0, 1));
}

#[tokio::test]
async fn cancelling_releases_the_stock_and_a_late_payment_is_refused() {
    let shop = shop(600).await;
    let product = shop.product("CANCEL-1", 1_000, 5).await;
    let token = shop.shopper(product, 2).await;
    let checkout_id = id_of(&shop.checkout(&token, None).await);
    assert_eq!(shop.stock(product).await, (3, 2, 0));

    let cancelled = shop.app.post(&format!("/checkout/{checkout_id}/cancel"), Some(&token), json!({})).await;
    assert_eq!(cancelled.status, StatusCode::ACCEPTED, "{}", cancelled.text);
    shop.wait_for_status(&token, &checkout_id, "CANCELLED").await;
    shop.finished(&checkout_id, "checkout_cancelled").await;
    assert_eq!(shop.stock(product).await, (5, 0, 0));

    let late = shop.pay(&token, &checkout_id, "pm_card_visa").await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{}", late.text);
    assert_eq!(late.code(), "checkout_cancelled");
    assert_eq!(count(shop.app.db(), "SELECT COUNT(*) AS n FROM payments").await, 0);
}

#[tokio::test]
async fn an_expired_reservation_returns_the_stock_and_a_late_payment_is_refused() {
    let shop = shop(3).await;
    let product = shop.product("EXPIRE-1", 1_000, 5).await;
    let token = shop.shopper(product, 1).await;
    let checkout_id = id_of(&shop.checkout(&token, None).await);
    assert_eq!(shop.stock(product).await, (4, 1, 0));

    shop.wait_for_status(&token, &checkout_id, "EXPIRED").await;
    shop.finished(&checkout_id, "checkout_expired").await;
    assert_eq!(shop.stock(product).await, (5, 0, 0));
    let late = shop.pay(&token, &checkout_id, "pm_card_visa").await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{}", late.text);
    assert_eq!(late.code(), "checkout_expired");
}

#[tokio::test]
async fn fifty_shoppers_for_ten_units_make_exactly_ten_orders() {
    let shop = shop(600).await;
    let product = shop.product("HOT-1", 1_000, 10).await;
    let mut shoppers = Vec::new();
    for _ in 0..50 {
        shoppers.push(shop.shopper(product, 1).await);
    }
    let attempts = shoppers.iter().map(|token| async {
        let started = shop.checkout(token, None).await;
        match started.status {
            StatusCode::CREATED => {
                let paid = shop.pay(token, &id_of(&started), "pm_card_visa").await;
                assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.text);
                true
            }
            StatusCode::CONFLICT => {
                assert_eq!(started.code(), "out_of_stock");
                assert_eq!(started.body["details"]["products"][0]["productId"], product);
                false
            }
            other => panic!("unexpected {other}: {}", started.text),
        }
    });
    let bought = futures::future::join_all(attempts).await.into_iter().filter(|b| *b).count();
    assert_eq!(bought, 10);
    let db = shop.app.db();
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM orders").await, 10);
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM payments WHERE status = 'COMPLETED'").await, 10);
    assert_eq!(shop.stock(product).await, (0, 0, 10), "units conserved: available + reserved + sold = 10");
}

#[tokio::test]
async fn the_same_idempotency_key_is_one_checkout_and_a_repeated_payment_one_charge() {
    let shop = shop(600).await;
    let product = shop.product("IDEM-1", 1_000, 5).await;
    let token = shop.shopper(product, 2).await;
    let first = shop.checkout(&token, Some("order-attempt-1")).await;
    let second = shop.checkout(&token, Some("order-attempt-1")).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.text);
    assert_eq!(id_of(&first), id_of(&second));
    assert_eq!(shop.stock(product).await, (3, 2, 0), "reserved once");
    let db = shop.app.db();
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM checkouts").await, 1);

    let checkout_id = id_of(&first);
    let (a, b) = tokio::join!(shop.pay(&token, &checkout_id, "pm_card_visa"), shop.pay(&token, &checkout_id, "pm_card_visa"));
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    assert_eq!(b.status, StatusCode::CREATED, "{}", b.text);
    assert_eq!(a.body["orderId"], b.body["orderId"]);
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM payments").await, 1);
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM sandbox_gateway_requests").await, 1);
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM orders").await, 1);
    // a second submission that is a different update still gets the first answer, no charge
    let client = temporal_client().await;
    let handle = client.get_workflow_handle::<CheckoutWorkflow>(workflow_id(&checkout_id));
    let request = PaymentRequest {
        payment_method: "pm_card_visa".to_owned(),
        shipping_address: ShippingAddress {
            name: "B".into(),
            line1: "2 Other Rd".into(),
            city: "Leeds".into(),
            postal_code: "LS1".into(),
            country: "GB".into(),
        },
    };
    let options = WorkflowExecuteUpdateOptions::builder().update_id("another-payment".to_owned()).build();
    match handle.execute_update(CheckoutWorkflow::submit_payment, request, options).await {
        Ok(PaymentOutcome::Paid { order }) => assert_eq!(order.order_id, a.body["orderId"].as_str().unwrap()),
        // the workflow may have closed already: then there is nothing to pay
        Err(temporalio_client::errors::WorkflowUpdateError::NotFound(_)) => {}
        other => panic!("unexpected answer to a second payment: {other:?}"),
    }
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM payments").await, 1);
    // after it completed, the same key still answers with the same checkout
    let again = shop.checkout(&token, Some("order-attempt-1")).await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.text);
    assert_eq!(again.body["status"], "COMPLETED");
    assert_eq!(id_of(&again), checkout_id);
}

#[tokio::test]
async fn a_checkout_survives_its_worker_dying_between_reservation_and_payment() {
    let mut shop = shop(600).await;
    let product = shop.product("CRASH-1", 1_000, 5).await;
    let token = shop.shopper(product, 1).await;
    let checkout_id = id_of(&shop.checkout(&token, None).await);

    // the worker goes away with the stock reserved and the workflow waiting for payment
    shop.worker.take().unwrap().stop();
    let payment = shop.pay(&token, &checkout_id, "pm_card_visa");
    let restart = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        TestWorker::start(&shop.app.config.task_queue, shop.app.db().clone())
    };
    let (paid, worker) = tokio::join!(payment, restart);
    shop.worker = Some(worker);
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.text);
    let db = shop.app.db();
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM payments WHERE status = 'COMPLETED'").await, 1);
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM sandbox_gateway_requests").await, 1);
    assert_eq!(shop.stock(product).await, (4, 0, 1));
}

#[tokio::test]
async fn out_of_stock_empty_carts_bad_input_and_other_users_are_refused() {
    let shop = shop(600).await;
    let scarce = shop.product("SCARCE-1", 1_000, 5).await;
    let plenty = shop.product("PLENTY-1", 1_000, 50).await;
    let token = shop.shopper(scarce, 5).await;
    shop.app.post("/cart/items", Some(&token), json!({ "productId": plenty, "quantity": 2 })).await;
    // someone else takes stock after the cart was filled
    shop.app.put(&format!("/admin/products/{scarce}/inventory"), Some(&shop.admin), json!({ "available": 3 })).await;

    let short = shop.checkout(&token, None).await;
    assert_eq!(short.status, StatusCode::CONFLICT, "{}", short.text);
    assert_eq!(short.code(), "out_of_stock");
    assert_eq!(short.body["details"]["products"], json!([{ "productId": scarce, "requested": 5, "available": 3 }]));
    assert_eq!(shop.stock(plenty).await, (50, 0, 0), "all or nothing: the other line is not held");

    let (empty, _) = shop.app.register_customer().await;
    let nothing = shop.checkout(&empty, None).await;
    assert_eq!(nothing.status, StatusCode::BAD_REQUEST, "{}", nothing.text);
    assert_eq!(nothing.code(), "cart_empty");

    shop.app.patch(&format!("/cart/items/{scarce}"), Some(&token), json!({ "quantity": 1 })).await;
    let started = shop.checkout(&token, None).await;
    let checkout_id = id_of(&started);
    let bad_method = shop.pay(&token, &checkout_id, "4242 4242 4242 4242").await;
    assert_eq!(bad_method.code(), "invalid_payment_method");
    let bad_address = shop
        .app
        .post(&format!("/checkout/{checkout_id}/payment"), Some(&token), json!({ "paymentMethod": "pm_card_visa", "shippingAddress": { "name": "", "line1": "x", "city": "y", "postalCode": "z", "country": "GB" } }))
        .await;
    assert_eq!(bad_address.code(), "invalid_shipping_address");
    let bad_key = shop.checkout(&token, Some("has spaces")).await;
    assert_eq!(bad_key.code(), "invalid_idempotency_key");

    let (stranger, _) = shop.app.register_customer().await;
    assert_eq!(shop.app.get(&format!("/checkout/{checkout_id}"), Some(&stranger)).await.code(), "checkout_not_found");
    assert_eq!(shop.pay(&stranger, &checkout_id, "pm_card_visa").await.code(), "checkout_not_found");
    let cancel = shop.app.post(&format!("/checkout/{checkout_id}/cancel"), Some(&stranger), json!({})).await;
    assert_eq!(cancel.code(), "checkout_not_found");
    assert_eq!(shop.app.get("/checkout/00000000-0000-0000-0000-000000000000", Some(&token)).await.code(), "checkout_not_found");

    let paid = shop.pay(&token, &checkout_id, "pm_card_visa").await;
    let order_id = paid.body["orderId"].as_str().unwrap();
    assert_eq!(shop.app.get(&format!("/orders/{order_id}"), Some(&stranger)).await.code(), "order_not_found");
    assert_eq!(shop.app.get("/orders", Some(&stranger)).await.body["total"], 0);
    assert_eq!(shop.app.post("/checkout", None, json!({})).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn committed_checkout_histories_replay_with_the_current_code() {
    let directory = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/histories");
    let options = WorkflowReplayerOptions::new().register_workflow::<CheckoutWorkflow>().expect("register").build();
    let replayer = WorkflowReplayer::new(options).expect("replayer");
    for name in ["checkout_completed", "checkout_declined", "checkout_cancelled", "checkout_expired", "checkout_refunded"] {
        let bytes =
            std::fs::read(format!("{directory}/{name}.json")).unwrap_or_else(|_| panic!("tests/histories/{name}.json is committed"));
        let history = WorkflowHistory::from_json(&bytes).expect("SDK history JSON");
        replayer.replay_workflow(history).await.unwrap_or_else(|e| panic!("{name} does not replay: {e}"));
    }
}

#[tokio::test]
async fn a_payment_after_the_sweeper_expired_the_checkout_charges_nothing() {
    let shop = shop(600).await;
    let product = shop.product("SWEPT-1", 1_000, 5).await;
    let token = shop.shopper(product, 2).await;
    let checkout_id = id_of(&shop.checkout(&token, None).await);
    let db = shop.app.db();
    // the reservation ran out while the workflow was not looking (lost timer, clock skew)
    use sea_orm::ConnectionTrait;
    db.execute_unprepared(&format!(
        "UPDATE inventory_reservations SET expires_at = now() - interval '1 minute' WHERE owner = 'checkout:{checkout_id}'; \
         UPDATE checkouts SET reserved_until = now() - interval '1 minute' WHERE id = '{checkout_id}'"
    ))
    .await
    .unwrap();
    let swept = emporium_entities::store::inventory::release_expired(db, 0).await.unwrap();
    assert_eq!(swept, vec![format!("checkout:{checkout_id}")]);

    let late = shop.pay(&token, &checkout_id, "pm_card_visa").await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{}", late.text);
    assert_eq!(late.code(), "checkout_expired");
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM sandbox_gateway_requests").await, 0, "nothing was charged");
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM orders").await, 0);
    assert_eq!(shop.stock(product).await, (5, 0, 0));
}

#[tokio::test]
async fn a_charge_whose_order_cannot_be_created_is_refunded() {
    let shop = shop(600).await;
    let product = shop.product("LOST-1", 1_000, 5).await;
    let token = shop.shopper(product, 2).await;
    let checkout_id = id_of(&shop.checkout(&token, None).await);
    let db = shop.app.db();
    // the reservation is gone behind the workflow's back (an operator's manual fix, say)
    use sea_orm::ConnectionTrait;
    db.execute_unprepared(&format!(
        "UPDATE inventory SET available = available + 2, reserved = reserved - 2 WHERE product_id = {product}; \
         UPDATE inventory_reservations SET status = 'RELEASED' WHERE owner = 'checkout:{checkout_id}'"
    ))
    .await
    .unwrap();

    let paid = shop.pay(&token, &checkout_id, "pm_card_visa").await;
    assert_eq!(paid.status, StatusCode::PAYMENT_REQUIRED, "{}", paid.text);
    assert_eq!(paid.code(), "payment_failed");
    assert_eq!(paid.body["details"]["reason"], "reservation_lost");
    shop.finished(&checkout_id, "checkout_refunded").await;
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM orders").await, 0, "no order without stock");
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM payments WHERE status = 'REFUNDED' AND refunded_minor = amount_minor").await, 1);
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM refunds WHERE status = 'COMPLETED'").await, 1);
    assert_eq!(shop.stock(product).await, (5, 0, 0));
}
