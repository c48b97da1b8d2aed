use std::time::Duration;

use reqwest::StatusCode;

use emporium_tests::{PrivateRedis, free_port, spawn_app, spawn_app_with};

#[tokio::test]
async fn healthz_answers_and_readyz_is_ready_when_everything_is_up() {
    let app = spawn_app().await;
    let health = app.get("/healthz", None).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body["status"], "ok");

    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
    assert_eq!(ready.body["checks"]["postgres"], "up");
    assert_eq!(ready.body["checks"]["redis"], "up");
    assert_eq!(ready.body["checks"]["temporal"], "up");
}

async fn eventually_status(app: &emporium_tests::TestApp, want: StatusCode) -> emporium_tests::TestResponse {
    let mut last = app.get("/readyz", None).await;
    for _ in 0..50 {
        if last.status == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        last = app.get("/readyz", None).await;
    }
    last
}

#[tokio::test]
async fn readyz_names_a_dependency_that_stopped() {
    let mut redis = PrivateRedis::start();
    let url = redis.url();
    let app = spawn_app_with(|config| config.redis_url = url).await;
    let ready = eventually_status(&app, StatusCode::OK).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);

    redis.stop();
    let not_ready = eventually_status(&app, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(not_ready.status, StatusCode::SERVICE_UNAVAILABLE, "{}", not_ready.text);
    assert_eq!(not_ready.code(), "not_ready");
    assert_eq!(not_ready.body["down"], serde_json::json!(["redis"]));
    assert_eq!(not_ready.body["checks"]["postgres"], "up");
    assert!(not_ready.body["message"].as_str().unwrap().contains("redis"));
}

#[tokio::test]
async fn readyz_reports_an_unreachable_temporal() {
    let port = free_port();
    let app = spawn_app_with(|config| config.temporal_address = format!("http://127.0.0.1:{port}")).await;
    let not_ready = app.get("/readyz", None).await;
    assert_eq!(not_ready.status, StatusCode::SERVICE_UNAVAILABLE, "{}", not_ready.text);
    assert_eq!(not_ready.body["down"], serde_json::json!(["temporal"]));
    // the rest of the API keeps working
    assert_eq!(app.get("/categories", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn metrics_count_requests_per_route_and_status() {
    let app = spawn_app().await;
    app.get("/products/1", None).await;
    app.get("/products/2", None).await;
    app.get("/categories", None).await;
    app.get("/nowhere/at/all", None).await;
    let metrics = app.get("/metrics", None).await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(metrics.headers["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = metrics.text;
    assert!(text.contains(r#"http_requests_total{method="GET",route="/products/{id}",status="404"} 2"#), "{text}");
    assert!(text.contains(r#"http_requests_total{method="GET",route="/categories",status="200"} 1"#), "{text}");
    assert!(text.contains(r#"route="unmatched",status="404""#), "{text}");
    assert!(text.contains("http_request_duration_seconds_bucket"), "{text}");
}

#[tokio::test]
async fn openapi_document_is_served_and_matches_the_committed_file() {
    let committed_path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
    let generated = emporium_api::openapi_json();
    if std::env::var_os("EMPORIUM_WRITE_OPENAPI").is_some() {
        std::fs::write(committed_path, &generated).expect("write openapi/openapi.json");
    }
    let committed = std::fs::read_to_string(committed_path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/openapi.json differs from the code; regenerate it with \
         `cargo run -p emporium-api -- openapi > openapi/openapi.json`"
    );

    let app = spawn_app().await;
    let served = app.get("/openapi.json", None).await;
    assert_eq!(served.status, StatusCode::OK);
    let committed_json: serde_json::Value = serde_json::from_str(&committed).unwrap();
    assert_eq!(served.body, committed_json);
    let docs = app.get("/docs", None).await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(docs.text.to_lowercase().contains("swagger"));
}
