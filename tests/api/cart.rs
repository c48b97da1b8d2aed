use std::time::Duration;

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use emporium_tests::{PrivateRedis, TestApp, TestResponse, redis, spawn_app, spawn_app_with};

/// A category and `n` products with the given stock; returns their ids.
async fn stock_products(app: &TestApp, admin: &str, stocks: &[i64]) -> Vec<i64> {
    let category = app.create_category(admin, "Cart things", None).await;
    let mut ids = Vec::new();
    for (i, stock) in stocks.iter().enumerate() {
        let product = app.create_product(admin, category, &format!("CART-{i}"), 1_000 * (i as i64 + 1), *stock).await;
        ids.push(product["id"].as_i64().unwrap());
    }
    ids
}

async fn anon(app: &TestApp, method: Method, path: &str, session: Option<&str>, body: Option<Value>) -> TestResponse {
    let mut request = app.client.request(method, format!("{}{}", app.address, path));
    if let Some(session) = session {
        request = request.header("X-Session-Id", session);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    TestResponse { status, headers, body: serde_json::from_str(&text).unwrap_or(Value::Null), text }
}

fn line(cart: &Value, product: i64) -> Option<&Value> {
    cart["lines"].as_array().unwrap().iter().find(|l| l["productId"] == product)
}

/// The user's cart as Postgres has it, (product, quantity) by product: what the Redis cache
/// would hide.
async fn stored_lines(app: &TestApp, user: &str) -> Vec<(i64, i32)> {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let sql = format!(
        "SELECT i.product_id, i.quantity FROM cart_items i JOIN carts c ON c.id = i.cart_id WHERE c.user_id = '{user}' ORDER BY i.product_id"
    );
    let rows = app.db().query_all_raw(Statement::from_string(DbBackend::Postgres, sql)).await.expect("cart rows");
    rows.iter().map(|r| (r.try_get("", "product_id").unwrap(), r.try_get("", "quantity").unwrap())).collect()
}

fn quantity_of(cart: &Value, product: i64) -> i64 {
    line(cart, product).map_or(0, |l| l["quantity"].as_i64().unwrap())
}

#[tokio::test]
async fn anonymous_cart_round_trip_with_a_24_hour_ttl_refreshed_on_write() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let ids = stock_products(&app, &admin, &[10, 10]).await;

    let empty = anon(&app, Method::GET, "/cart", None, None).await;
    assert_eq!(empty.status, StatusCode::OK);
    assert_eq!(empty.body["lines"], json!([]));
    assert!(empty.headers.get("x-session-id").is_none(), "reading issues no session");

    let first = anon(&app, Method::POST, "/cart/items", None, Some(json!({ "productId": ids[0], "quantity": 2 }))).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let session = first.headers["x-session-id"].to_str().unwrap().to_owned();
    assert_eq!(first.body["sessionId"], session.as_str());
    assert_eq!(quantity_of(&first.body, ids[0]), 2);

    let added = anon(&app, Method::POST, "/cart/items", Some(&session), Some(json!({ "productId": ids[0], "quantity": 3 }))).await;
    assert_eq!(quantity_of(&added.body, ids[0]), 5, "adds to the existing line");
    let second = anon(&app, Method::POST, "/cart/items", Some(&session), Some(json!({ "productId": ids[1], "quantity": 1 }))).await;
    assert_eq!(second.body["itemCount"], 6);
    assert_eq!(second.body["total"], json!({ "amount": 5 * 1000 + 2000, "currency": "USD" }));

    let patched = anon(&app, Method::PATCH, &format!("/cart/items/{}", ids[0]), Some(&session), Some(json!({ "quantity": 1 }))).await;
    assert_eq!(quantity_of(&patched.body, ids[0]), 1);
    let removed = anon(&app, Method::DELETE, &format!("/cart/items/{}", ids[1]), Some(&session), None).await;
    assert!(line(&removed.body, ids[1]).is_none());

    let read = anon(&app, Method::GET, "/cart", Some(&session), None).await;
    assert_eq!(quantity_of(&read.body, ids[0]), 1);

    use fred::interfaces::KeysInterface;
    let redis = redis(&app.config.redis_url).await;
    let key = format!("cart:anon:{session}");
    let ttl: i64 = redis.pttl(&key).await.unwrap();
    assert!(ttl > 23 * 3600 * 1000 && ttl <= 24 * 3600 * 1000, "ttl {ttl} ms");
    redis.pexpire::<i64, _>(&key, 60_000, None).await.unwrap();
    anon(&app, Method::POST, "/cart/items", Some(&session), Some(json!({ "productId": ids[1], "quantity": 1 }))).await;
    let refreshed: i64 = redis.pttl(&key).await.unwrap();
    assert!(refreshed > 23 * 3600 * 1000, "a write refreshes the ttl, got {refreshed} ms");

    let cleared = anon(&app, Method::DELETE, "/cart", Some(&session), None).await;
    assert_eq!(cleared.body["lines"], json!([]));
    let exists: i64 = redis.exists(&key).await.unwrap();
    assert_eq!(exists, 0);
}

#[tokio::test]
async fn a_signed_in_cart_survives_losing_redis() {
    let private = PrivateRedis::start();
    let url = private.url();
    let app = spawn_app_with(|config| config.redis_url = url).await;
    let admin = app.admin_token().await;
    let ids = stock_products(&app, &admin, &[5, 5]).await;
    let (token, _) = app.register_customer().await;
    app.post("/cart/items", Some(&token), json!({ "productId": ids[0], "quantity": 2 })).await;
    app.post("/cart/items", Some(&token), json!({ "productId": ids[1], "quantity": 1 })).await;
    let before = app.get("/cart", Some(&token)).await;
    assert_eq!(before.body["itemCount"], 3);

    use fred::interfaces::ClientLike;
    let redis = redis(&private.url()).await;
    redis.flushall::<()>(false).await.unwrap();

    let after = app.get("/cart", Some(&token)).await;
    assert_eq!(after.status, StatusCode::OK);
    assert_eq!(after.body, before.body);
    // and the cart keeps working
    let added = app.post("/cart/items", Some(&token), json!({ "productId": ids[1], "quantity": 1 })).await;
    assert_eq!(quantity_of(&added.body, ids[1]), 2);
}

#[tokio::test]
async fn the_read_cache_never_serves_a_cart_older_than_the_last_write() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let ids = stock_products(&app, &admin, &[50]).await;
    let (token, _) = app.register_customer().await;
    for expected in 1..=5 {
        app.post("/cart/items", Some(&token), json!({ "productId": ids[0], "quantity": 1 })).await;
        let read = app.get("/cart", Some(&token)).await;
        assert_eq!(quantity_of(&read.body, ids[0]), expected);
    }
}

#[tokio::test]
async fn login_merges_the_anonymous_cart_once_capping_by_stock_and_line_limit() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    // overlap, capped by stock, capped by the line limit, new line
    let ids = stock_products(&app, &admin, &[20, 4, 500, 10]).await;
    let email = "merge@example.com";
    let registered = app.post("/auth/register", None, json!({ "email": email, "password": "merge-password" })).await;
    let token = registered.body["accessToken"].as_str().unwrap().to_owned();
    app.post("/cart/items", Some(&token), json!({ "productId": ids[0], "quantity": 2 })).await;
    app.post("/cart/items", Some(&token), json!({ "productId": ids[1], "quantity": 3 })).await;
    app.post("/cart/items", Some(&token), json!({ "productId": ids[2], "quantity": 90 })).await;

    let first = anon(&app, Method::POST, "/cart/items", None, Some(json!({ "productId": ids[0], "quantity": 5 }))).await;
    let session = first.headers["x-session-id"].to_str().unwrap().to_owned();
    anon(&app, Method::POST, "/cart/items", Some(&session), Some(json!({ "productId": ids[1], "quantity": 3 }))).await;
    anon(&app, Method::POST, "/cart/items", Some(&session), Some(json!({ "productId": ids[2], "quantity": 20 }))).await;
    anon(&app, Method::POST, "/cart/items", Some(&session), Some(json!({ "productId": ids[3], "quantity": 1 }))).await;

    let login = |session: String| {
        let app = &app;
        async move {
            let response = app
                .client
                .post(format!("{}/auth/login", app.address))
                .header("X-Session-Id", session)
                .json(&json!({ "email": email, "password": "merge-password" }))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response.json::<Value>().await.unwrap()
        }
    };
    let merged = login(session.clone()).await;
    let report = &merged["cartMerge"];
    assert_eq!(report["alreadyMerged"], false);
    assert_eq!(report["merged"], json!([{ "productId": ids[0], "quantity": 5 }, { "productId": ids[3], "quantity": 1 }]));
    assert_eq!(
        report["capped"],
        json!([
            { "productId": ids[1], "requested": 3, "added": 1 },
            { "productId": ids[2], "requested": 20, "added": 9 },
        ])
    );

    let cart = app.get("/cart", Some(&token)).await.body;
    assert_eq!(quantity_of(&cart, ids[0]), 7);
    assert_eq!(quantity_of(&cart, ids[1]), 4, "capped by stock");
    assert_eq!(quantity_of(&cart, ids[2]), 99, "capped by the line limit");
    assert_eq!(quantity_of(&cart, ids[3]), 1);

    // the anonymous cart is gone, and a second login with the same session merges nothing
    let anonymous_after = anon(&app, Method::GET, "/cart", Some(&session), None).await;
    assert_eq!(anonymous_after.body["lines"], json!([]));
    let again = login(session.clone()).await;
    assert_eq!(again["cartMerge"]["alreadyMerged"], true);
    assert_eq!(app.get("/cart", Some(&token)).await.body, cart);

    // the shopper goes on with the same session after signing out: what they add is merged at
    // the next login, not thrown away as already merged
    let later = anon(&app, Method::POST, "/cart/items", Some(&session), Some(json!({ "productId": ids[3], "quantity": 2 }))).await;
    assert_eq!(later.status, StatusCode::OK, "{}", later.text);
    let third = login(session.clone()).await;
    assert_eq!(third["cartMerge"]["alreadyMerged"], false);
    assert_eq!(third["cartMerge"]["merged"], json!([{ "productId": ids[3], "quantity": 2 }]));
    assert_eq!(quantity_of(&app.get("/cart", Some(&token)).await.body, ids[3]), 3);
    assert_eq!(anon(&app, Method::GET, "/cart", Some(&session), None).await.body["lines"], json!([]));
}

#[tokio::test]
async fn a_price_change_since_adding_is_flagged() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let ids = stock_products(&app, &admin, &[5, 5, 5, 5]).await;
    let (token, _) = app.register_customer().await;
    app.post("/cart/items", Some(&token), json!({ "productId": ids[0], "quantity": 2 })).await;
    app.post("/cart/items", Some(&token), json!({ "productId": ids[1], "quantity": 1 })).await;
    let before = app.get("/cart", Some(&token)).await.body;
    assert_eq!(line(&before, ids[0]).unwrap()["priceChanged"], false);

    app.patch(&format!("/admin/products/{}", ids[0]), Some(&admin), json!({ "price": { "amount": 1_250, "currency": "USD" } })).await;
    let after = app.get("/cart", Some(&token)).await.body;
    let l = line(&after, ids[0]).unwrap();
    assert_eq!(l["priceChanged"], true);
    assert_eq!(l["unitPrice"]["amount"], 1000);
    assert_eq!(l["currentPrice"]["amount"], 1250);
    assert_eq!(l["lineTotal"]["amount"], 2500);
    assert_eq!(after["total"]["amount"], 2500 + 2000);

    // repriced in another currency: today's price says so, and the line is not summed with
    // (or bought with) the dollars of the rest
    let repriced =
        app.patch(&format!("/admin/products/{}", ids[1]), Some(&admin), json!({ "price": { "amount": 1_800, "currency": "EUR" } })).await;
    assert_eq!(repriced.status, StatusCode::OK, "{}", repriced.text);
    let after = app.get("/cart", Some(&token)).await.body;
    let l = line(&after, ids[1]).unwrap();
    assert_eq!((l["unitPrice"]["amount"].as_i64(), l["unitPrice"]["currency"].as_str()), (Some(2000), Some("USD")));
    assert_eq!((l["currentPrice"]["amount"].as_i64(), l["currentPrice"]["currency"].as_str()), (Some(1800), Some("EUR")));
    assert_eq!(l["lineTotal"]["currency"], "EUR");
    assert_eq!((l["priceChanged"].as_bool(), l["purchasable"].as_bool()), (Some(true), Some(false)));
    assert_eq!((after["total"]["amount"].as_i64(), after["total"]["currency"].as_str()), (Some(2500), Some("USD")));

    // an anonymous add answers with today's price of the lines already there (priced beside
    // the change) and of the product added
    let more = &ids[2..];
    let first = anon(&app, Method::POST, "/cart/items", None, Some(json!({ "productId": more[0], "quantity": 2 }))).await;
    let session = first.headers["x-session-id"].to_str().unwrap().to_owned();
    app.patch(&format!("/admin/products/{}", more[0]), Some(&admin), json!({ "price": { "amount": 900, "currency": "USD" } })).await;
    let added = anon(&app, Method::POST, "/cart/items", Some(&session), Some(json!({ "productId": more[1], "quantity": 1 }))).await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.text);
    let l = line(&added.body, more[0]).unwrap();
    assert_eq!((l["unitPrice"]["amount"].as_i64(), l["currentPrice"]["amount"].as_i64()), (Some(3000), Some(900)));
    assert_eq!((l["priceChanged"].as_bool(), l["lineTotal"]["amount"].as_i64()), (Some(true), Some(1800)));
    assert_eq!(line(&added.body, more[1]).unwrap()["currentPrice"]["amount"], 4000);
    assert_eq!(added.body["total"]["amount"], 1800 + 4000);
}

#[tokio::test]
async fn carts_are_priced_from_live_products_by_a_query_planned_once() {
    use emporium_entities::store::carts::cart_products;
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let ids = stock_products(&app, &admin, &[4, 6, 8]).await;
    app.delete(&format!("/admin/products/{}", ids[1]), Some(&admin)).await;
    let sql = |sql: String| Statement::from_string(DbBackend::Postgres, sql);
    // a product without an inventory row has no units
    app.db().execute_raw(sql(format!("DELETE FROM inventory WHERE product_id = {}", ids[2]))).await.unwrap();

    assert!(cart_products(app.db(), &[]).await.unwrap().is_empty());
    let one = cart_products(app.db(), &[ids[0]]).await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!((one[0].id, one[0].sku.as_str(), one[0].price_minor, one[0].currency.as_str()), (ids[0], "CART-0", 1_000, "USD"));
    assert_eq!((one[0].available, one[0].deleted), (4, false));
    // unknown ids are left out; deleted products come back flagged, for the cart to show them
    let mut all = cart_products(app.db(), &[ids[2], 987_654, ids[1], ids[0]]).await.unwrap();
    all.sort_by_key(|p| p.id);
    let facts: Vec<(i64, i64, i32, bool)> = all.iter().map(|p| (p.id, p.price_minor, p.available, p.deleted)).collect();
    assert_eq!(facts, [(ids[0], 1_000, 4, false), (ids[1], 2_000, 6, true), (ids[2], 3_000, 0, false)]);

    // Planned once per connection, not at every call: as a prepared statement, `id = ANY($1)`
    // was planned again at each execution (see migration m20261208_000001). Nothing outside
    // the function shows its plan cache, so this checks the setting that gives it.
    let config = app
        .db()
        .query_one_raw(sql("SELECT array_to_string(proconfig, ',') AS config FROM pg_proc WHERE proname = 'cart_products'".to_owned()))
        .await
        .unwrap()
        .expect("the function exists");
    assert_eq!(config.try_get::<String>("", "config").unwrap(), "plan_cache_mode=force_generic_plan");
}

#[tokio::test]
async fn stock_limits_and_bad_input_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let ids = stock_products(&app, &admin, &[3, 200, 5]).await;
    app.delete(&format!("/admin/products/{}", ids[2]), Some(&admin)).await;
    let (token, user) = app.register_customer().await;
    app.post("/cart/items", Some(&token), json!({ "productId": ids[0], "quantity": 2 })).await;
    app.post("/cart/items", Some(&token), json!({ "productId": ids[1], "quantity": 95 })).await;
    let before = app.get("/cart", Some(&token)).await.body;
    let stored_before = stored_lines(&app, &user).await;
    assert_eq!(stored_before, [(ids[0], 2), (ids[1], 95)]);

    let over_stock = app.post("/cart/items", Some(&token), json!({ "productId": ids[0], "quantity": 2 })).await;
    assert_eq!(over_stock.status, StatusCode::CONFLICT, "{}", over_stock.text);
    assert_eq!(over_stock.code(), "insufficient_stock");
    assert_eq!(over_stock.body["details"]["available"], 3);
    assert_eq!(over_stock.body["details"]["inCart"], 2);

    let cases = [
        (
            Method::POST,
            "/cart/items".to_owned(),
            json!({ "productId": ids[1], "quantity": 5 }),
            StatusCode::CONFLICT,
            "line_limit_exceeded",
        ),
        (Method::PATCH, format!("/cart/items/{}", ids[0]), json!({ "quantity": 4 }), StatusCode::CONFLICT, "insufficient_stock"),
        (
            Method::POST,
            "/cart/items".to_owned(),
            json!({ "productId": ids[0], "quantity": 0 }),
            StatusCode::BAD_REQUEST,
            "invalid_quantity",
        ),
        (
            Method::POST,
            "/cart/items".to_owned(),
            json!({ "productId": ids[0], "quantity": -1 }),
            StatusCode::BAD_REQUEST,
            "invalid_quantity",
        ),
        (
            Method::POST,
            "/cart/items".to_owned(),
            json!({ "productId": ids[0], "quantity": 100 }),
            StatusCode::BAD_REQUEST,
            "invalid_quantity",
        ),
        (Method::PATCH, format!("/cart/items/{}", ids[0]), json!({ "quantity": 0 }), StatusCode::BAD_REQUEST, "invalid_quantity"),
        (
            Method::POST,
            "/cart/items".to_owned(),
            json!({ "productId": 987_654, "quantity": 1 }),
            StatusCode::NOT_FOUND,
            "product_not_found",
        ),
        (Method::POST, "/cart/items".to_owned(), json!({ "productId": ids[2], "quantity": 1 }), StatusCode::NOT_FOUND, "product_not_found"),
        (Method::POST, "/cart/items".to_owned(), json!({ "productId": "one", "quantity": 1 }), StatusCode::BAD_REQUEST, "invalid_body"),
        (Method::PATCH, "/cart/items/987654".to_owned(), json!({ "quantity": 1 }), StatusCode::NOT_FOUND, "cart_item_not_found"),
        (Method::PATCH, format!("/cart/items/{}", ids[0]), json!({ "quantity": 100 }), StatusCode::BAD_REQUEST, "invalid_quantity"),
        (Method::PATCH, format!("/cart/items/{}", ids[0]), json!({ "quantity": -3 }), StatusCode::BAD_REQUEST, "invalid_quantity"),
        (Method::PATCH, format!("/cart/items/{}", ids[0]), json!({}), StatusCode::BAD_REQUEST, "invalid_body"),
        (Method::POST, "/cart/items".to_owned(), json!({ "productId": ids[0] }), StatusCode::BAD_REQUEST, "invalid_body"),
        (Method::POST, "/cart/items".to_owned(), json!({ "quantity": 1 }), StatusCode::BAD_REQUEST, "invalid_body"),
        (Method::POST, "/cart/items".to_owned(), json!({ "productId": ids[0], "quantity": 1.5 }), StatusCode::BAD_REQUEST, "invalid_body"),
        (Method::PATCH, "/cart/items/abc".to_owned(), json!({ "quantity": 1 }), StatusCode::BAD_REQUEST, "invalid_parameter"),
        (Method::DELETE, "/cart/items/abc".to_owned(), json!(null), StatusCode::BAD_REQUEST, "invalid_parameter"),
    ];
    for (method, path, body, status, code) in cases {
        let response = app.request(method.clone(), &path, Some(&token), Some(body.clone())).await;
        assert_eq!(response.status, status, "{method} {path} {body}: {}", response.text);
        assert_eq!(response.code(), code, "{method} {path} {body}: {}", response.text);
    }
    let not_in_cart = app.delete("/cart/items/987654", Some(&token)).await;
    assert_eq!(not_in_cart.code(), "cart_item_not_found");
    let malformed = app.request_raw(Method::POST, "/cart/items", Some(&token), "application/json", "{\"productId\": ").await;
    assert_eq!((malformed.status, malformed.code()), (StatusCode::BAD_REQUEST, "invalid_body"), "{}", malformed.text);
    let moved_none = app.post(&format!("/wishlist/{}/move-to-cart", ids[0]), Some(&token), json!({ "quantity": 0 })).await;
    assert_eq!((moved_none.status, moved_none.code()), (StatusCode::BAD_REQUEST, "invalid_quantity"), "{}", moved_none.text);
    assert_eq!(app.get("/cart", Some(&token)).await.body, before, "a refused change changed the cart");
    assert_eq!(stored_lines(&app, &user).await, stored_before, "a refused change changed the stored cart");

    // the same rules for anonymous carts
    let first = anon(&app, Method::POST, "/cart/items", None, Some(json!({ "productId": ids[0], "quantity": 3 }))).await;
    let session = first.headers["x-session-id"].to_str().unwrap().to_owned();
    let anon_over = anon(&app, Method::POST, "/cart/items", Some(&session), Some(json!({ "productId": ids[0], "quantity": 1 }))).await;
    assert_eq!(anon_over.code(), "insufficient_stock");
    assert_eq!(anon_over.body["details"]["available"], 3);
    let anon_deleted = anon(&app, Method::POST, "/cart/items", Some(&session), Some(json!({ "productId": ids[2], "quantity": 1 }))).await;
    assert_eq!(anon_deleted.code(), "product_not_found");
    assert_eq!(quantity_of(&anon(&app, Method::GET, "/cart", Some(&session), None).await.body, ids[0]), 3);

    let bad_session = anon(&app, Method::GET, "/cart", Some("not-a-session"), None).await;
    assert_eq!(bad_session.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad_session.code(), "invalid_session");
    let bad_session_write =
        anon(&app, Method::POST, "/cart/items", Some("ABCDEF"), Some(json!({ "productId": ids[0], "quantity": 1 }))).await;
    assert_eq!((bad_session_write.status, bad_session_write.code()), (StatusCode::BAD_REQUEST, "invalid_session"));
    assert!(bad_session_write.headers.get("x-session-id").is_none(), "no session is issued for a refused write");
    let bad_token = app.get("/cart", Some("garbage")).await;
    assert_eq!(bad_token.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn twenty_concurrent_adds_to_one_line_all_count() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let ids = stock_products(&app, &admin, &[100]).await;
    let (token, _) = app.register_customer().await;
    let adds = (0..20).map(|_| app.post("/cart/items", Some(&token), json!({ "productId": ids[0], "quantity": 1 })));
    for response in futures::future::join_all(adds).await {
        assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    }
    assert_eq!(quantity_of(&app.get("/cart", Some(&token)).await.body, ids[0]), 20);
    // every change went to Postgres through the batching writer, and /metrics shows it
    let metrics = app.get("/metrics", None).await.text;
    assert!(metrics.contains("cart_write_batch_size_sum 20\n"), "{metrics}");
    // and each batch's time in Postgres, one observation per batch
    let count = |name: &str| metrics.lines().find_map(|l| l.strip_prefix(name)).map(|n| n.trim().parse::<u64>().unwrap());
    let batches = count("cart_write_batch_size_count ").expect("batch sizes counted");
    assert_eq!(count("cart_write_batch_seconds_count "), Some(batches), "{metrics}");

    let first = anon(&app, Method::POST, "/cart/items", None, Some(json!({ "productId": ids[0], "quantity": 1 }))).await;
    let session = first.headers["x-session-id"].to_str().unwrap().to_owned();
    let adds =
        (0..19).map(|_| anon(&app, Method::POST, "/cart/items", Some(&session), Some(json!({ "productId": ids[0], "quantity": 1 }))));
    futures::future::join_all(adds).await;
    assert_eq!(quantity_of(&anon(&app, Method::GET, "/cart", Some(&session), None).await.body, ids[0]), 20);
}

/// A transaction of its own holding the lock of `user`'s cart until it ends.
async fn lock_cart_elsewhere(app: &TestApp, user: uuid::Uuid) -> sea_orm::DatabaseTransaction {
    use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
    let blocker = app.db().begin().await.unwrap();
    let lock = format!("SELECT 1 FROM carts WHERE user_id = '{user}' FOR UPDATE");
    blocker.execute_raw(Statement::from_string(DbBackend::Postgres, lock)).await.unwrap();
    blocker
}

/// An app with products of the given stocks and two signed-in shoppers, (user id, id string),
/// and the second's token; the first has a cart already (a line of the last product), so it can
/// be locked.
async fn two_shoppers(stocks: &[i64]) -> (TestApp, Vec<i64>, (uuid::Uuid, String), (uuid::Uuid, String, String)) {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let ids = stock_products(&app, &admin, stocks).await;
    let (token_a, a) = app.register_customer().await;
    let (token_b, b) = app.register_customer().await;
    let created = app.post("/cart/items", Some(&token_a), json!({ "productId": ids[ids.len() - 1], "quantity": 1 })).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text);
    let (user_a, user_b) = (uuid::Uuid::parse_str(&a).unwrap(), uuid::Uuid::parse_str(&b).unwrap());
    (app, ids, (user_a, a), (user_b, b, token_b))
}

/// Sends `changes` to `writer` (which runs one batch at a time) as one batch: a first change
/// to `holder`'s cart waits for that cart's lock, taken here, while the others queue up behind
/// it; then the lock goes. Returns the outcomes of `changes`.
async fn send_as_one_batch(
    app: &TestApp,
    writer: &emporium_api::cart::CartWriter,
    holder: uuid::Uuid,
    first: emporium_entities::store::carts::CartChange,
    changes: &[(uuid::Uuid, emporium_entities::store::carts::CartChange)],
) -> Vec<Result<emporium_entities::store::carts::PricedCart, emporium_entities::store::carts::CartError>> {
    let blocker = lock_cart_elsewhere(app, holder).await;
    let first = tokio::spawn({
        let writer = writer.clone();
        async move { writer.change(holder, first).await }
    });
    let waiting = "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'";
    let mut patience = 200;
    while emporium_tests::count(app.db(), waiting).await == 0 {
        patience -= 1;
        assert!(patience > 0, "the writer's first change never waited for the cart lock");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let mut queued: Vec<_> = changes.iter().map(|&(user, change)| Box::pin(writer.change(user, change))).collect();
    for change in &mut queued {
        // one poll puts the change in the queue; its answer waits for the batch
        assert!(futures::poll!(change.as_mut()).is_pending());
    }
    blocker.commit().await.unwrap();
    first.await.unwrap().expect("the first change applies");
    futures::future::join_all(queued).await
}

/// Changes that queue up behind a busy writer go to Postgres as one batch: each comes out as if
/// it had been sent alone (refusals included), for several shoppers at once; and a change that
/// makes Postgres fail the batch fails alone, the others applied once.
#[tokio::test]
async fn changes_sent_together_in_one_batch_come_out_as_if_each_were_sent_alone() {
    use emporium_api::cart::CartWriter;
    use emporium_entities::store::carts::{CartChange, CartError, PricedCart};

    let (app, ids, (user_a, a), (user_b, b, _)) = two_shoppers(&[5, 100]).await;
    let writer_metrics = emporium_api::metrics::Metrics::new().cart_writer();
    let (batch_sizes, batch_seconds) = (writer_metrics.batch_size.clone(), writer_metrics.batch_seconds.clone());
    let writer = CartWriter::spawn(app.db().clone(), 1, Some(writer_metrics));
    let add = |product_id, quantity| CartChange::Add { product_id, quantity };
    let quantities = |priced: &PricedCart| {
        let mut lines: Vec<_> = priced.cart.lines.iter().map(|l| (l.product_id, l.quantity)).collect();
        lines.sort();
        lines
    };

    let changes = [
        (user_a, add(ids[0], 2)),
        (user_b, add(ids[0], 2)),
        (user_a, add(ids[0], 4)),
        (user_b, CartChange::Set { product_id: ids[1], quantity: 3 }),
        (user_b, add(ids[0], 1)),
    ];
    let mut outcomes = send_as_one_batch(&app, &writer, user_a, add(ids[1], 1), &changes).await.into_iter();
    assert_eq!(quantities(&outcomes.next().unwrap().expect("a's add")), [(ids[0], 2), (ids[1], 2)]);
    assert_eq!(quantities(&outcomes.next().unwrap().expect("b's add")), [(ids[0], 2)]);
    match outcomes.next().unwrap() {
        Err(CartError::InsufficientStock { available: 5, in_cart: 2 }) => {}
        other => panic!("a's second add should be refused for stock, got {other:?}"),
    }
    assert!(matches!(outcomes.next().unwrap(), Err(CartError::LineNotFound)), "b has no line to set");
    assert_eq!(quantities(&outcomes.next().unwrap().expect("b's second add")), [(ids[0], 3)]);
    assert_eq!(stored_lines(&app, &a).await, [(ids[0], 2), (ids[1], 2)]);
    assert_eq!(stored_lines(&app, &b).await, [(ids[0], 3)]);
    // the first change alone, then the five queued behind it as one batch
    assert_eq!((batch_sizes.get_sample_count(), batch_sizes.get_sample_sum()), (2, 6.0));

    // An add that overflows a line's quantity is an error in Postgres, which fails the batch;
    // the API never sends one (it refuses quantities over 99), so it stands for any failure.
    let changes = [(user_b, add(ids[0], 1)), (user_a, add(ids[1], i32::MAX)), (user_a, add(ids[0], 1))];
    let outcomes = send_as_one_batch(&app, &writer, user_a, add(ids[1], 1), &changes).await;
    assert_eq!(quantities(outcomes[0].as_ref().expect("b's add")), [(ids[0], 4)]);
    assert!(matches!(outcomes[1], Err(CartError::Store(_))), "{:?}", outcomes[1]);
    assert_eq!(quantities(outcomes[2].as_ref().expect("a's add")), [(ids[0], 3), (ids[1], 3)]);
    assert_eq!(stored_lines(&app, &a).await, [(ids[0], 3), (ids[1], 3)]);
    assert_eq!(stored_lines(&app, &b).await, [(ids[0], 4)]);
    assert_eq!((batch_sizes.get_sample_count(), batch_sizes.get_sample_sum()), (4, 10.0));
    assert_eq!(batch_seconds.get_sample_count(), 4, "each batch timed once");
}

/// Many shoppers' changes of every kind in one `cart_changes` call (several changes to one cart
/// included, so it runs them in rounds) give each change the outcome it gets when sent alone, in
/// the same order, to a twin shopper: the same refusals, versions, lines and prices, and the
/// same carts stored, lines in the same order.
#[tokio::test]
async fn a_batch_of_random_changes_matches_the_same_changes_sent_one_at_a_time() {
    use emporium_entities::store::carts::{self, CartChange, CartError, PricedCart};

    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let mut products = stock_products(&app, &admin, &[3, 50, 200, 10, 10]).await;
    let euro = app
        .patch(&format!("/admin/products/{}", products[3]), Some(&admin), json!({ "price": { "amount": 900, "currency": "EUR" } }))
        .await;
    assert_eq!(euro.status, StatusCode::OK, "{}", euro.text);
    assert_eq!(app.delete(&format!("/admin/products/{}", products[4]), Some(&admin)).await.status, StatusCode::NO_CONTENT);
    products.push(999_999); // no such product
    let mut batched = Vec::new();
    let mut alone = Vec::new();
    for _ in 0..5 {
        batched.push(uuid::Uuid::parse_str(&app.register_customer().await.1).unwrap());
        alone.push(uuid::Uuid::parse_str(&app.register_customer().await.1).unwrap());
    }
    // xorshift: the same changes on every run, no seed to pass around
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut pick = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let outcome = |result: Result<PricedCart, CartError>| match result {
        Ok(priced) => {
            let lines: Vec<_> = priced.cart.lines.iter().map(|l| (l.product_id, l.quantity, l.unit_price_minor)).collect();
            let mut prices: Vec<_> = priced.products.iter().map(|p| (p.id, p.price_minor, p.available, p.deleted)).collect();
            prices.sort();
            format!("v{} {lines:?} {prices:?}", priced.cart.version)
        }
        Err(refused) => format!("{refused:?}"),
    };
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..40 {
        let size = 1 + pick(16);
        let mut batch = Vec::with_capacity(size);
        for _ in 0..size {
            let (product_id, quantity) = (products[pick(products.len())], [1, 2, 50, 60][pick(4)]);
            let change = match pick(10) {
                0..=4 => CartChange::Add { product_id, quantity },
                5..=6 => CartChange::Set { product_id, quantity },
                7..=8 => CartChange::Remove { product_id },
                _ => CartChange::Clear,
            };
            batch.push((pick(batched.len()), change));
        }
        let changes: Vec<_> = batch.iter().map(|&(shopper, change)| (batched[shopper], change)).collect();
        let together = carts::change_user_carts(app.db(), &changes, 99, None).await.expect("the batch runs");
        assert_eq!(together.len(), batch.len());
        for (&(shopper, change), together) in batch.iter().zip(together) {
            let by_itself = carts::change_user_cart(app.db(), alone[shopper], change, 99).await;
            let (together, by_itself) = (outcome(together), outcome(by_itself));
            assert_eq!(together, by_itself, "{change:?} to shopper {shopper}");
            *kinds.entry(together.split([' ', '{']).next().unwrap().trim_end_matches(char::is_numeric).to_owned()).or_default() += 1;
        }
    }
    for (b, a) in batched.iter().zip(&alone) {
        let (b, a) = (carts::load_user_cart(app.db(), *b).await.unwrap(), carts::load_user_cart(app.db(), *a).await.unwrap());
        let lines = |cart: &carts::UserCart| cart.lines.iter().map(|l| (l.product_id, l.quantity)).collect::<Vec<_>>();
        assert_eq!((b.version, lines(&b)), (a.version, lines(&a)), "stored carts");
    }
    // every outcome came up, or the changes prove less than they seem to
    let seen: Vec<&str> = kinds.keys().map(String::as_str).collect();
    assert_eq!(seen, ["CurrencyMismatch", "InsufficientStock", "LineLimit", "LineNotFound", "ProductNotFound", "v"], "{kinds:?}");
}

/// Lines one shopper adds in one batch list in the order they were added, as lines added one
/// request at a time do, not by product id (one transaction, but each line its own time).
#[tokio::test]
async fn lines_added_in_one_batch_keep_the_order_they_were_added_in() {
    use emporium_api::cart::CartWriter;
    use emporium_entities::store::carts::CartChange;

    let (app, ids, (user_a, _), (user_b, _, token)) = two_shoppers(&[10, 10, 10]).await;
    let writer = CartWriter::spawn(app.db().clone(), 1, None);
    let add = |product_id| CartChange::Add { product_id, quantity: 1 };
    let arrival = [ids[2], ids[0], ids[1]];
    let changes: Vec<_> = arrival.iter().map(|&id| (user_b, add(id))).collect();
    let outcomes = send_as_one_batch(&app, &writer, user_a, add(ids[0]), &changes).await;
    let listed = |lines: &[emporium_entities::store::carts::CartLine]| lines.iter().map(|l| l.product_id).collect::<Vec<_>>();
    let last = outcomes.last().unwrap().as_ref().expect("b's third add");
    assert_eq!(listed(&last.cart.lines), arrival, "the batch's answer");

    let cart = app.get("/cart", Some(&token)).await;
    let shown: Vec<i64> = cart.body["lines"].as_array().unwrap().iter().map(|l| l["productId"].as_i64().unwrap()).collect();
    assert_eq!(shown, arrival, "GET /cart");
}

/// A cart that another transaction keeps locked holds up its own changes only: the batch that
/// waits for it gives up after its lock timeout, and the next batch goes ahead while that
/// cart's change waits on its own.
#[tokio::test]
async fn a_cart_locked_elsewhere_holds_up_only_its_own_changes() {
    use emporium_api::cart::CartWriter;
    use emporium_entities::store::carts::CartChange;

    let (app, ids, (user_a, a), (user_b, _, _)) = two_shoppers(&[100]).await;
    let writer = CartWriter::spawn(app.db().clone(), 1, None);
    let add = CartChange::Add { product_id: ids[0], quantity: 1 };

    let blocker = lock_cart_elsewhere(&app, user_a).await;
    let mut a_change = Box::pin(writer.change(user_a, add));
    assert!(futures::poll!(a_change.as_mut()).is_pending());
    // B's change queues behind A's batch, the writer's only one
    let b_change = writer.change(user_b, add);
    let b_outcome = tokio::time::timeout(Duration::from_secs(10), b_change).await.expect("b's change waited for a's cart");
    assert_eq!(b_outcome.expect("b's add").cart.lines[0].quantity, 1);
    assert!(futures::poll!(a_change.as_mut()).is_pending(), "a's change cannot apply while its cart is locked");
    blocker.commit().await.unwrap();
    assert_eq!(a_change.await.expect("a's add").cart.lines[0].quantity, 2);
    assert_eq!(stored_lines(&app, &a).await, [(ids[0], 2)]);
}

/// A device listening on `GET /cart/events`.
struct CartEventsClient {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

impl CartEventsClient {
    async fn open(app: &TestApp, token: &str) -> Self {
        let response = app.client.get(format!("{}/cart/events", app.address)).bearer_auth(token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        Self { body: Box::pin(response.bytes_stream()), buffer: String::new() }
    }

    /// The next cart pushed, within 10 s.
    async fn next(&mut self) -> Value {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                    return serde_json::from_str(data).unwrap();
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.body.next()).await.expect("an event within 10 s");
            self.buffer.push_str(std::str::from_utf8(&chunk.unwrap().unwrap()).unwrap());
        }
    }
}

/// The Redis channel of `user`'s cart events.
fn cart_events_channel(user: &str) -> String {
    format!("cart-events:{user}")
}

/// How many connections Redis has subscribed to `user`'s cart events.
async fn cart_event_subscribers(redis: &fred::clients::Client, user: &str) -> i64 {
    use fred::interfaces::PubsubInterface;
    let counts: Vec<fred::types::Value> = redis.pubsub_numsub(cart_events_channel(user)).await.unwrap();
    counts[1].as_i64().unwrap()
}

#[tokio::test]
async fn another_device_receives_cart_changes_as_server_sent_events() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let ids = stock_products(&app, &admin, &[10]).await;
    let email = "devices@example.com";
    let phone = app.post("/auth/register", None, json!({ "email": email, "password": "two-devices" })).await;
    let phone = phone.body["accessToken"].as_str().unwrap().to_owned();
    let laptop = app.post("/auth/login", None, json!({ "email": email, "password": "two-devices" })).await;
    let laptop = laptop.body["accessToken"].as_str().unwrap().to_owned();

    let mut phone_events = CartEventsClient::open(&app, &phone).await;
    let initial = phone_events.next().await;
    assert_eq!(initial["lines"], json!([]));

    let added = app.post("/cart/items", Some(&laptop), json!({ "productId": ids[0], "quantity": 3 })).await;
    assert_eq!(added.status, StatusCode::OK);
    let pushed = phone_events.next().await;
    assert_eq!(quantity_of(&pushed, ids[0]), 3);
    assert_eq!(pushed, added.body);

    // another user's changes are not sent to this user
    let (stranger, _) = app.register_customer().await;
    app.post("/cart/items", Some(&stranger), json!({ "productId": ids[0], "quantity": 1 })).await;
    app.delete("/cart", Some(&laptop)).await;
    let cleared = phone_events.next().await;
    assert_eq!(cleared["lines"], json!([]), "the next event is this user's, not the stranger's");

    assert_eq!(app.get("/cart/events", None).await.status, StatusCode::UNAUTHORIZED);
}

/// An instance subscribes to a user's cart events while a device of that user listens on it,
/// once however many devices, and not at all otherwise: it never hears of other carts.
#[tokio::test]
async fn an_instance_subscribes_to_the_cart_events_of_its_listening_users_only() {
    // a device that left is noticed at the second keep-alive written to it
    let app = spawn_app_with(|config| config.cart_events_keep_alive = Duration::from_millis(200)).await;
    let redis = redis(&app.config.redis_url).await;
    let (token, user) = app.register_customer().await;
    let (_, bystander) = app.register_customer().await;
    assert_eq!(cart_event_subscribers(&redis, &user).await, 0);

    let mut phone = CartEventsClient::open(&app, &token).await;
    assert_eq!(phone.next().await["lines"], json!([]));
    let mut laptop = CartEventsClient::open(&app, &token).await;
    assert_eq!(laptop.next().await["lines"], json!([]));
    assert_eq!(cart_event_subscribers(&redis, &user).await, 1, "one subscription for both devices");
    assert_eq!(cart_event_subscribers(&redis, &bystander).await, 0);

    drop(phone);
    let admin = app.admin_token().await;
    let ids = stock_products(&app, &admin, &[10]).await;
    app.post("/cart/items", Some(&token), json!({ "productId": ids[0], "quantity": 2 })).await;
    assert_eq!(quantity_of(&laptop.next().await, ids[0]), 2, "the laptop still hears after the phone left");

    drop(laptop);
    let mut patience = 100;
    while cart_event_subscribers(&redis, &user).await != 0 {
        patience -= 1;
        assert!(patience > 0, "the subscription outlived the last device");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Events arriving faster than an instance routes them (here thousands published at once) make
/// its devices resend the cart as it is now; live updates go on afterwards.
#[tokio::test]
async fn live_updates_go_on_after_a_burst_of_events_too_fast_to_route() {
    use fred::interfaces::PubsubInterface;

    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let ids = stock_products(&app, &admin, &[10]).await;
    let (token, user) = app.register_customer().await;
    let mut device = CartEventsClient::open(&app, &token).await;
    assert_eq!(device.next().await["lines"], json!([]));

    let redis = redis(&app.config.redis_url).await;
    let burst = redis.pipeline();
    let noise = "x".repeat(1_000);
    for _ in 0..5_000 {
        let _: () = burst.publish(cart_events_channel(&user), noise.as_str()).await.unwrap();
    }
    let _: Vec<i64> = burst.all().await.unwrap();

    app.post("/cart/items", Some(&token), json!({ "productId": ids[0], "quantity": 3 })).await;
    // resent carts may come first; the change must come
    let mut resent = 0;
    while quantity_of(&device.next().await, ids[0]) != 3 {
        resent += 1;
        assert!(resent < 1_000, "the change never came");
    }
}

#[tokio::test]
async fn a_user_can_neither_see_nor_change_another_users_cart() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let ids = stock_products(&app, &admin, &[10]).await;
    let (alice, alice_id) = app.register_customer().await;
    let (bob, bob_id) = app.register_customer().await;
    app.post("/cart/items", Some(&alice), json!({ "productId": ids[0], "quantity": 2 })).await;

    assert_eq!(app.get("/cart", Some(&bob)).await.body["lines"], json!([]));
    let patch = app.patch(&format!("/cart/items/{}", ids[0]), Some(&bob), json!({ "quantity": 1 })).await;
    assert_eq!(patch.code(), "cart_item_not_found");
    let delete = app.delete(&format!("/cart/items/{}", ids[0]), Some(&bob)).await;
    assert_eq!(delete.code(), "cart_item_not_found");
    app.delete("/cart", Some(&bob)).await;
    assert_eq!(quantity_of(&app.get("/cart", Some(&alice)).await.body, ids[0]), 2);
    // Postgres, not just the cache, still has Alice's line and nothing of Bob's
    assert_eq!(stored_lines(&app, &alice_id).await, [(ids[0], 2)]);
    assert_eq!(stored_lines(&app, &bob_id).await, []);
}

#[tokio::test]
async fn wishlist_add_list_remove_and_move_to_cart() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let ids = stock_products(&app, &admin, &[10, 10]).await;
    let (token, _) = app.register_customer().await;

    assert_eq!(app.put(&format!("/wishlist/{}", ids[0]), Some(&token), json!(null)).await.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.request(Method::PUT, &format!("/wishlist/{}", ids[0]), Some(&token), None).await.status,
        StatusCode::NO_CONTENT,
        "again is a no-op"
    );
    app.request(Method::PUT, &format!("/wishlist/{}", ids[1]), Some(&token), None).await;
    let list = app.get("/wishlist", Some(&token)).await;
    assert_eq!(list.body.as_array().unwrap().len(), 2);

    let moved = app.post(&format!("/wishlist/{}/move-to-cart", ids[0]), Some(&token), json!({ "quantity": 2 })).await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.text);
    assert_eq!(quantity_of(&moved.body, ids[0]), 2);
    let list = app.get("/wishlist", Some(&token)).await;
    assert_eq!(list.body.as_array().unwrap().iter().map(|i| i["productId"].as_i64().unwrap()).collect::<Vec<_>>(), [ids[1]]);

    let again = app.post(&format!("/wishlist/{}/move-to-cart", ids[0]), Some(&token), json!({})).await;
    assert_eq!(again.code(), "not_in_wishlist");
    assert_eq!(app.delete(&format!("/wishlist/{}", ids[1]), Some(&token)).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.delete(&format!("/wishlist/{}", ids[1]), Some(&token)).await.code(), "not_in_wishlist");
    assert_eq!(app.request(Method::PUT, "/wishlist/987654", Some(&token), None).await.code(), "product_not_found");
    assert_eq!(app.get("/wishlist", None).await.status, StatusCode::UNAUTHORIZED);

    // a move that the cart refuses leaves the wishlist as it was
    app.request(Method::PUT, &format!("/wishlist/{}", ids[1]), Some(&token), None).await;
    let too_many = app.post(&format!("/wishlist/{}/move-to-cart", ids[1]), Some(&token), json!({ "quantity": 11 })).await;
    assert_eq!(too_many.code(), "insufficient_stock");
    assert_eq!(app.get("/wishlist", Some(&token)).await.body.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_cart_holds_one_currency() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let ids = stock_products(&app, &admin, &[10]).await;
    let category = app.create_category(&admin, "Euro things", None).await;
    let mut euro = app.create_product(&admin, category, "CART-EUR", 900, 10).await;
    let euro_id = euro["id"].as_i64().unwrap();
    let repriced =
        app.patch(&format!("/admin/products/{euro_id}"), Some(&admin), json!({ "price": { "amount": 900, "currency": "EUR" } })).await;
    assert_eq!(repriced.status, StatusCode::OK, "{}", repriced.text);
    euro = repriced.body;
    assert_eq!(euro["price"]["currency"], "EUR");

    let (token, _) = app.register_customer().await;
    app.post("/cart/items", Some(&token), json!({ "productId": ids[0], "quantity": 1 })).await;
    let mixed = app.post("/cart/items", Some(&token), json!({ "productId": euro_id, "quantity": 1 })).await;
    assert_eq!((mixed.status, mixed.code()), (StatusCode::CONFLICT, "currency_mismatch"), "{}", mixed.text);
    assert!(mixed.body["message"].as_str().unwrap().contains("EUR"), "{}", mixed.text);
    let cart = app.get("/cart", Some(&token)).await.body;
    assert_eq!((cart["lines"].as_array().unwrap().len(), cart["total"]["amount"].as_i64()), (1, Some(1_000)));

    let first = anon(&app, Method::POST, "/cart/items", None, Some(json!({ "productId": euro_id, "quantity": 2 }))).await;
    let session = first.headers["x-session-id"].to_str().unwrap().to_owned();
    let mixed = anon(&app, Method::POST, "/cart/items", Some(&session), Some(json!({ "productId": ids[0], "quantity": 1 }))).await;
    assert_eq!((mixed.status, mixed.code()), (StatusCode::CONFLICT, "currency_mismatch"), "{}", mixed.text);
    let cart = anon(&app, Method::GET, "/cart", Some(&session), None).await.body;
    assert_eq!((quantity_of(&cart, euro_id), quantity_of(&cart, ids[0])), (2, 0));
    assert_eq!(cart["total"], json!({ "amount": 1_800, "currency": "EUR" }));
}
