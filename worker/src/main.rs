#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use temporalio_sdk::Runtime;
use tracing_subscriber::EnvFilter;

use emporium_worker::{WorkerConfig, WorkerDependencies, build_worker, connect_temporal, ensure_sweeper_schedule};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn")))
        .init();
    if let Err(err) = run().await {
        tracing::error!(error = ?err, "worker stopped with an error");
        return Err(err);
    }
    Ok(())
}

async fn run() -> anyhow::Result<()> {
    let config = WorkerConfig::from_env();
    let db = emporium_entities::db::connect_and_migrate(&config.database_url, 10)
        .await
        .with_context(|| format!("failed to open {}", emporium_entities::db::redact(&config.database_url)))?;
    let redis = emporium_entities::redis::client(&config.redis_url).context("REDIS_URL is not a valid Redis URL")?;
    let deps = WorkerDependencies::from_env(db, redis)?;
    let client = connect_temporal(&config.temporal_address, &config.temporal_namespace, "emporium-worker").await?;
    if ensure_sweeper_schedule(&client, &config.task_queue).await? {
        tracing::info!("reservation sweeper scheduled");
    }
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let mut worker = build_worker(&runtime, client, &config.task_queue, deps)?;
    let shutdown = worker.shutdown_handle();
    tracing::info!(task_queue = %config.task_queue, namespace = %config.temporal_namespace, "worker started");
    // The worker future is not Send, so it runs on this task, raced against the stop signal.
    let run = worker.run();
    tokio::pin!(run);
    let result = tokio::select! {
        result = &mut run => result,
        () = shutdown_signal() => {
            tracing::info!("stop signal received, finishing in-flight tasks");
            shutdown();
            run.await
        }
    };
    result.context("worker failed")?;
    tracing::info!("worker stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
}
