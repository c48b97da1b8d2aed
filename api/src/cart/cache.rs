//! Read cache of signed-in carts: `version|json` under `cart:user:<id>`. A write only replaces
//! an older version, so a slow reader can never put back a cart that a writer has replaced.
//! Redis failures only cost a database read: Postgres holds the cart. A write that fails
//! supersedes the cached cart instead (`supersede_user_cart`), as an order made in the worker does.

use std::{sync::LazyLock, time::Duration};

use fred::{clients::Client as RedisClient, interfaces::KeysInterface, types::scripts::Script};
use uuid::Uuid;

use emporium_entities::store::carts::UserCart;

const TTL: Duration = emporium_entities::redis::USER_CART_TTL;

fn key(user: Uuid) -> String {
    emporium_entities::redis::user_cart_key(user)
}

/// ARGV: version, cart json, ttl ms, then optionally an event channel and message. The event
/// goes out unless a newer cart is cached (a device never gets an older cart after a newer
/// one); the same version may already be cached by a reader that loaded it first.
static PUT_IF_NEWER: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
local current = redis.call('GET', KEYS[1])
local cached = current and tonumber(string.match(current, '^(%d+)|'))
local version = tonumber(ARGV[1])
if cached and cached > version then return 0 end
-- a marker of this version (`version|`, see `supersede_user_cart`) gives way to the cart
if not cached or cached < version or current == ARGV[1] .. '|' then
  redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'PX', ARGV[3])
end
if ARGV[4] then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
return 1
"#,
    )
});

pub async fn get(redis: &RedisClient, user: Uuid) -> Option<UserCart> {
    let raw: Option<String> = match redis.get(key(user)).await {
        Ok(raw) => raw,
        Err(err) => {
            tracing::warn!(error = %err, "cart cache read failed");
            return None;
        }
    };
    let raw = raw?;
    let (_, json) = raw.split_once('|')?;
    serde_json::from_str(json).ok()
}

/// Caches `cart` unless a newer one is cached, and then publishes `event` (channel, message):
/// one command for both.
pub async fn put(redis: &RedisClient, user: Uuid, cart: &UserCart, event: Option<(String, String)>) {
    let json = match serde_json::to_string(cart) {
        Ok(json) => json,
        Err(err) => return tracing::error!(error = %err, "cart does not serialise"),
    };
    let mut args = vec![cart.version.to_string(), json, TTL.as_millis().to_string()];
    if let Some((channel, message)) = event {
        args.extend([channel, message]);
    }
    if let Err(err) = PUT_IF_NEWER.evalsha_with_reload::<i64, _, _>(redis, key(user), args).await {
        // the cached cart is now older than Postgres's: mark it superseded, or readers would see it
        match emporium_entities::redis::supersede_user_cart(redis, user, cart.version).await {
            Ok(()) => tracing::warn!(error = %err, "cart cache write failed; the cached cart was superseded"),
            Err(mark) => {
                tracing::error!(error = %err, supersede_error = %mark, "cart cache write failed and the stale cart could not be superseded")
            }
        }
    }
}
