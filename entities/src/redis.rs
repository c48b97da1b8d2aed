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

/// Replaces a user's cached cart with a marker of `version` (unless a newer cart is cached):
/// readers find no cart there and load it from Postgres, and a reader that loaded an older
/// version before the change can no longer cache it (the API's cache only moves to newer
/// versions). For changes made outside the API's cart service (an order taking the bought
/// lines out) and for a cache write that failed.
pub async fn supersede_user_cart(redis: &RedisClient, user: uuid::Uuid, version: i64) -> Result<(), fred::error::Error> {
    static SUPERSEDE: std::sync::LazyLock<fred::types::scripts::Script> = std::sync::LazyLock::new(|| {
        fred::types::scripts::Script::from_lua(
            r#"
local current = redis.call('GET', KEYS[1])
local cached = current and tonumber(string.match(current, '^(%d+)|'))
if cached and cached >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1] .. '|', 'PX', ARGV[2])
return 1
"#,
        )
    });
    let args = vec![version.to_string(), USER_CART_TTL.as_millis().to_string()];
    SUPERSEDE.evalsha_with_reload::<i64, _, _>(redis, user_cart_key(user), args).await.map(|_| ())
}

/// How long a cached signed-in cart (or its marker) is kept.
pub const USER_CART_TTL: Duration = Duration::from_secs(3600);

/// Drops a user's cached cart (when its version is not known).
pub async fn forget_user_cart(redis: &RedisClient, user: uuid::Uuid) -> Result<(), fred::error::Error> {
    use fred::interfaces::KeysInterface;
    redis.del::<i64, _>(user_cart_key(user)).await.map(|_| ())
}
