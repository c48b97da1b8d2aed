//! The Temporal worker: connects with the same settings as the API and registers every workflow
//! and activity of the store. `main.rs` only reads the environment and waits for a stop signal.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use sea_orm::DatabaseConnection;
use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};
use url::Url;

use emporium_activities::{
    CheckoutActivities, FlashSaleActivities, InventoryActivities, NotificationActivities, OrderActivities, PaymentActivities,
    PaymentGateway, SandboxGateway, StripeGateway, SystemActivities, Webhook,
};
use emporium_workflows::{
    checkout::CheckoutWorkflow,
    flash::{FlashSaleClaimWorkflow, FlashSaleWorkflow},
    order::OrderWorkflow,
    probe::WorkerProbeWorkflow,
    sweeper::{
        ReservationSweeperWorkflow,
        contract::{SWEEP_INTERVAL, SweepInput, schedule_id},
    },
};
use temporalio_client::schedules::{CreateScheduleOptions, ScheduleAction, ScheduleError, ScheduleOverlapPolicy, ScheduleSpec};

/// What the worker reads from the environment (same variable names as the API).
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub database_url: String,
    pub redis_url: String,
    pub temporal_address: String,
    pub temporal_namespace: String,
    pub task_queue: String,
}

impl WorkerConfig {
    pub fn from_env() -> Self {
        let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
        Self {
            database_url: var("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/emporium?sslmode=disable"),
            redis_url: var("REDIS_URL", "redis://127.0.0.1:6379"),
            temporal_address: var("TEMPORAL_ADDRESS", "http://127.0.0.1:7233"),
            temporal_namespace: var("TEMPORAL_NAMESPACE", "emporium"),
            task_queue: var("TEMPORAL_TASK_QUEUE", "emporium"),
        }
    }
}

/// Connects a Temporal client, bounded so a missing server is an error rather than a hang.
pub async fn connect_temporal(address: &str, namespace: &str, identity: &str) -> anyhow::Result<Client> {
    let url = Url::parse(address).with_context(|| format!("TEMPORAL_ADDRESS {address:?} is not a URL"))?;
    let options = ConnectionOptions::new(url).identity(identity.to_owned()).connect_timeout(Duration::from_secs(5)).build();
    let connection = tokio::time::timeout(Duration::from_secs(10), Connection::connect(options))
        .await
        .context("timed out connecting to Temporal")?
        .with_context(|| format!("failed to connect to Temporal at {address}"))?;
    Ok(Client::new(connection, ClientOptions::new(namespace.to_owned()).build())?)
}

/// Everything the store's workflows and activities need at run time.
pub struct WorkerDependencies {
    pub db: DatabaseConnection,
    /// Flash sales' counters and claims.
    pub redis: fred::clients::Client,
    pub gateway: Arc<dyn PaymentGateway>,
    /// Where notifications go; without one they are logged.
    pub webhook: Option<Webhook>,
}

impl WorkerDependencies {
    /// The defaults: the sandbox payment gateway on the same database, notifications logged,
    /// Redis at `REDIS_URL` (or the local default).
    pub fn sandbox(db: DatabaseConnection) -> Self {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let redis = emporium_entities::redis::client(&url).expect("REDIS_URL is a valid Redis URL");
        Self::sandbox_with(db, redis)
    }

    pub fn sandbox_with(db: DatabaseConnection, redis: fred::clients::Client) -> Self {
        Self { gateway: Arc::new(SandboxGateway::new(db.clone())), db, redis, webhook: None }
    }

    /// What the environment chooses: Stripe when `STRIPE_SECRET_KEY` is set, else the sandbox
    /// (see `stripe_gateway_from`); the webhook of `NOTIFICATION_WEBHOOK_URL` (see `webhook_from`).
    pub fn from_env(db: DatabaseConnection, redis: fred::clients::Client) -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).ok();
        let webhook = webhook_from(var)?;
        match &webhook {
            Some(webhook) => tracing::info!(url = webhook.url, "notifications go to the webhook"),
            None => tracing::info!("NOTIFICATION_WEBHOOK_URL is not set: notifications are logged"),
        }
        let mut deps = match stripe_gateway_from(var)? {
            Some(stripe) => {
                tracing::info!(api_base = stripe.api_base(), "payments go to Stripe");
                Self { gateway: Arc::new(stripe), db, redis, webhook: None }
            }
            None => {
                tracing::info!("STRIPE_SECRET_KEY is not set: payments go to the sandbox gateway");
                Self::sandbox_with(db, redis)
            }
        };
        deps.webhook = webhook;
        Ok(deps)
    }
}

/// The notification webhook: `NOTIFICATION_WEBHOOK_URL` (http or https) signed with
/// `NOTIFICATION_WEBHOOK_SECRET`, which must then be set and non-blank. Errors never contain
/// the secret.
pub fn webhook_from(var: impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<Webhook>> {
    let Some(url) = var("NOTIFICATION_WEBHOOK_URL").filter(|u| !u.trim().is_empty()) else {
        return Ok(None);
    };
    let parsed = Url::parse(url.trim()).with_context(|| format!("NOTIFICATION_WEBHOOK_URL {url:?} is not a URL"))?;
    anyhow::ensure!(matches!(parsed.scheme(), "http" | "https"), "NOTIFICATION_WEBHOOK_URL must be http or https");
    let secret = var("NOTIFICATION_WEBHOOK_SECRET").unwrap_or_default();
    anyhow::ensure!(!secret.trim().is_empty(), "NOTIFICATION_WEBHOOK_SECRET must be set with NOTIFICATION_WEBHOOK_URL");
    Ok(Some(Webhook { url: parsed.to_string(), secret }))
}

/// A Stripe gateway when `STRIPE_SECRET_KEY` is set (`STRIPE_API_BASE` overrides
/// `https://api.stripe.com`), `None` when it is not. A key that is set but blank is an error
/// rather than a silent fall-back to the sandbox. Errors never contain the key.
pub fn stripe_gateway_from(var: impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<StripeGateway>> {
    let Some(secret_key) = var("STRIPE_SECRET_KEY") else {
        return Ok(None);
    };
    anyhow::ensure!(!secret_key.trim().is_empty(), "STRIPE_SECRET_KEY is set but empty");
    let mut builder = StripeGateway::builder(secret_key);
    if let Some(api_base) = var("STRIPE_API_BASE").filter(|base| !base.trim().is_empty()) {
        builder = builder.api_base(api_base);
    }
    builder.build().context("invalid Stripe settings (STRIPE_SECRET_KEY, STRIPE_API_BASE)").map(Some)
}

/// The worker options with every workflow and activity of the store registered.
pub fn worker_options(task_queue: &str, deps: WorkerDependencies) -> anyhow::Result<WorkerOptions> {
    Ok(WorkerOptions::new(task_queue)
        .register_workflow::<WorkerProbeWorkflow>()?
        .register_workflow::<CheckoutWorkflow>()?
        .register_workflow::<OrderWorkflow>()?
        .register_workflow::<FlashSaleWorkflow>()?
        .register_workflow::<FlashSaleClaimWorkflow>()?
        .register_workflow::<ReservationSweeperWorkflow>()?
        .register_activities(SystemActivities::new(deps.db.clone()))
        .register_activities(InventoryActivities::new(deps.db.clone()))
        .register_activities(CheckoutActivities::new(deps.db.clone(), deps.redis.clone()))
        .register_activities(OrderActivities::new(deps.db.clone()))
        .register_activities(FlashSaleActivities::new(deps.db.clone(), deps.redis))
        .register_activities(NotificationActivities::new(deps.db.clone(), deps.webhook))
        .register_activities(PaymentActivities::new(deps.db, deps.gateway))
        .build())
}

/// Builds a worker polling `task_queue`.
pub fn build_worker(runtime: &Runtime, client: Client, task_queue: &str, deps: WorkerDependencies) -> anyhow::Result<Worker> {
    Worker::new(runtime, client, worker_options(task_queue, deps)?).context("failed to create the Temporal worker")
}

/// Creates the reservation-sweeper schedule for `task_queue` unless it exists. Safe to call
/// from every worker at every start. Returns whether it was created now.
pub async fn ensure_sweeper_schedule(client: &Client, task_queue: &str) -> anyhow::Result<bool> {
    let options = CreateScheduleOptions::builder()
        .action(ScheduleAction::start_workflow(
            ReservationSweeperWorkflow::run,
            SweepInput { grace_secs: 0 },
            task_queue,
            "reservation-sweep",
        ))
        .spec(ScheduleSpec::from_interval(SWEEP_INTERVAL))
        .overlap_policy(ScheduleOverlapPolicy::Skip)
        .build();
    match client.create_schedule(schedule_id(task_queue), options).await {
        Ok(_) => Ok(true),
        Err(ScheduleError::Rpc(status)) if status.code() == temporalio_client::tonic::Code::AlreadyExists => Ok(false),
        Err(err) => Err(anyhow::Error::new(err).context("failed to create the reservation sweeper schedule")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn the_sandbox_is_used_without_a_stripe_key() {
        assert!(stripe_gateway_from(env(&[("STRIPE_API_BASE", "http://127.0.0.1:9")])).unwrap().is_none());
    }

    #[test]
    fn a_stripe_key_selects_stripe_with_an_optional_api_base() {
        let stripe = stripe_gateway_from(env(&[("STRIPE_SECRET_KEY", "sk_test_123")])).unwrap().expect("stripe");
        assert_eq!(stripe.api_base(), "https://api.stripe.com/");
        assert_eq!(stripe.name(), "stripe");
        let local = stripe_gateway_from(env(&[("STRIPE_SECRET_KEY", "sk_test_123"), ("STRIPE_API_BASE", "http://127.0.0.1:12111")]))
            .unwrap()
            .expect("stripe");
        assert_eq!(local.api_base(), "http://127.0.0.1:12111/");
    }

    #[test]
    fn a_blank_key_or_a_bad_base_is_an_error_that_does_not_show_the_key() {
        assert!(stripe_gateway_from(env(&[("STRIPE_SECRET_KEY", "  ")])).is_err());
        let err = stripe_gateway_from(env(&[("STRIPE_SECRET_KEY", "sk_test_secret_value"), ("STRIPE_API_BASE", "ftp://x")])).unwrap_err();
        assert!(!format!("{err:?}").contains("sk_test_secret_value"), "{err:?}");
    }

    #[test]
    fn notifications_are_logged_without_a_webhook_url() {
        assert!(webhook_from(env(&[("NOTIFICATION_WEBHOOK_SECRET", "s")])).unwrap().is_none());
        assert!(webhook_from(env(&[("NOTIFICATION_WEBHOOK_URL", " ")])).unwrap().is_none());
    }

    #[test]
    fn a_webhook_needs_an_http_url_and_a_secret_that_errors_never_show() {
        let hook = webhook_from(env(&[
            ("NOTIFICATION_WEBHOOK_URL", "https://hooks.example.com/emporium"),
            ("NOTIFICATION_WEBHOOK_SECRET", "whsec_1"),
        ]))
        .unwrap()
        .expect("webhook");
        assert_eq!(hook.url, "https://hooks.example.com/emporium");
        assert!(!format!("{hook:?}").contains("whsec_1"));
        assert!(webhook_from(env(&[("NOTIFICATION_WEBHOOK_URL", "https://hooks.example.com/")])).is_err(), "no secret");
        let err = webhook_from(env(&[("NOTIFICATION_WEBHOOK_URL", "ftp://x"), ("NOTIFICATION_WEBHOOK_SECRET", "whsec_2")])).unwrap_err();
        assert!(!format!("{err:?}").contains("whsec_2"), "{err:?}");
    }
}
