//! Test harness shared by the suites: the API in-process on port 0 against a fresh database
//! (dropped afterwards), request helpers, and a worker on its own task queue.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use sea_orm::DatabaseConnection;
use serde_json::{Value, json};
use tokio::{sync::oneshot, task::JoinHandle};
use uuid::Uuid;

use emporium_api::{
    Application,
    config::{Config, SearchConfig, Secret},
    search::SearchService,
};

pub mod load;
pub mod worker;

/// The Postgres server the tests make their databases on (from `DATABASE_URL`).
pub fn database_server_url() -> String {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/emporium?sslmode=disable".into());
    let (server, _) = emporium_entities::db::split_database_url(&url).expect("DATABASE_URL names a database");
    server
}

/// A fresh, migrated database that is dropped when this value is dropped.
pub struct TestDatabase {
    pub url: String,
    pub db: DatabaseConnection,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let server = database_server_url();
        let name = format!("emporium_test_{}", Uuid::new_v4().simple());
        let url = match server.split_once('?') {
            Some((base, query)) => format!("{}/{name}?{query}", base.trim_end_matches("/postgres")),
            None => format!("{}/{name}", server.trim_end_matches("/postgres")),
        };
        let db = emporium_entities::db::connect_and_migrate(&url, 5).await.expect("create test database");
        Self { url, db }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let url = self.url.clone();
        // Drop runs outside async context; a private runtime on another thread does the I/O.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            if let Err(err) = runtime.block_on(emporium_entities::db::drop_database(&url)) {
                eprintln!("could not drop test database {url}: {err}");
            }
        })
        .join();
    }
}

pub const ADMIN_EMAIL: &str = "admin@emporium.test";
pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";

/// Settings for a test instance: port 0, its own database and search index directory, the real
/// Redis and Temporal.
pub fn test_config(database_url: &str, search_dir: &std::path::Path) -> Config {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    Config {
        bind: "127.0.0.1:0".to_owned(),
        database_url: database_url.to_owned(),
        database_max_connections: 10,
        cart_write_batches: emporium_api::config::DEFAULT_CART_WRITE_BATCHES,
        cart_events_keep_alive: Duration::from_secs(15),
        redis_url: var("REDIS_URL", "redis://127.0.0.1:6379"),
        temporal_address: var("TEMPORAL_ADDRESS", "http://127.0.0.1:7233"),
        temporal_namespace: var("TEMPORAL_NAMESPACE", "emporium"),
        task_queue: format!("test-{}", Uuid::new_v4().simple()),
        checkout_reservation: Duration::from_secs(600),
        order_return_window: Duration::from_secs(30 * 24 * 3600),
        flash_sale_admission_per_sec: 2_000,
        flash_sale_claim_ttl: Duration::from_secs(120),
        jwt_secret: Secret::new(format!("test-secret-{}", Uuid::new_v4())),
        access_token_ttl: Duration::from_secs(300),
        refresh_token_ttl: Duration::from_secs(3600),
        admin_email: Some(ADMIN_EMAIL.to_owned()),
        admin_password: Some(Secret::new(ADMIN_PASSWORD)),
        search: SearchConfig::tantivy(search_dir),
    }
}

/// A running API instance.
pub struct TestApp {
    pub address: String,
    pub config: Config,
    pub client: reqwest::Client,
    /// The search service of the running instance (its index and indexer).
    pub search: SearchService,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    // Declared last: dropped after the server has stopped using them.
    pub database: TestDatabase,
    pub search_dir: tempfile::TempDir,
}

/// A response: status and JSON body (`Value::Null` when the body is not JSON).
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl TestResponse {
    /// The error code of a `{code, message}` body.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("<no code>")
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Logs of the code under test, shown for failing tests (`RUST_LOG` picks the level; warnings
/// by default).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}

/// Starts an instance after `customise` has changed its settings.
pub async fn spawn_app_with(customise: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_on(TestDatabase::create().await, customise).await
}

/// Starts an instance on a database prepared beforehand (a benchmark's seeded catalogue).
pub async fn spawn_app_on(database: TestDatabase, customise: impl FnOnce(&mut Config)) -> TestApp {
    init_logging();
    let search_dir = tempfile::tempdir().expect("search index directory");
    let mut config = test_config(&database.url, search_dir.path());
    customise(&mut config);
    let app = Application::build(config.clone()).await.expect("build application");
    let address = format!("http://127.0.0.1:{}", app.port());
    let search = app.search().clone();
    let (shutdown, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        app.run_until(async {
            let _ = stopped.await;
        })
        .await
        .expect("server runs");
    });
    TestApp {
        address,
        config,
        client: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("http client"),
        search,
        shutdown: Some(shutdown),
        server: Some(server),
        database,
        search_dir,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

impl TestApp {
    pub fn db(&self) -> &DatabaseConnection {
        &self.database.db
    }

    /// Waits until the search index has applied every committed outbox row (panics after 30 s).
    pub async fn wait_for_search_index(&self) {
        self.wait_for_search_index_within(Duration::from_secs(30)).await
    }

    /// Waits until the search index has applied every committed outbox row, at most `patience`.
    pub async fn wait_for_search_index_within(&self, patience: Duration) {
        let deadline = std::time::Instant::now() + patience;
        loop {
            match self.search.indexer().pending().await {
                Ok(0) => return,
                Ok(_) | Err(_) if std::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
                other => panic!("search index did not catch up within {patience:?}: {other:?}"),
            }
        }
    }

    /// Sends a request; `token` as bearer, `body` as JSON.
    pub async fn request(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> TestResponse {
        let mut request = self.client.request(method, format!("{}{}", self.address, path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        into_test_response(request.send().await.expect("request sent")).await
    }

    /// Sends a raw body with a content type, for malformed-input tests.
    pub async fn request_raw(&self, method: Method, path: &str, token: Option<&str>, content_type: &str, body: &str) -> TestResponse {
        let mut request =
            self.client.request(method, format!("{}{}", self.address, path)).header("content-type", content_type).body(body.to_owned());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        into_test_response(request.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> TestResponse {
        self.request(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> TestResponse {
        self.request(Method::POST, path, token, Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> TestResponse {
        self.request(Method::PATCH, path, token, Some(body)).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> TestResponse {
        self.request(Method::PUT, path, token, Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> TestResponse {
        self.request(Method::DELETE, path, token, None).await
    }

    /// Registers a new customer and returns their access token and user id.
    pub async fn register_customer(&self) -> (String, String) {
        let email = format!("shopper-{}@example.com", Uuid::new_v4().simple());
        let response = self.post("/auth/register", None, json!({ "email": email, "password": "correct horse battery" })).await;
        assert_eq!(response.status, StatusCode::CREATED, "register: {}", response.text);
        (
            response.body["accessToken"].as_str().expect("access token").to_owned(),
            response.body["userId"].as_str().expect("user id").to_owned(),
        )
    }

    /// An access token of the admin account created at start-up.
    pub async fn admin_token(&self) -> String {
        let response = self.post("/auth/login", None, json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD })).await;
        assert_eq!(response.status, StatusCode::OK, "admin login: {}", response.text);
        response.body["accessToken"].as_str().expect("access token").to_owned()
    }

    /// Creates a category as admin and returns its id.
    pub async fn create_category(&self, admin: &str, name: &str, parent: Option<i64>) -> i64 {
        let response = self.post("/admin/categories", Some(admin), json!({ "name": name, "parentId": parent })).await;
        assert_eq!(response.status, StatusCode::CREATED, "create category: {}", response.text);
        response.body["id"].as_i64().expect("category id")
    }

    /// Creates a product as admin and returns its JSON.
    pub async fn create_product(&self, admin: &str, category_id: i64, sku: &str, price: i64, stock: i64) -> Value {
        let response = self
            .post(
                "/admin/products",
                Some(admin),
                json!({
                    "sku": sku,
                    "title": format!("Test product {sku}"),
                    "description": "A product made by a test",
                    "brand": "Acme",
                    "categoryId": category_id,
                    "price": { "amount": price, "currency": "USD" },
                    "attributes": { "colour": "red" },
                    "stock": stock,
                }),
            )
            .await;
        assert_eq!(response.status, StatusCode::CREATED, "create product: {}", response.text);
        response.body
    }
}

async fn into_test_response(response: reqwest::Response) -> TestResponse {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("response body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    TestResponse { status, headers, body, text }
}

/// Counts rows of `sql` (a `SELECT COUNT(*) AS n ...`).
pub async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    db.query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .expect("count query")
        .expect("count row")
        .try_get("", "n")
        .expect("n column")
}

/// A connected Redis client for `url`.
pub async fn redis(url: &str) -> fred::clients::Client {
    use fred::interfaces::ClientLike;
    let client = emporium_api::state::redis_client(url).expect("redis client");
    client.wait_for_connect().await.expect("redis connects");
    client
}

/// A private redis-server on a free port, for tests that stop or flush Redis without
/// disturbing the others. Killed on drop.
pub struct PrivateRedis {
    pub port: u16,
    child: std::process::Child,
}

/// A TCP port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl PrivateRedis {
    pub fn start() -> Self {
        let port = free_port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/dev-env.sh installs it)");
        // wait until it accepts connections
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { port, child }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
