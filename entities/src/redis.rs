//! The Redis client the API and the worker share.

use std::time::Duration;

use fred::{
    clients::Client as RedisClient,
    interfaces::{ClientLike, EventInterface},
    prelude::{Builder, Config as RedisConfig, ReconnectPolicy},
};

/// Builds a Redis client that connects in the background and keeps reconnecting, so a process
/// starts (and reports itself not ready) while Redis is down.
pub fn client(url: &str) -> Result<RedisClient, fred::error::Error> {
    let config = RedisConfig::from_url(url)?;
    let client = Builder::from_config(config)
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(2);
            c.internal_command_timeout = Duration::from_secs(2);
        })
        .with_performance_config(|p| {
            p.default_command_timeout = Duration::from_secs(2);
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
        .build()?;
    client.on_error(|(err, server)| async move {
        tracing::warn!(error = %err, server = ?server, "redis connection error");
        Ok(())
    });
    client.connect();
    Ok(client)
}

/// Where the API caches a signed-in user's cart (`version|json`, see the API's cart cache).
pub fn user_cart_key(user: uuid::Uuid) -> String {
    format!("cart:user:{user}")
}

/// Drops a user's cached cart after a change made outside the API's cart service (an order
/// taking the bought lines out): the next read loads it from Postgres.
pub async fn forget_user_cart(redis: &RedisClient, user: uuid::Uuid) -> Result<(), fred::error::Error> {
    use fred::interfaces::KeysInterface;
    redis.del::<i64, _>(user_cart_key(user)).await.map(|_| ())
}
