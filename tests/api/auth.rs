use reqwest::StatusCode;
use serde_json::json;

use emporium_tests::{ADMIN_EMAIL, count, spawn_app};

#[tokio::test]
async fn register_login_refresh_and_me_round_trip() {
    let app = spawn_app().await;
    let registered = app.post("/auth/register", None, json!({ "email": "Ann@Example.com", "password": "s3cret-enough" })).await;
    assert_eq!(registered.status, StatusCode::CREATED, "{}", registered.text);
    let user_id = registered.body["userId"].as_str().unwrap().to_owned();
    assert!(registered.body["accessToken"].is_string());
    assert!(registered.body["refreshToken"].is_string());

    let login = app.post("/auth/login", None, json!({ "email": "ann@example.com", "password": "s3cret-enough" })).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    assert_eq!(login.body["userId"], user_id.as_str());
    assert_eq!(login.body["expiresIn"], 300);
    let access = login.body["accessToken"].as_str().unwrap();

    let me = app.get("/me", Some(access)).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    assert_eq!(me.body["userId"], user_id.as_str());
    assert_eq!(me.body["email"], "ann@example.com");
    assert_eq!(me.body["role"], "customer");

    let refreshed = app.post("/auth/refresh", None, json!({ "refreshToken": login.body["refreshToken"] })).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text);
    let new_access = refreshed.body["accessToken"].as_str().unwrap();
    assert_eq!(app.get("/me", Some(new_access)).await.body["userId"], user_id.as_str());

    // the stored hash is argon2id, never the password
    let hashes =
        count(app.db(), "SELECT COUNT(*) AS n FROM users WHERE email = 'ann@example.com' AND password_hash LIKE '$argon2id$%'").await;
    assert_eq!(hashes, 1);
}

#[tokio::test]
async fn login_failures_do_not_reveal_whether_the_email_exists() {
    let app = spawn_app().await;
    app.post("/auth/register", None, json!({ "email": "bob@example.com", "password": "right-password" })).await;

    let wrong_password = app.post("/auth/login", None, json!({ "email": "bob@example.com", "password": "wrong-password" })).await;
    let unknown_email = app.post("/auth/login", None, json!({ "email": "nobody@example.com", "password": "wrong-password" })).await;
    assert_eq!(wrong_password.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown_email.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_password.body, unknown_email.body);
    assert_eq!(wrong_password.code(), "invalid_credentials");
}

#[tokio::test]
async fn a_refresh_token_is_not_accepted_as_an_access_token() {
    let app = spawn_app().await;
    let registered = app.post("/auth/register", None, json!({ "email": "cat@example.com", "password": "long-enough-pw" })).await;
    let refresh = registered.body["refreshToken"].as_str().unwrap();
    let access = registered.body["accessToken"].as_str().unwrap();

    let me = app.get("/me", Some(refresh)).await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    assert_eq!(me.code(), "unauthorized");

    // and an access token is not a refresh token
    let refreshed = app.post("/auth/refresh", None, json!({ "refreshToken": access })).await;
    assert_eq!(refreshed.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refreshed.code(), "invalid_token");
}

#[tokio::test]
async fn garbage_and_missing_tokens_are_401() {
    let app = spawn_app().await;
    assert_eq!(app.get("/me", None).await.status, StatusCode::UNAUTHORIZED);
    let garbage = app.get("/me", Some("not.a.jwt")).await;
    assert_eq!(garbage.status, StatusCode::UNAUTHORIZED);
    assert_eq!(garbage.code(), "unauthorized");
}

#[tokio::test]
async fn the_admin_account_is_created_at_start_up_and_has_the_admin_role() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let me = app.get("/me", Some(&token)).await;
    assert_eq!(me.body["role"], "admin");
    assert_eq!(me.body["email"], ADMIN_EMAIL);
}

#[tokio::test]
async fn registering_an_email_twice_is_409_and_keeps_one_account() {
    let app = spawn_app().await;
    let first = app.post("/auth/register", None, json!({ "email": "dup@example.com", "password": "first-password" })).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let second = app.post("/auth/register", None, json!({ "email": "DUP@example.com", "password": "second-password" })).await;
    assert_eq!(second.status, StatusCode::CONFLICT);
    assert_eq!(second.code(), "email_taken");
    assert_eq!(count(app.db(), "SELECT COUNT(*) AS n FROM users WHERE email = 'dup@example.com'").await, 1);
    // the first password still works
    let login = app.post("/auth/login", None, json!({ "email": "dup@example.com", "password": "first-password" })).await;
    assert_eq!(login.status, StatusCode::OK);
}
