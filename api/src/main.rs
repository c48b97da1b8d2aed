#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use tracing_subscriber::EnvFilter;

use emporium_api::{Application, catalogue_generator, config::Config, openapi_json};

const USAGE: &str = "usage: emporium-api [serve | migrate | seed-demo [--products N] | reindex | openapi]";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    emporium_api::install_crypto_provider();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,poem=warn,sqlx=warn")))
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        None | Some("serve") => serve().await,
        Some("migrate") => migrate().await,
        Some("seed-demo") => seed_demo(&args[1..]).await,
        Some("reindex") => reindex().await,
        Some("openapi") => {
            print!("{}", openapi_json());
            Ok(())
        }
        Some(other) => Err(anyhow::anyhow!("unknown command {other:?}\n{USAGE}")),
    };
    if let Err(err) = &result {
        tracing::error!(error = ?err, "emporium-api failed");
    }
    result
}

async fn serve() -> anyhow::Result<()> {
    let app = Application::build(Config::from_env()?).await?;
    tracing::info!(port = app.port(), "API listening; Swagger UI at /docs");
    app.run_until(stop_signal()).await.context("server failed")
}

/// Ctrl-C or SIGTERM: stop accepting, finish in-flight requests.
async fn stop_signal() {
    #[cfg(unix)]
    {
        let mut sigterm =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler can be installed");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = sigterm.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("stop signal received, draining requests");
}

/// Rebuilds the search index from Postgres into a new index and swaps it in. A running API on
/// the same index directory (or OpenSearch alias) picks the new index up within a poll.
async fn reindex() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let count = emporium_api::search::reindex(&config).await?;
    tracing::info!(products = count, "search index rebuilt and swapped in");
    Ok(())
}

async fn migrate() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    emporium_entities::db::connect_and_migrate(&config.database_url, 2).await?;
    tracing::info!("database is up to date");
    Ok(())
}

async fn seed_demo(args: &[String]) -> anyhow::Result<()> {
    let count = match args {
        [] => 1_200,
        [flag, n] if flag == "--products" => n.parse().context("--products takes a number")?,
        _ => anyhow::bail!("{USAGE}"),
    };
    let config = Config::from_env()?;
    let db = emporium_entities::db::connect_and_migrate(&config.database_url, 4).await?;
    let report = catalogue_generator::seed_catalogue(&db, count).await?;
    tracing::info!(
        categories_created = report.categories_created,
        products_created = report.products_created,
        products_requested = count,
        "demo catalogue loaded"
    );
    Ok(())
}
