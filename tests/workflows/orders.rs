//! Order lifecycle end to end: checkout → OrderWorkflow on an in-process worker → Postgres,
//! driven through the HTTP API as a customer and an admin.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use poem::{Request, Response, Server, endpoint::make, http::StatusCode as PoemStatus, listener::TcpAcceptor};
use reqwest::StatusCode;
use serde_json::{Value, json};
use temporalio_client::{
    WorkflowDescribeOptions, WorkflowFetchHistoryOptions, WorkflowGetResultOptions, WorkflowHistory, WorkflowStartOptions,
    WorkflowTerminateOptions,
};
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};

use emporium_activities::{Webhook, notification::sign};
use emporium_tests::{
    TestResponse, count,
    worker::{TestWorker, temporal_client, unique_task_queue},
};
use emporium_workflows::{
    checkout::CheckoutWorkflow,
    order::{
        OrderWorkflow,
        contract::{CUSTOMER_ID, ORDER_STATUS, OrderInput, workflow_id},
    },
};

use crate::checkout::{Shop, id_of, shop_with};

/// A long window: the order stays open for returns throughout the test.
const OPEN_WINDOW: u64 = 30 * 24 * 3600;

/// A placed order of `quantity` units of a new product (price `price`, `stock` units), paid with
/// `method`; returns (customer token, order id, product id).
async fn placed_order(shop: &Shop, sku: &str, price: i64, stock: i64, quantity: i64, method: &str) -> (String, String, i64) {
    let product = shop.product(sku, price, stock).await;
    let token = shop.shopper(product, quantity).await;
    let checkout_id = id_of(&shop.checkout(&token, None).await);
    let paid = shop.pay(&token, &checkout_id, method).await;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.text);
    (token, paid.body["orderId"].as_str().unwrap().to_owned(), product)
}

async fn cancel(shop: &Shop, token: &str, order_id: &str) -> TestResponse {
    shop.app.post(&format!("/orders/{order_id}/cancel"), Some(token), json!({})).await
}

async fn ship(shop: &Shop, order_id: &str) -> TestResponse {
    shop.app
        .post(&format!("/admin/orders/{order_id}/ship"), Some(&shop.admin), json!({ "carrier": "DHL", "trackingNumber": "JD0146" }))
        .await
}

async fn deliver(shop: &Shop, order_id: &str) -> TestResponse {
    shop.app.post(&format!("/admin/orders/{order_id}/deliver"), Some(&shop.admin), json!({})).await
}

async fn request_return(shop: &Shop, token: &str, order_id: &str, product: i64, quantity: i64) -> TestResponse {
    shop.app
        .post(
            &format!("/orders/{order_id}/return"),
            Some(token),
            json!({ "items": [{ "productId": product, "quantity": quantity }], "reason": "too small" }),
        )
        .await
}

async fn receive_return(shop: &Shop, order_id: &str) -> TestResponse {
    shop.app.post(&format!("/admin/orders/{order_id}/receive-return"), Some(&shop.admin), json!({})).await
}

async fn order(shop: &Shop, token: &str, order_id: &str) -> Value {
    shop.app.get(&format!("/orders/{order_id}"), Some(token)).await.body
}

/// Polls the order until `ready` holds (the refund runs after the API has answered).
async fn wait_for_order(shop: &Shop, token: &str, order_id: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..150 {
        last = order(shop, token, order_id).await;
        if ready(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("order {order_id} never became {what}; last {last}");
}

fn event_kinds(order: &Value) -> Vec<String> {
    order["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect()
}

/// Waits for the order's workflow to close and, with EMPORIUM_RECORD_HISTORIES set, saves its
/// history as `tests/histories/<name>.json` for the replay test.
async fn order_finished(order_id: &str, name: &str) {
    let client = temporal_client().await;
    let handle = client.get_workflow_handle::<OrderWorkflow>(workflow_id(order_id));
    handle.get_result(WorkflowGetResultOptions::default()).await.expect("order workflow completes");
    if std::env::var_os("EMPORIUM_RECORD_HISTORIES").is_some() {
        let json = handle.fetch_history(WorkflowFetchHistoryOptions::default()).to_json().await.expect("history");
        std::fs::write(format!("{}/tests/histories/{name}.json", env!("CARGO_MANIFEST_DIR")), json).expect("write history");
    }
}

/// (CustomerId, OrderStatus) of the order's workflow.
async fn order_search_attributes(order_id: &str) -> (Option<String>, Option<String>) {
    let client = temporal_client().await;
    let handle = client.get_workflow_handle::<OrderWorkflow>(workflow_id(order_id));
    let described = handle.describe(WorkflowDescribeOptions::default()).await.expect("describe the order workflow");
    let attributes = described.search_attributes();
    (attributes.get(&CUSTOMER_ID), attributes.get(&ORDER_STATUS))
}

/// Units stocked never change: available + reserved + sold, where sold counts units sold and
/// not returned or cancelled.
async fn assert_conserved(shop: &Shop, product: i64, stocked: i64, sold_net: i64) {
    let (available, reserved, sold) = shop.stock(product).await;
    assert_eq!(available + reserved + sold, stocked, "units stocked of product {product}");
    assert_eq!(sold, sold_net, "net units sold of product {product}");
    let db = shop.app.db();
    let bought = count(db, &format!("SELECT COALESCE(SUM(i.quantity), 0)::bigint AS n FROM order_items i JOIN orders o ON o.id = i.order_id WHERE i.product_id = {product} AND o.status NOT IN ('CANCELLED') AND NOT EXISTS (SELECT 1 FROM order_events e WHERE e.order_id = o.id AND e.kind = 'CANCELLED')")).await;
    let returned =
        count(db, &format!("SELECT COALESCE(SUM(returned_quantity), 0)::bigint AS n FROM order_items WHERE product_id = {product}")).await;
    assert_eq!(sold, bought - returned, "sold = bought − returned (cancelled orders bought nothing)");
}

#[tokio::test]
async fn full_lifecycle_ship_deliver_partial_return_refund_and_restock() {
    let shop = shop_with(600, 8, None).await;
    let (token, order_id, product) = placed_order(&shop, "LIFE-1", 2_000, 10, 3, "pm_card_visa").await;
    let placed = order(&shop, &token, &order_id).await;
    assert_eq!(placed["status"], "PLACED");
    assert_eq!(placed["payment"]["status"], "COMPLETED");
    // 3 × 20.00 = 60.00, tax 4.80, free shipping
    assert_eq!(placed["totals"]["total"]["amount"], 6_480);
    assert_conserved(&shop, product, 10, 3).await;

    // a return before delivery and a delivery before shipping are refused
    assert_eq!(request_return(&shop, &token, &order_id, product, 1).await.code(), "order_not_delivered");
    assert_eq!(deliver(&shop, &order_id).await.code(), "order_not_shipped");

    let shipped = ship(&shop, &order_id).await;
    assert_eq!(shipped.status, StatusCode::OK, "{}", shipped.text);
    assert_eq!(shipped.body["status"], "SHIPPED");
    assert_eq!(shipped.body["shipment"], json!({ "carrier": "DHL", "trackingNumber": "JD0146" }));
    assert_eq!(cancel(&shop, &token, &order_id).await.code(), "order_already_shipped");
    assert_eq!(cancel(&shop, &token, &order_id).await.status, StatusCode::CONFLICT);

    let delivered = deliver(&shop, &order_id).await;
    assert_eq!(delivered.status, StatusCode::OK, "{}", delivered.text);
    assert_eq!(delivered.body["status"], "DELIVERED");

    // more than bought, a product not in the order: refused, nothing changes
    assert_eq!(request_return(&shop, &token, &order_id, product, 4).await.code(), "return_quantity_exceeded");
    assert_eq!(request_return(&shop, &token, &order_id, product + 1_000, 1).await.code(), "product_not_in_order");
    let requested = request_return(&shop, &token, &order_id, product, 2).await;
    assert_eq!(requested.status, StatusCode::OK, "{}", requested.text);
    assert_eq!(requested.body["status"], "RETURN_REQUESTED");
    assert_eq!(request_return(&shop, &token, &order_id, product, 1).await.code(), "return_in_progress");
    assert_conserved(&shop, product, 10, 3).await;

    let received = receive_return(&shop, &order_id).await;
    assert_eq!(received.status, StatusCode::OK, "{}", received.text);
    assert_eq!(received.body["items"][0]["returnedQuantity"], 2);
    assert_eq!(receive_return(&shop, &order_id).await.code(), "no_return_requested");
    let returned = wait_for_order(&shop, &token, &order_id, "RETURNED", |o| o["status"] == "RETURNED").await;
    // two units: 40.00 plus their share of the tax, 3.20; shipping was free
    assert_eq!(returned["payment"]["status"], "PARTIALLY_REFUNDED");
    assert_eq!(returned["payment"]["refunded"]["amount"], 4_320);
    assert_eq!(
        event_kinds(&returned),
        ["ORDER_CREATED", "PAYMENT_CONFIRMED", "SHIPPED", "DELIVERED", "RETURN_REQUESTED", "RETURNED", "REFUNDED"]
    );
    assert_conserved(&shop, product, 10, 1).await;
    assert_eq!(shop.stock(product).await, (9, 0, 1));

    // the last unit: the refund takes the rest of the tax, so refunds add up to the order
    // less its (free) shipping
    assert_eq!(request_return(&shop, &token, &order_id, product, 1).await.status, StatusCode::OK);
    assert_eq!(receive_return(&shop, &order_id).await.status, StatusCode::OK);
    // the refund is recorded first, the order's RETURNED transition right after it
    let all_back = wait_for_order(&shop, &token, &order_id, "fully returned", |o| {
        o["payment"]["refunded"]["amount"] == 6_480 && o["status"] == "RETURNED"
    })
    .await;
    assert_eq!(all_back["status"], "RETURNED");
    assert_eq!(all_back["payment"]["status"], "REFUNDED");
    let db = shop.app.db();
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM refunds").await, 2);
    assert_eq!(count(db, "SELECT SUM(amount_minor)::bigint AS n FROM refunds").await, 6_480);
    assert_conserved(&shop, product, 10, 0).await;

    // every transition produced a notification, each delivered (logged: no webhook here)
    order_finished(&order_id, "order_returned").await;
    let kinds: Vec<String> = {
        use sea_orm::ConnectionTrait;
        db.query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT kind, status FROM notifications ORDER BY created_at",
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| format!("{}:{}", r.try_get::<String>("", "kind").unwrap(), r.try_get::<String>("", "status").unwrap()))
        .collect()
    };
    assert_eq!(
        kinds,
        [
            "ORDER_PLACED:LOGGED",
            "ORDER_SHIPPED:LOGGED",
            "ORDER_DELIVERED:LOGGED",
            "ORDER_RETURN_REQUESTED:LOGGED",
            "ORDER_RETURN_RECEIVED:LOGGED",
            "ORDER_REFUNDED:LOGGED",
            "ORDER_RETURN_REQUESTED:LOGGED",
            "ORDER_RETURN_RECEIVED:LOGGED",
            "ORDER_REFUNDED:LOGGED",
        ]
    );
    // after the window, the order is closed for returns
    assert_eq!(request_return(&shop, &token, &order_id, product, 1).await.code(), "return_window_closed");
}

#[tokio::test]
async fn cancel_before_shipping_refunds_in_full_once_and_restocks_exactly() {
    let shop = shop_with(600, OPEN_WINDOW, None).await;
    let (token, order_id, product) = placed_order(&shop, "CANCEL-1", 1_000, 5, 2, "pm_card_visa").await;
    assert_eq!(shop.stock(product).await, (3, 0, 2));

    // five devices press cancel at once: one cancellation, one refund
    let attempts = futures::future::join_all((0..5).map(|_| cancel(&shop, &token, &order_id))).await;
    for attempt in &attempts {
        assert_eq!(attempt.status, StatusCode::OK, "{}", attempt.text);
        assert!(["REFUND_PENDING", "CANCELLED"].contains(&attempt.body["status"].as_str().unwrap()), "{}", attempt.text);
    }
    let cancelled = wait_for_order(&shop, &token, &order_id, "CANCELLED", |o| o["status"] == "CANCELLED").await;
    // 20.00 + 1.60 tax + 4.99 shipping, all of it back
    assert_eq!(cancelled["payment"]["status"], "REFUNDED");
    assert_eq!(cancelled["payment"]["refunded"]["amount"], 2_659);
    assert_eq!(event_kinds(&cancelled), ["ORDER_CREATED", "PAYMENT_CONFIRMED", "CANCELLED", "REFUNDED"]);
    assert_eq!(shop.stock(product).await, (5, 0, 0), "both units back on sale");
    assert_conserved(&shop, product, 5, 0).await;
    let db = shop.app.db();
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM refunds").await, 1);
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM sandbox_gateway_requests WHERE operation = 'refund'").await, 1);

    order_finished(&order_id, "order_cancelled").await;
    // a repeat after the workflow closed is still the same answer; nothing else is allowed
    assert_eq!(cancel(&shop, &token, &order_id).await.status, StatusCode::OK);
    assert_eq!(ship(&shop, &order_id).await.code(), "order_cancelled");
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM refunds").await, 1);
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM order_events WHERE kind = 'CANCELLED'").await, 1);
}

#[tokio::test]
async fn a_refund_failing_three_times_shows_refund_pending_then_ends_refunded_once() {
    let shop = shop_with(600, OPEN_WINDOW, None).await;
    let (token, order_id, product) = placed_order(&shop, "REFUND-FLAKY", 1_000, 5, 1, "pm_card_refundProcessingError").await;

    let cancelled = cancel(&shop, &token, &order_id).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.text);
    // the gateway fails the first attempts (1 s, 2 s, 4 s apart): the order says so meanwhile
    assert_eq!(cancelled.body["status"], "REFUND_PENDING");
    assert_eq!(cancelled.body["payment"]["status"], "COMPLETED");
    assert_eq!(shop.stock(product).await, (5, 0, 0), "restocked before the refund");
    // operators see it in the Temporal UI too
    let customer = cancelled.body["userId"].as_str().unwrap().to_owned();
    assert_eq!(order_search_attributes(&order_id).await, (Some(customer.clone()), Some("REFUND_PENDING".to_owned())));

    let done = wait_for_order(&shop, &token, &order_id, "CANCELLED", |o| o["status"] == "CANCELLED").await;
    order_finished(&order_id, "order_refund_retried").await;
    assert_eq!(order_search_attributes(&order_id).await, (Some(customer), Some("CANCELLED".to_owned())));
    assert_eq!(done["payment"]["status"], "REFUNDED");
    assert_eq!(done["payment"]["refunded"]["amount"], done["totals"]["total"]["amount"]);
    let db = shop.app.db();
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM refunds").await, 1, "exactly one refund recorded");
    assert_eq!(count(db, "SELECT attempts::bigint AS n FROM sandbox_gateway_requests WHERE operation = 'refund'").await, 4);
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM order_events WHERE kind = 'REFUNDED'").await, 1);
}

#[tokio::test]
async fn delivered_orders_close_their_return_window_and_illegal_moves_are_refused() {
    let shop = shop_with(600, 3, None).await;
    let (token, order_id, product) = placed_order(&shop, "WINDOW-1", 1_500, 4, 1, "pm_card_visa").await;
    assert_eq!(receive_return(&shop, &order_id).await.code(), "no_return_requested");
    assert_eq!(ship(&shop, &order_id).await.status, StatusCode::OK);
    // the same shipment again is the same update (one SHIPPED event); deliver twice likewise
    assert_eq!(ship(&shop, &order_id).await.status, StatusCode::OK);
    assert_eq!(deliver(&shop, &order_id).await.status, StatusCode::OK);
    assert_eq!(deliver(&shop, &order_id).await.status, StatusCode::OK);
    let db = shop.app.db();
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM order_events WHERE kind IN ('SHIPPED', 'DELIVERED')").await, 2);
    assert_eq!(cancel(&shop, &token, &order_id).await.code(), "order_already_shipped");

    order_finished(&order_id, "order_delivered").await;
    let closed = order(&shop, &token, &order_id).await;
    assert_eq!(closed["status"], "DELIVERED");
    assert_eq!(request_return(&shop, &token, &order_id, product, 1).await.code(), "return_window_closed");
    assert_eq!(cancel(&shop, &token, &order_id).await.code(), "order_already_shipped");
    // a repeated delivery is the same request, even after the workflow closed
    assert_eq!(deliver(&shop, &order_id).await.body["status"], "DELIVERED");
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM order_events WHERE kind = 'DELIVERED'").await, 1);
    assert_conserved(&shop, product, 4, 1).await;
}

#[tokio::test]
async fn strangers_get_404_customers_get_403_on_admin_routes_and_bad_input_changes_nothing() {
    let shop = shop_with(600, OPEN_WINDOW, None).await;
    let (token, order_id, product) = placed_order(&shop, "GUARD-1", 1_000, 5, 2, "pm_card_visa").await;
    let (stranger, _) = shop.app.register_customer().await;

    assert_eq!(cancel(&shop, &stranger, &order_id).await.code(), "order_not_found");
    assert_eq!(request_return(&shop, &stranger, &order_id, product, 1).await.code(), "order_not_found");
    assert_eq!(shop.app.get(&format!("/orders/{order_id}"), Some(&stranger)).await.code(), "order_not_found");
    let unknown = "00000000-0000-0000-0000-000000000000";
    assert_eq!(cancel(&shop, &token, unknown).await.code(), "order_not_found");
    assert_eq!(shop.app.post("/orders/not-a-uuid/cancel", Some(&token), json!({})).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(cancel(&shop, "", &order_id).await.status, StatusCode::UNAUTHORIZED);

    for path in ["ship", "deliver", "receive-return"] {
        let body = json!({ "carrier": "DHL", "trackingNumber": "1" });
        let refused = shop.app.post(&format!("/admin/orders/{order_id}/{path}"), Some(&token), body).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path}: {}", refused.text);
        assert_eq!(refused.code(), "forbidden");
    }
    assert_eq!(shop.app.get("/admin/orders", Some(&token)).await.code(), "forbidden");
    assert_eq!(shop.app.get(&format!("/admin/orders/{order_id}"), Some(&token)).await.code(), "forbidden");

    let returns = format!("/orders/{order_id}/return");
    for (body, code) in [
        (json!({ "items": [], "reason": "x" }), "invalid_return"),
        (json!({ "items": [{ "productId": product, "quantity": 0 }], "reason": "x" }), "invalid_return"),
        (json!({ "items": [{ "productId": product, "quantity": -1 }], "reason": "x" }), "invalid_return"),
        (json!({ "items": [{ "productId": product, "quantity": 1 }], "reason": "  " }), "invalid_return"),
        (json!({ "items": [{ "productId": product, "quantity": 1 }], "reason": "x".repeat(501) }), "invalid_return"),
        (
            json!({ "items": [{ "productId": product, "quantity": 1 }, { "productId": product, "quantity": 1 }], "reason": "x" }),
            "invalid_return",
        ),
        (json!({ "items": [{ "productId": product }], "reason": "x" }), "invalid_body"),
        (json!({ "items": "all" }), "invalid_body"),
    ] {
        let refused = shop.app.post(&returns, Some(&token), body.clone()).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{body}: {}", refused.text);
        assert_eq!(refused.code(), code, "{body}");
    }
    for body in [
        json!({ "carrier": "", "trackingNumber": "1" }),
        json!({ "carrier": "DHL", "trackingNumber": "x".repeat(101) }),
        json!({ "carrier": "DHL" }),
    ] {
        let refused = shop.app.post(&format!("/admin/orders/{order_id}/ship"), Some(&shop.admin), body.clone()).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{body}: {}", refused.text);
    }
    assert_eq!(shop.app.get("/admin/orders?status=LOST", Some(&shop.admin)).await.code(), "invalid_parameter");
    assert_eq!(shop.app.get("/admin/orders?limit=1000", Some(&shop.admin)).await.code(), "limit_too_large");

    let untouched = order(&shop, &token, &order_id).await;
    assert_eq!(untouched["status"], "PLACED");
    assert_eq!(event_kinds(&untouched), ["ORDER_CREATED", "PAYMENT_CONFIRMED"]);
    assert_eq!(shop.stock(product).await, (3, 0, 2));
}

#[tokio::test]
async fn admins_list_orders_by_status_and_customer() {
    let shop = shop_with(600, OPEN_WINDOW, None).await;
    let (token_a, order_a, _) = placed_order(&shop, "LIST-A", 1_000, 5, 1, "pm_card_visa").await;
    let (_token_b, order_b, _) = placed_order(&shop, "LIST-B", 1_000, 5, 1, "pm_card_visa").await;
    assert_eq!(ship(&shop, &order_b).await.status, StatusCode::OK);

    let all = shop.app.get("/admin/orders", Some(&shop.admin)).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    assert_eq!(all.body["total"], 2);
    assert_eq!(all.body["items"][0]["orderId"], order_b.as_str(), "newest first");
    let shipped = shop.app.get("/admin/orders?status=shipped", Some(&shop.admin)).await;
    assert_eq!(shipped.body["total"], 1);
    assert_eq!(shipped.body["items"][0]["orderId"], order_b.as_str());
    let customer_a = order(&shop, &token_a, &order_a).await["userId"].as_str().unwrap().to_owned();
    let of_a = shop.app.get(&format!("/admin/orders?customer={customer_a}"), Some(&shop.admin)).await;
    assert_eq!(of_a.body["total"], 1);
    assert_eq!(of_a.body["items"][0]["orderId"], order_a.as_str());
    let email = of_a.body["items"][0]["customerEmail"].as_str().unwrap().to_owned();
    let by_email = shop.app.get(&format!("/admin/orders?customer={email}&status=PLACED"), Some(&shop.admin)).await;
    assert_eq!(by_email.body["total"], 1);
    assert_eq!(shop.app.get("/admin/orders?customer=nobody@example.com", Some(&shop.admin)).await.body["total"], 0);
    let paged = shop.app.get("/admin/orders?limit=1&page=2", Some(&shop.admin)).await;
    assert_eq!(paged.body["items"][0]["orderId"], order_a.as_str());
    assert_eq!(shop.app.get(&format!("/admin/orders/{order_a}"), Some(&shop.admin)).await.body["status"], "PLACED");
}

/// (signature header, delivery header, body) of a request the receiver got.
type Received = (Option<String>, Option<String>, Vec<u8>);

/// A webhook receiver that fails its first `failures` requests and records every one.
struct Receiver {
    url: String,
    requests: Arc<Mutex<Vec<Received>>>,
    server: tokio::task::JoinHandle<()>,
}

async fn receiver(failures: usize) -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the receiver");
    let url = format!("http://{}/hooks/emporium", listener.local_addr().unwrap());
    let requests: Arc<Mutex<Vec<Received>>> = Arc::default();
    let seen = requests.clone();
    let endpoint = make(move |request: Request| {
        let seen = seen.clone();
        async move {
            let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let (signature, delivery) = (header("x-emporium-signature"), header("x-emporium-delivery"));
            let body = request.into_body().into_vec().await.unwrap_or_default();
            let mut seen = seen.lock().unwrap();
            seen.push((signature, delivery, body));
            let status = if seen.len() <= failures { PoemStatus::INTERNAL_SERVER_ERROR } else { PoemStatus::NO_CONTENT };
            Response::builder().status(status).finish()
        }
    });
    let acceptor = TcpAcceptor::from_tokio(listener).expect("acceptor");
    let server = tokio::spawn(async move {
        let _ = Server::new_with_acceptor(acceptor).run(endpoint).await;
    });
    Receiver { url, requests, server }
}

#[tokio::test]
async fn the_webhook_gets_signed_notifications_and_is_retried_after_a_failure() {
    let hook = receiver(1).await;
    let secret = "whsec_test_0123456789";
    let shop = shop_with(600, OPEN_WINDOW, Some(Webhook { url: hook.url.clone(), secret: secret.to_owned() })).await;
    let (token, order_id, _) = placed_order(&shop, "HOOK-1", 1_000, 5, 1, "pm_card_visa").await;
    assert_eq!(ship(&shop, &order_id).await.status, StatusCode::OK);

    let db = shop.app.db();
    for _ in 0..100 {
        if count(db, "SELECT COUNT(*) AS n FROM notifications WHERE status = 'DELIVERED'").await == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM notifications WHERE status = 'DELIVERED'").await, 2);
    // the placed notification failed once (500) and went through on the retry
    assert_eq!(count(db, "SELECT attempts::bigint AS n FROM notifications WHERE kind = 'ORDER_PLACED'").await, 2);
    assert_eq!(count(db, "SELECT attempts::bigint AS n FROM notifications WHERE kind = 'ORDER_SHIPPED'").await, 1);

    let requests = hook.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].2, requests[1].2, "a retry sends the same body");
    for (signature, delivery, body) in &requests {
        assert_eq!(signature.as_deref(), Some(sign(secret, body).as_str()), "HMAC-SHA256 of the exact body");
        assert!(delivery.as_deref().unwrap().starts_with(&format!("order:{order_id}:notify:")));
    }
    let placed: Value = serde_json::from_slice(&requests[1].2).unwrap();
    assert_eq!(placed["kind"], "ORDER_PLACED");
    assert_eq!(placed["orderId"], order_id.as_str());
    let shipped: Value = serde_json::from_slice(&requests[2].2).unwrap();
    assert_eq!(shipped["kind"], "ORDER_SHIPPED");
    assert_eq!(shipped["payload"]["details"]["trackingNumber"], "JD0146");
    assert_eq!(order(&shop, &token, &order_id).await["status"], "SHIPPED");
    hook.server.abort();
}

#[tokio::test]
async fn a_dead_webhook_never_holds_up_the_order() {
    // nothing listens here: every delivery attempt fails
    let port = emporium_tests::free_port();
    let webhook = Webhook { url: format!("http://127.0.0.1:{port}/hooks"), secret: "s".to_owned() };
    let shop = shop_with(600, OPEN_WINDOW, Some(webhook)).await;
    let (token, order_id, _) = placed_order(&shop, "HOOK-DEAD", 1_000, 5, 1, "pm_card_visa").await;
    let shipped = ship(&shop, &order_id).await;
    assert_eq!(shipped.body["status"], "SHIPPED", "{}", shipped.text);
    let delivered = deliver(&shop, &order_id).await;
    assert_eq!(delivered.body["status"], "DELIVERED", "{}", delivered.text);
    assert_eq!(order(&shop, &token, &order_id).await["status"], "DELIVERED");
    let db = shop.app.db();
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM notifications WHERE status = 'DELIVERED'").await, 0);
    assert!(count(db, "SELECT COUNT(*) AS n FROM notifications WHERE last_error LIKE 'webhook unreachable%'").await >= 1);
}

/// The order's workflow as the checkout started it: its input, read from its first event.
async fn order_input(order_id: &str) -> OrderInput {
    let client = temporal_client().await;
    let handle = client.get_workflow_handle::<OrderWorkflow>(workflow_id(order_id));
    let events = handle.fetch_history(WorkflowFetchHistoryOptions::default()).into_events().await.expect("history");
    let Some(Attributes::WorkflowExecutionStartedEventAttributes(started)) = events.first().and_then(|e| e.attributes.clone()) else {
        panic!("the history of order {order_id} starts with its start event");
    };
    let payload = started.input.and_then(|p| p.payloads.into_iter().next()).expect("the order workflow has an input");
    serde_json::from_slice(&payload.data).expect("OrderInput as JSON")
}

#[tokio::test]
async fn a_command_that_arrives_with_the_workflows_first_task_is_kept() {
    let shop = shop_with(600, OPEN_WINDOW, None).await;
    let (token, order_id, _) = placed_order(&shop, "FIRST-TASK", 1_000, 5, 1, "pm_card_visa").await;
    // Run the order's workflow again on a queue no worker polls yet, so that the ship below
    // is delivered together with the workflow's first task, before `run` has started.
    let input = order_input(&order_id).await;
    let client = temporal_client().await;
    let handle = client.get_workflow_handle::<OrderWorkflow>(workflow_id(&order_id));
    handle.terminate(WorkflowTerminateOptions::builder().reason("test: start again").build()).await.expect("terminate");
    let parked = unique_task_queue();
    client
        .start_workflow(OrderWorkflow::run, input, WorkflowStartOptions::new(parked.clone(), workflow_id(&order_id)).build())
        .await
        .expect("start the order workflow again");
    // the ship waits in the server until a worker polls the queue
    let (shipped, _worker) = tokio::join!(ship(&shop, &order_id), async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        TestWorker::start(&parked, shop.app.db().clone())
    });
    assert_eq!(shipped.status, StatusCode::OK, "{}", shipped.text);
    // the workflow remembers it shipped: delivering is allowed
    let delivered = deliver(&shop, &order_id).await;
    assert_eq!(delivered.body["status"], "DELIVERED", "{}", delivered.text);
    assert_eq!(order(&shop, &token, &order_id).await["status"], "DELIVERED");
}

#[tokio::test]
async fn committed_order_histories_replay_with_the_current_code() {
    let directory = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/histories");
    let options = WorkflowReplayerOptions::new()
        .register_workflow::<OrderWorkflow>()
        .expect("register")
        .register_workflow::<CheckoutWorkflow>()
        .expect("register")
        .build();
    let replayer = WorkflowReplayer::new(options).expect("replayer");
    for name in ["order_delivered", "order_cancelled", "order_returned", "order_refund_retried"] {
        let bytes =
            std::fs::read(format!("{directory}/{name}.json")).unwrap_or_else(|_| panic!("tests/histories/{name}.json is committed"));
        let history = WorkflowHistory::from_json(&bytes).expect("SDK history JSON");
        replayer.replay_workflow(history).await.unwrap_or_else(|e| panic!("{name} does not replay: {e}"));
    }
}
