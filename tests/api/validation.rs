//! Every client mistake is a 4xx with a stable code, and changes nothing.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use emporium_tests::{TestApp, count, spawn_app};

/// Row counts of every table a bad request could have touched.
async fn snapshot(app: &TestApp) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in ["users", "categories", "products", "inventory", "outbox"] {
        counts.push(count(app.db(), &format!("SELECT COUNT(*) AS n FROM {table}")).await);
    }
    counts.push(count(app.db(), "SELECT COALESCE(SUM(available), 0)::bigint AS n FROM inventory").await);
    counts.push(count(app.db(), "SELECT COUNT(*) AS n FROM products WHERE deleted_at IS NOT NULL").await);
    counts
}

fn product(sku: &str, category: i64, price: Value) -> Value {
    json!({ "sku": sku, "title": "Lamp", "brand": "Lumo", "categoryId": category, "price": price, "stock": 3 })
}

#[tokio::test]
async fn every_bad_input_gets_its_4xx_code_and_changes_nothing() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let category = app.create_category(&admin, "Lighting", None).await;
    let existing = app.create_product(&admin, category, "LAMP-1", 2_500, 4).await;
    let id = existing["id"].as_i64().unwrap();
    let before = snapshot(&app).await;

    let usd = |amount: i64| json!({ "amount": amount, "currency": "USD" });
    // method, path, bearer token, body, expected status and error code
    type Case<'a> = (Method, String, Option<&'a str>, Value, StatusCode, &'a str);
    let cases: Vec<Case> = vec![
        (
            Method::POST,
            "/auth/register".into(),
            None,
            json!({ "email": "not-an-email", "password": "long-enough" }),
            StatusCode::BAD_REQUEST,
            "invalid_email",
        ),
        (
            Method::POST,
            "/auth/register".into(),
            None,
            json!({ "email": "ok@example.com", "password": "short" }),
            StatusCode::BAD_REQUEST,
            "invalid_password",
        ),
        (Method::POST, "/auth/register".into(), None, json!({ "email": "ok@example.com" }), StatusCode::BAD_REQUEST, "invalid_body"),
        (
            Method::POST,
            "/auth/register".into(),
            None,
            json!({ "email": ["a@b.co"], "password": "long-enough" }),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::POST,
            "/admin/products".into(),
            Some(&admin),
            product("NEG-1", category, usd(-1)),
            StatusCode::BAD_REQUEST,
            "invalid_price",
        ),
        (
            Method::POST,
            "/admin/products".into(),
            Some(&admin),
            product("CUR-1", category, json!({ "amount": 100, "currency": "usd" })),
            StatusCode::BAD_REQUEST,
            "invalid_currency",
        ),
        (
            Method::POST,
            "/admin/products".into(),
            Some(&admin),
            product("CAT-1", 999_999, usd(100)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_category",
        ),
        (
            Method::POST,
            "/admin/products".into(),
            Some(&admin),
            product("bad sku!", category, usd(100)),
            StatusCode::BAD_REQUEST,
            "invalid_sku",
        ),
        (
            Method::POST,
            "/admin/products".into(),
            Some(&admin),
            json!({ "sku": "T-1", "title": "  ", "brand": "B", "categoryId": category, "price": usd(1) }),
            StatusCode::BAD_REQUEST,
            "invalid_title",
        ),
        (
            Method::POST,
            "/admin/products".into(),
            Some(&admin),
            json!({ "sku": "T-2", "title": "T", "brand": "B", "categoryId": category, "price": usd(1), "stock": -3 }),
            StatusCode::BAD_REQUEST,
            "invalid_quantity",
        ),
        (
            Method::POST,
            "/admin/products".into(),
            Some(&admin),
            json!({ "sku": "T-3", "title": "T", "brand": "B", "categoryId": category, "price": usd(1), "attributes": [1, 2] }),
            StatusCode::BAD_REQUEST,
            "invalid_attributes",
        ),
        (
            Method::POST,
            "/admin/products".into(),
            Some(&admin),
            json!({ "sku": "T-4", "title": "T", "brand": "B", "categoryId": "seven", "price": usd(1) }),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::PATCH,
            format!("/admin/products/{id}"),
            Some(&admin),
            json!({ "price": usd(-5) }),
            StatusCode::BAD_REQUEST,
            "invalid_price",
        ),
        (
            Method::PATCH,
            format!("/admin/products/{id}"),
            Some(&admin),
            json!({ "categoryId": 424_242 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_category",
        ),
        (Method::PATCH, format!("/admin/products/{id}"), Some(&admin), json!({}), StatusCode::BAD_REQUEST, "empty_update"),
        (
            Method::PATCH,
            "/admin/products/987654".into(),
            Some(&admin),
            json!({ "title": "Ghost" }),
            StatusCode::NOT_FOUND,
            "product_not_found",
        ),
        (
            Method::PUT,
            format!("/admin/products/{id}/inventory"),
            Some(&admin),
            json!({ "available": -1 }),
            StatusCode::BAD_REQUEST,
            "invalid_quantity",
        ),
        (
            Method::PUT,
            format!("/admin/products/{id}/inventory"),
            Some(&admin),
            json!({ "available": "many" }),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::PUT,
            "/admin/products/987654/inventory".into(),
            Some(&admin),
            json!({ "available": 1 }),
            StatusCode::NOT_FOUND,
            "product_not_found",
        ),
        (
            Method::POST,
            "/admin/categories".into(),
            Some(&admin),
            json!({ "name": "Sub", "parentId": 31_337 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_category",
        ),
        (
            Method::POST,
            "/admin/categories".into(),
            Some(&admin),
            json!({ "name": "Sub", "slug": "Not A Slug" }),
            StatusCode::BAD_REQUEST,
            "invalid_slug",
        ),
        (Method::POST, "/admin/categories".into(), Some(&admin), json!({ "name": "" }), StatusCode::BAD_REQUEST, "invalid_name"),
    ];
    for (method, path, token, body, status, code) in cases {
        let response = app.request(method.clone(), &path, token, Some(body.clone())).await;
        assert_eq!(response.status, status, "{method} {path} {body}: {}", response.text);
        assert_eq!(response.code(), code, "{method} {path} {body}: {}", response.text);
        assert!(response.body["message"].as_str().is_some_and(|m| !m.is_empty()), "message for {code}");
    }

    let gets: Vec<(String, StatusCode, &str)> = vec![
        ("/products?limit=101".into(), StatusCode::BAD_REQUEST, "limit_too_large"),
        ("/products?limit=0".into(), StatusCode::BAD_REQUEST, "invalid_parameter"),
        ("/products?page=0".into(), StatusCode::BAD_REQUEST, "invalid_page"),
        ("/products?page=-2".into(), StatusCode::BAD_REQUEST, "invalid_page"),
        ("/products?page=two".into(), StatusCode::BAD_REQUEST, "invalid_parameter"),
        ("/products?category=no-such-category".into(), StatusCode::UNPROCESSABLE_ENTITY, "unknown_category"),
        ("/products/not-a-number".into(), StatusCode::BAD_REQUEST, "invalid_parameter"),
        ("/products/123456789".into(), StatusCode::NOT_FOUND, "product_not_found"),
        ("/no/such/route".into(), StatusCode::NOT_FOUND, "not_found"),
    ];
    for (path, status, code) in gets {
        let response = app.get(&path, None).await;
        assert_eq!(response.status, status, "GET {path}: {}", response.text);
        assert_eq!(response.code(), code, "GET {path}: {}", response.text);
    }

    let raw_cases = [
        ("/auth/register", "application/json", "{\"email\": ", "invalid_body", StatusCode::BAD_REQUEST),
        ("/auth/login", "application/json", "not json at all", "invalid_body", StatusCode::BAD_REQUEST),
        ("/auth/register", "text/plain", "email=a@b.co", "unsupported_media_type", StatusCode::UNSUPPORTED_MEDIA_TYPE),
    ];
    for (path, content_type, body, code, status) in raw_cases {
        let response = app.request_raw(Method::POST, path, None, content_type, body).await;
        assert_eq!(response.status, status, "POST {path} {body:?}: {}", response.text);
        assert_eq!(response.code(), code, "POST {path} {body:?}: {}", response.text);
    }
    let malformed_admin = app.request_raw(Method::POST, "/admin/products", Some(&admin), "application/json", "{\"sku\":").await;
    assert_eq!(malformed_admin.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed_admin.code(), "invalid_body");

    let wrong_method = app.request(Method::PUT, "/products", None, None).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED, "{}", wrong_method.text);
    assert_eq!(wrong_method.code(), "method_not_allowed");

    assert_eq!(snapshot(&app).await, before, "a rejected request changed the database");
    let unchanged = app.get(&format!("/products/{id}"), None).await;
    assert_eq!(unchanged.body, existing);
}
