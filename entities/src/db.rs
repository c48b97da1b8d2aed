//! Connecting to Postgres, and creating or dropping a database (used by start-up and the tests).

use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, TransactionTrait};
use sea_orm_migration::MigratorTrait;

use crate::Migrator;

/// Opens a pool on `url`.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        // By default every checkout from the pool is pinged first: a round trip per query.
        // Only a connection idle this long is checked. The price: after a Postgres restart,
        // each connection used within that time fails one query (activities retry it; an API
        // request gets a 503 or 500 once per connection).
        .test_before_acquire_if_idle_for(Duration::from_secs(30))
        .sqlx_logging(false);
    Database::connect(options).await
}

/// Splits `postgres://…/name?params` into the server URL (pointing at the `postgres`
/// maintenance database) and the database name.
pub fn split_database_url(url: &str) -> Result<(String, String), DbErr> {
    let (before_query, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let slash = before_query
        .rfind('/')
        .filter(|i| *i > "postgres://".len())
        .ok_or_else(|| DbErr::Custom(format!("database URL has no database name: {}", redact(url))))?;
    let name = before_query[slash + 1..].to_owned();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(DbErr::Custom(format!("unsupported database name {name:?}")));
    }
    let mut server = format!("{}/postgres", &before_query[..slash]);
    if let Some(query) = query {
        server.push('?');
        server.push_str(query);
    }
    Ok((server, name))
}

/// Creates the database named in `url` if it does not exist yet.
pub async fn ensure_database(url: &str) -> Result<(), DbErr> {
    let (server_url, name) = split_database_url(url)?;
    let server = connect(&server_url, 1).await?;
    let exists = server
        .query_one_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT 1 FROM pg_database WHERE datname = $1",
            [name.clone().into()],
        ))
        .await?
        .is_some();
    if !exists {
        // Two processes may race to create it; the loser sees "already exists", which is fine.
        if let Err(e) = server.execute_unprepared(&format!("CREATE DATABASE \"{name}\"")).await {
            let lost_race = e.to_string().contains("already exists") || e.to_string().contains("pg_database_datname_index");
            if !lost_race {
                return Err(e);
            }
        }
    }
    server.close().await
}

/// Drops the database named in `url`, disconnecting whoever still uses it.
pub async fn drop_database(url: &str) -> Result<(), DbErr> {
    let (server_url, name) = split_database_url(url)?;
    let server = connect(&server_url, 1).await?;
    server.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await?;
    server.close().await
}

/// Creates the database if needed, connects, and brings the schema up to date.
pub async fn connect_and_migrate(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    ensure_database(url).await?;
    let db = connect(url, max_connections).await?;
    // The API and the worker start together and both migrate: a transaction-scoped advisory
    // lock lets one apply the migrations while the other waits, then finds nothing to do.
    let tx = db.begin().await?;
    tx.execute_unprepared("SELECT pg_advisory_xact_lock(72635170001)").await?;
    Migrator::up(&tx, None).await?;
    tx.commit().await?;
    Ok(db)
}

/// The URL with any password replaced, for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_database_url_into_server_and_name() {
        let (server, name) = split_database_url("postgres://postgres@127.0.0.1:5432/emporium_test?sslmode=disable").unwrap();
        assert_eq!(server, "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable");
        assert_eq!(name, "emporium_test");
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
