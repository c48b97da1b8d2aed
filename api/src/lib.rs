//! The Emporium HTTP API: routes, auth, validation, and the application that serves them.
//! `main.rs` only parses the command line.

pub mod auth;
pub mod cart;
pub mod catalogue_generator;
pub mod checkout;
pub mod config;
pub mod error;
pub mod metrics;
pub mod orders;
pub mod routes;
pub mod search;
pub mod state;

use std::sync::Arc;

use anyhow::Context;
use poem::{
    EndpointExt, Route, Server,
    listener::{Acceptor, Listener, TcpAcceptor, TcpListener},
    middleware::Tracing,
};
use poem_openapi::OpenApiService;

use crate::{
    auth::{TokenService, hash_password},
    cart::{CartEvents, CartService},
    checkout::Checkouts,
    config::Config,
    metrics::Metrics,
    orders::Orders,
    routes::{
        admin::AdminApi, admin_orders::AdminOrdersApi, auth::AuthApi, cart::CartApi, catalog::CatalogApi, checkout::CheckoutApi,
        flash::FlashSalesApi, ops::OpsApi, orders::OrdersApi, search::SearchApi, wishlist::WishlistApi,
    },
    search::SearchService,
    state::{AppState, TemporalGateway, redis_client},
};

pub type Apis =
    (AuthApi, CatalogApi, SearchApi, CartApi, WishlistApi, CheckoutApi, OrdersApi, FlashSalesApi, AdminApi, AdminOrdersApi, OpsApi);

/// The OpenAPI service of every operation.
pub fn openapi_service() -> OpenApiService<Apis, ()> {
    let apis =
        (AuthApi, CatalogApi, SearchApi, CartApi, WishlistApi, CheckoutApi, OrdersApi, FlashSalesApi, AdminApi, AdminOrdersApi, OpsApi);
    OpenApiService::new(apis, "Emporium", env!("CARGO_PKG_VERSION"))
        .description("Store backend: catalogue, carts, checkout, orders and flash sales.")
}

/// The OpenAPI document as committed in `openapi/openapi.json`.
pub fn openapi_json() -> String {
    let mut spec = openapi_service().spec();
    spec.push('\n');
    spec
}

/// Chooses ring as rustls' crypto (the OpenSearch client's TLS), once per process.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A bound, not yet serving, application.
pub struct Application {
    acceptor: TcpAcceptor,
    port: u16,
    state: AppState,
}

impl Application {
    /// Connects to the stores, migrates, ensures the admin account and binds the port.
    /// Redis and Temporal may be down: readiness says so, the process still starts.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let db = emporium_entities::db::connect_and_migrate(&config.database_url, config.database_max_connections)
            .await
            .with_context(|| format!("failed to open {}", emporium_entities::db::redact(&config.database_url)))?;
        if let (Some(email), Some(password)) = (&config.admin_email, &config.admin_password) {
            let email = auth::Email::parse(email).map_err(|_| anyhow::anyhow!("EMPORIUM_ADMIN_EMAIL is not an email"))?;
            let hash = hash_password(password.expose()).await?;
            emporium_entities::store::users::upsert_admin(&db, email.as_str(), &hash)
                .await
                .context("failed to create the admin account")?;
        }
        let redis = redis_client(&config.redis_url)?;
        let temporal = TemporalGateway::new(&config.temporal_address, &config.temporal_namespace);
        let cart_events = CartEvents::start(&config.redis_url)?;
        let metrics = Metrics::new();
        let search =
            SearchService::open(&config.search, db.clone(), redis.clone(), metrics.clone()).context("failed to open the search index")?;
        let state = AppState::new(state::Services {
            carts: CartService::new(db.clone(), redis.clone(), cart_events, config.cart_write_batches, Some(metrics.cart_writer())),
            redis,
            checkouts: Checkouts::new(
                db.clone(),
                temporal.clone(),
                config.task_queue.clone(),
                config.checkout_reservation,
                config.order_return_window,
            ),
            orders: Orders::new(db.clone(), temporal.clone()),
            temporal,
            tokens: TokenService::new(&config.jwt_secret, config.access_token_ttl, config.refresh_token_ttl),
            metrics,
            search,
            flash_rebuilds: Default::default(),
            db,
            config: Arc::new(config),
        });
        let acceptor = TcpListener::bind(state.config.bind.clone())
            .into_acceptor()
            .await
            .with_context(|| format!("failed to bind {}", state.config.bind))?;
        let port = acceptor
            .local_addr()
            .first()
            .and_then(|addr| addr.as_socket_addr().map(|a| a.port()))
            .context("listener has no TCP address")?;
        Ok(Self { acceptor, port, state })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The search service (tests watch its indexer).
    pub fn search(&self) -> &SearchService {
        &self.state.search
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests. The search indexer runs
    /// alongside: it builds the index if there is none, then follows the outbox.
    pub async fn run_until<F: Future<Output = ()> + Send>(self, shutdown: F) -> std::io::Result<()> {
        // aborted however this future ends, also when it is dropped (a test stopping the server)
        let _indexer = AbortOnDrop(tokio::spawn(self.state.search.indexer().clone().run()));
        let app = routes(self.state);
        Server::new_with_acceptor(self.acceptor).run_with_graceful_shutdown(app, shutdown, Some(std::time::Duration::from_secs(10))).await
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The whole HTTP application for `state`.
pub fn routes(state: AppState) -> impl poem::Endpoint {
    let api = openapi_service();
    let docs = api.swagger_ui();
    let spec = api.spec_endpoint();
    let metrics = state.metrics.clone();
    Route::new()
        .nest("/", api)
        .at("/openapi.json", spec)
        .nest("/docs", docs)
        .around(move |ep, req| metrics::record(metrics.clone(), ep, req))
        .catch_all_error(error::render_error)
        .data(state)
        .with(Tracing)
}
