use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use serde_json::json;

use emporium_tests::{count, spawn_app};

#[tokio::test]
async fn admin_routes_are_401_without_a_token_and_403_for_customers() {
    let app = spawn_app().await;
    let (customer, _) = app.register_customer().await;
    let product_body = json!({ "sku": "X-1", "title": "T", "brand": "B", "categoryId": 1, "price": { "amount": 100, "currency": "USD" } });
    let routes = [
        (Method::POST, "/admin/products", Some(product_body)),
        (Method::PATCH, "/admin/products/1", Some(json!({ "title": "New" }))),
        (Method::DELETE, "/admin/products/1", None),
        (Method::POST, "/admin/categories", Some(json!({ "name": "Shoes" }))),
        (Method::PUT, "/admin/products/1/inventory", Some(json!({ "available": 5 }))),
    ];
    for (method, path, body) in routes {
        let anonymous = app.request(method.clone(), path, None, body.clone()).await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{method} {path} without token");
        assert_eq!(anonymous.code(), "unauthorized");
        let as_customer = app.request(method.clone(), path, Some(&customer), body).await;
        assert_eq!(as_customer.status, StatusCode::FORBIDDEN, "{method} {path} as customer: {}", as_customer.text);
        assert_eq!(as_customer.code(), "forbidden");
    }
    assert_eq!(count(app.db(), "SELECT COUNT(*) AS n FROM categories").await, 0);
    assert_eq!(count(app.db(), "SELECT COUNT(*) AS n FROM outbox").await, 0);
}

#[tokio::test]
async fn catalogue_crud_round_trip_writes_one_outbox_row_per_change() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let audio = app.create_category(&admin, "Audio", None).await;
    let outbox_after_category = count(app.db(), "SELECT COUNT(*) AS n FROM outbox").await;

    let created = app.create_product(&admin, audio, "HP-100", 12_999, 7).await;
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["price"], json!({ "amount": 12999, "currency": "USD" }));
    assert_eq!(created["available"], 7);
    assert_eq!(created["category"]["slug"], "audio");
    assert_eq!(created["attributes"]["colour"], "red");

    let fetched = app.get(&format!("/products/{id}"), None).await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(fetched.body, created);

    let updated = app
        .patch(
            &format!("/admin/products/{id}"),
            Some(&admin),
            json!({ "title": "Studio Headphones", "price": { "amount": 9_999, "currency": "USD" } }),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.text);
    assert_eq!(updated.body["title"], "Studio Headphones");
    assert_eq!(updated.body["price"]["amount"], 9999);
    assert_eq!(updated.body["brand"], "Acme", "untouched fields stay");
    assert_eq!(app.get(&format!("/products/{id}"), None).await.body["title"], "Studio Headphones");

    let stock = app.put(&format!("/admin/products/{id}/inventory"), Some(&admin), json!({ "available": 42 })).await;
    assert_eq!(stock.status, StatusCode::OK, "{}", stock.text);
    assert_eq!(stock.body["available"], 42);
    assert_eq!(stock.body["reserved"], 0);
    assert_eq!(app.get(&format!("/products/{id}"), None).await.body["available"], 42);

    let deleted = app.delete(&format!("/admin/products/{id}"), Some(&admin)).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = app.get(&format!("/products/{id}"), None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.code(), "product_not_found");
    assert_eq!(app.delete(&format!("/admin/products/{id}"), Some(&admin)).await.status, StatusCode::NOT_FOUND);

    // created, updated, stock changed, deleted: four rows, in that order
    let kinds: Vec<String> = {
        use sea_orm::{ConnectionTrait, DbBackend, Statement};
        app.db()
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT kind FROM outbox WHERE aggregate = 'product' AND aggregate_id = $1 ORDER BY id",
                [id.to_string().into()],
            ))
            .await
            .unwrap()
            .iter()
            .map(|row| row.try_get::<String>("", "kind").unwrap())
            .collect()
    };
    assert_eq!(kinds, ["PRODUCT_CREATED", "PRODUCT_UPDATED", "STOCK_CHANGED", "PRODUCT_DELETED"]);
    assert_eq!(count(app.db(), "SELECT COUNT(*) AS n FROM outbox").await, outbox_after_category + 4);
}

#[tokio::test]
async fn browsing_paginates_without_gaps_and_filters_by_category_tree() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let electronics = app.create_category(&admin, "Electronics", None).await;
    let speakers = app.create_category(&admin, "Speakers", Some(electronics)).await;
    let books = app.create_category(&admin, "Books", None).await;
    for i in 0..7 {
        app.create_product(&admin, speakers, &format!("SPK-{i}"), 5_000 + i, 3).await;
    }
    for i in 0..5 {
        app.create_product(&admin, books, &format!("BK-{i}"), 1_000 + i, 3).await;
    }

    let mut seen = HashSet::new();
    for page in 1..=3 {
        let response = app.get(&format!("/products?page={page}&limit=5"), None).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text);
        assert_eq!(response.body["total"], 12);
        assert_eq!(response.body["page"], page);
        let items = response.body["items"].as_array().unwrap();
        assert_eq!(items.len(), if page < 3 { 5 } else { 2 });
        for item in items {
            assert!(seen.insert(item["id"].as_i64().unwrap()), "product listed twice");
        }
    }
    assert_eq!(seen.len(), 12);
    let past_the_end = app.get("/products?page=4&limit=5", None).await;
    assert_eq!(past_the_end.body["items"].as_array().unwrap().len(), 0);

    // a parent category includes its sub-categories; by slug or by id
    let by_parent = app.get("/products?category=electronics&limit=100", None).await;
    assert_eq!(by_parent.body["total"], 7);
    assert!(by_parent.body["items"].as_array().unwrap().iter().all(|p| p["category"]["slug"] == "speakers"));
    let by_id = app.get(&format!("/products?category={books}"), None).await;
    assert_eq!(by_id.body["total"], 5);

    let categories = app.get("/categories", None).await;
    assert_eq!(categories.status, StatusCode::OK);
    let list = categories.body.as_array().unwrap();
    assert_eq!(list.len(), 3);
    let speakers_json = list.iter().find(|c| c["slug"] == "speakers").unwrap();
    assert_eq!(speakers_json["parentId"], electronics);
}

#[tokio::test]
async fn duplicates_are_409_and_change_nothing() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let category = app.create_category(&admin, "Garden", None).await;
    app.create_product(&admin, category, "DUP-1", 100, 1).await;
    let outbox_before = count(app.db(), "SELECT COUNT(*) AS n FROM outbox").await;

    let again = app
        .post(
            "/admin/products",
            Some(&admin),
            json!({ "sku": "DUP-1", "title": "Other", "brand": "B", "categoryId": category, "price": { "amount": 5, "currency": "USD" } }),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.code(), "sku_taken");

    let slug_again = app.post("/admin/categories", Some(&admin), json!({ "name": "Garden" })).await;
    assert_eq!(slug_again.status, StatusCode::CONFLICT);
    assert_eq!(slug_again.code(), "slug_taken");

    assert_eq!(count(app.db(), "SELECT COUNT(*) AS n FROM products").await, 1);
    assert_eq!(count(app.db(), "SELECT COUNT(*) AS n FROM categories").await, 1);
    assert_eq!(count(app.db(), "SELECT COUNT(*) AS n FROM outbox").await, outbox_before);
}
