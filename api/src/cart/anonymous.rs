//! Anonymous carts: a Redis hash per session, `product id -> "qty:unit price:currency:added ms"`,
//! changed only by one Lua script so concurrent writes cannot lose each other's updates.

use std::{collections::HashMap, sync::LazyLock, time::Duration};

use chrono::{TimeZone, Utc};
use fred::{clients::Client as RedisClient, interfaces::HashesInterface, types::scripts::Script};
use uuid::Uuid;

use emporium_entities::store::carts::{CartChange, CartError, CartLine, CartProduct};

use crate::error::{ApiError, ErrorCode};

pub const TTL: Duration = Duration::from_secs(24 * 3600);

/// A server-issued anonymous session: 32 lower-case hex digits (128 random bits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionId(String);

impl SessionId {
    pub fn generate() -> Self {
        Self(Uuid::new_v4().simple().to_string())
    }

    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let ok = raw.len() == 32 && raw.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ApiError::new(ErrorCode::InvalidSession, "X-Session-Id must be a session id issued by this API"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn key(session: &SessionId) -> String {
    format!("cart:anon:{}", session.0)
}

static CHANGE: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
-- KEYS[1] the cart. ARGV: mode (add|set|remove|clear), product id, quantity, unit price,
-- currency, now (ms), units available, most per line, ttl (ms).
-- Returns {status, units in the cart, then on success the cart's fields and values}:
-- status 0 done, 1 over the line limit, 2 not enough stock, 3 no such line, 4 other currency.
-- All as strings. Returning the lines saves the caller a second round trip.
local function with_lines(in_cart)
  local out = {'0', tostring(in_cart)}
  for _, item in ipairs(redis.call('HGETALL', KEYS[1])) do out[#out + 1] = item end
  return out
end
local mode = ARGV[1]
if mode == 'clear' then
  redis.call('DEL', KEYS[1])
  return {'0', '0'}
end
local current = redis.call('HGET', KEYS[1], ARGV[2])
if mode == 'remove' then
  if not current then return {'3', '0'} end
  redis.call('HDEL', KEYS[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[9])
  return with_lines(0)
end
local in_cart, price, currency, added = 0, ARGV[4], ARGV[5], ARGV[6]
if current then
  local q, p, c, a = string.match(current, '^(%d+):(%d+):(%u+):(%d+)$')
  in_cart, price, currency, added = tonumber(q), p, c, a
elseif mode == 'set' then
  return {'3', '0'}
end
local wanted = tonumber(ARGV[3])
if mode == 'add' then wanted = in_cart + wanted end
if wanted > tonumber(ARGV[8]) then return {'1', tostring(in_cart)} end
if wanted > tonumber(ARGV[7]) then return {'2', tostring(in_cart)} end
for _, line in ipairs(redis.call('HVALS', KEYS[1])) do
  if string.match(line, '^%d+:%d+:(%u+):') ~= currency then return {'4', tostring(in_cart)} end
end
redis.call('HSET', KEYS[1], ARGV[2], wanted .. ':' .. price .. ':' .. currency .. ':' .. added)
redis.call('PEXPIRE', KEYS[1], ARGV[9])
return with_lines(wanted)
"#,
    )
});

#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("refused: {0}")]
    Refused(CartError),
    #[error(transparent)]
    Redis(#[from] fred::error::Error),
}

/// Applies `change` and returns the lines after it, oldest first; `product` is the live
/// product for adds and sets.
pub async fn change(
    redis: &RedisClient,
    session: &SessionId,
    change: CartChange,
    product: Option<&CartProduct>,
    max_line: i32,
) -> Result<Vec<CartLine>, ChangeError> {
    let (mode, product_id, quantity) = change.parts();
    let (price, currency, available) = product.map_or((0, "XXX".to_owned(), 0), |p| (p.price_minor, p.currency.clone(), p.available));
    let args: Vec<String> = vec![
        mode.to_owned(),
        product_id.to_string(),
        quantity.to_string(),
        price.to_string(),
        currency.clone(),
        Utc::now().timestamp_millis().to_string(),
        available.to_string(),
        max_line.to_string(),
        TTL.as_millis().to_string(),
    ];
    let reply: Vec<String> = CHANGE.evalsha_with_reload(redis, key(session), args).await?;
    let status = reply.first().map(String::as_str).unwrap_or("");
    let in_cart: i32 = reply.get(1).and_then(|n| n.parse().ok()).unwrap_or(0);
    match status {
        "0" => Ok(sorted_lines(reply[2..].chunks_exact(2).filter_map(|pair| parse_line(&pair[0], &pair[1])))),
        "1" => Err(ChangeError::Refused(CartError::LineLimit { max: max_line, in_cart })),
        "2" => Err(ChangeError::Refused(CartError::InsufficientStock { available, in_cart })),
        "3" => Err(ChangeError::Refused(CartError::LineNotFound)),
        _ => Err(ChangeError::Refused(CartError::CurrencyMismatch { cart: "another currency".to_owned(), product: currency })),
    }
}

/// The products in the cart (to price them before a change).
pub async fn product_ids(redis: &RedisClient, session: &SessionId) -> Result<Vec<i64>, fred::error::Error> {
    let fields: Vec<String> = redis.hkeys(key(session)).await?;
    Ok(fields.iter().filter_map(|f| f.parse().ok()).collect())
}

fn sorted_lines(lines: impl Iterator<Item = CartLine>) -> Vec<CartLine> {
    let mut lines: Vec<CartLine> = lines.collect();
    lines.sort_by_key(|l| (l.added_at, l.product_id));
    lines
}

/// The lines, oldest first; an expired or unknown session has none.
pub async fn lines(redis: &RedisClient, session: &SessionId) -> Result<Vec<CartLine>, fred::error::Error> {
    let raw: HashMap<String, String> = redis.hgetall(key(session)).await?;
    Ok(sorted_lines(raw.iter().filter_map(|(product, value)| parse_line(product, value))))
}

fn merging_key(session: &SessionId) -> String {
    format!("cart:anon-merging:{}", session.0)
}

/// The field of a merging cart that names the take, so a retried merge is recognised.
const TAKE_FIELD: &str = "~take";

static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
-- KEYS: the cart, its merging copy. ARGV: a new take id, ttl (ms), the take field.
-- Moves the cart aside for a merge in one step, so a line added meanwhile lands in a new cart
-- instead of being deleted unmerged. A take left by a merge that did not finish comes first.
-- Returns {take id, fields and values...}, or {} when there is nothing to merge.
if redis.call('EXISTS', KEYS[2]) == 0 then
  if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
  redis.call('RENAME', KEYS[1], KEYS[2])
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
local out = {redis.call('HGET', KEYS[2], ARGV[3])}
for _, item in ipairs(redis.call('HGETALL', KEYS[2])) do out[#out + 1] = item end
return out
"#,
    )
});

/// The anonymous lines taken out of the session's cart for a merge, with the take's id.
pub struct Taken {
    pub take_id: String,
    pub lines: Vec<CartLine>,
}

/// Takes the session's cart for a merge; `None` when it has no lines. Finish with
/// [`merged`] once the merge is committed.
pub async fn take_for_merge(redis: &RedisClient, session: &SessionId) -> Result<Option<Taken>, fred::error::Error> {
    let args = vec![Uuid::new_v4().simple().to_string(), TTL.as_millis().to_string(), TAKE_FIELD.to_owned()];
    let reply: Vec<String> = TAKE.evalsha_with_reload(redis, vec![key(session), merging_key(session)], args).await?;
    let Some((take_id, fields)) = reply.split_first() else {
        return Ok(None);
    };
    let lines = sorted_lines(fields.chunks_exact(2).filter(|pair| pair[0] != TAKE_FIELD).filter_map(|pair| parse_line(&pair[0], &pair[1])));
    Ok(Some(Taken { take_id: take_id.clone(), lines }))
}

static FORGET_TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
-- KEYS: the merging copy. ARGV: the take id, the take field. Only that take: a later one
-- (another login of the same session) is not deleted before it is merged.
if redis.call('HGET', KEYS[1], ARGV[2]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#,
    )
});

/// Forgets a take whose merge is committed.
pub async fn merged(redis: &RedisClient, session: &SessionId, take_id: &str) -> Result<(), fred::error::Error> {
    let args = vec![take_id.to_owned(), TAKE_FIELD.to_owned()];
    FORGET_TAKE.evalsha_with_reload::<i64, _, _>(redis, merging_key(session), args).await.map(|_| ())
}

fn parse_line(product: &str, value: &str) -> Option<CartLine> {
    let mut parts = value.split(':');
    let quantity = parts.next()?.parse().ok()?;
    let unit_price_minor = parts.next()?.parse().ok()?;
    let currency = parts.next()?.to_owned();
    let added_ms: i64 = parts.next()?.parse().ok()?;
    Some(CartLine {
        product_id: product.parse().ok()?,
        quantity,
        unit_price_minor,
        currency,
        added_at: Utc.timestamp_millis_opt(added_ms).single()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_checked() {
        assert!(SessionId::parse(SessionId::generate().as_str()).is_ok());
        for bad in ["", "abc", "ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ", "0123456789abcdef0123456789abcdef0"] {
            assert!(SessionId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn stored_lines_parse_back() {
        let line = parse_line("42", "3:1999:USD:1700000000000").unwrap();
        assert_eq!((line.product_id, line.quantity, line.unit_price_minor, line.currency.as_str()), (42, 3, 1999, "USD"));
        assert!(parse_line("x", "3:1:USD:1").is_none());
    }
}
