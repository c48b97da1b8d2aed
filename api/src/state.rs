//! Shared state of the HTTP server.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use fred::clients::Client as RedisClient;
use sea_orm::DatabaseConnection;
use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions};
use tokio::sync::Mutex;

use crate::{
    auth::TokenService, cart::CartService, checkout::Checkouts, config::Config, metrics::Metrics, orders::Orders, search::SearchService,
};

/// What every request handler may use. Cloned into each request, so it is one `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

pub struct Services {
    pub config: Arc<Config>,
    pub db: DatabaseConnection,
    pub redis: RedisClient,
    pub carts: CartService,
    pub checkouts: Checkouts,
    pub orders: Orders,
    pub temporal: TemporalGateway,
    pub tokens: TokenService,
    pub metrics: Metrics,
    pub search: SearchService,
    pub flash_rebuilds: crate::routes::flash::RebuildGate,
}

/// Builds a Redis client that connects in the background and keeps reconnecting, so the API
/// starts (and reports itself not ready) while Redis is down.
pub fn redis_client(url: &str) -> anyhow::Result<RedisClient> {
    emporium_entities::redis::client(url).with_context(|| format!("REDIS_URL {url:?} is invalid"))
}

/// A Temporal client connected on first use, so the API starts while Temporal is down.
#[derive(Clone)]
pub struct TemporalGateway {
    address: String,
    namespace: String,
    client: Arc<Mutex<Option<Client>>>,
}

impl TemporalGateway {
    pub fn new(address: &str, namespace: &str) -> Self {
        Self { address: address.to_owned(), namespace: namespace.to_owned(), client: Arc::default() }
    }

    pub async fn client(&self) -> anyhow::Result<Client> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let url = url::Url::parse(&self.address).with_context(|| format!("TEMPORAL_ADDRESS {:?} is not a URL", self.address))?;
        let options = ConnectionOptions::new(url).identity("emporium-api".to_owned()).connect_timeout(Duration::from_secs(2)).build();
        let connection = tokio::time::timeout(Duration::from_secs(3), Connection::connect(options))
            .await
            .context("timed out connecting to Temporal")?
            .with_context(|| format!("failed to connect to Temporal at {}", self.address))?;
        let client = Client::new(connection, ClientOptions::new(self.namespace.clone()).build())?;
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Whether the server answers for our namespace right now.
    pub async fn check(&self) -> anyhow::Result<()> {
        let client = self.client().await?;
        tokio::time::timeout(
            Duration::from_secs(2),
            client.count_workflows("", temporalio_client::WorkflowCountOptions::builder().build()),
        )
        .await
        .context("Temporal did not answer in time")??;
        Ok(())
    }
}
