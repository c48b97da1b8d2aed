//! A flash sale's hot state in Redis: its unit counter, each user's claim and count, the rate
//! limit and the waiting room. Every entry is ONE Lua script, so admission is atomic at
//! stampede speed. Postgres remains the record (`store::flash_sales`): the counter is loaded
//! and rebuilt from it, never from scratch.

use std::sync::LazyLock;

use fred::{
    clients::Client as RedisClient, interfaces::HashesInterface, interfaces::KeysInterface, interfaces::SortedSetsInterface,
    types::scripts::Script,
};
use uuid::Uuid;

/// Entry attempts a user may make per window before being refused.
pub const ATTEMPTS_PER_WINDOW: u32 = 5;
pub const ATTEMPT_WINDOW_MS: u64 = 60_000;
/// A queued user who has not polled for this long leaves the waiting room; the
/// `retryAfterMs` a queued user is given is at most half of it.
pub const QUEUE_IDLE_MS: u64 = 30_000;

/// All keys of a sale share one hash slot (`{fs:<id>}`), as a Redis Cluster script needs.
struct Keys {
    sale: String,
    user: String,
    attempts: String,
    queue: String,
    queue_seen: String,
    queue_seq: String,
    admitted: String,
    returned: String,
}

fn keys(sale: Uuid, user: Uuid) -> Keys {
    let tag = format!("{{fs:{sale}}}");
    Keys {
        sale: format!("{tag}:sale"),
        user: format!("{tag}:user:{user}"),
        attempts: format!("{tag}:attempts:{user}"),
        queue: format!("{tag}:queue"),
        queue_seen: format!("{tag}:queue-seen"),
        queue_seq: format!("{tag}:queue-seq"),
        admitted: format!("{tag}:admitted"),
        returned: format!("{tag}:returned"),
    }
}

fn sale_key(sale: Uuid) -> String {
    keys(sale, Uuid::nil()).sale
}

/// What an entry attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A unit is held for this user until `expires_at_ms`; `new` when this attempt won it.
    Claimed {
        claim_id: Uuid,
        expires_at_ms: i64,
        new: bool,
    },
    Queued {
        position: i64,
        retry_after_ms: i64,
    },
    RateLimited {
        retry_after_ms: i64,
    },
    /// Redis does not have the sale (not yet pre-warmed, or lost): load it and try again.
    NotLoaded,
    NotStarted,
    Ended,
    LimitReached,
    SoldOut,
}

static ENTER: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
-- KEYS: sale, user, attempts, queue, queue-seen, queue-seq, admitted.
-- ARGV: user id, new claim id, claim ttl ms, attempts allowed, attempt window ms, queue idle ms,
-- '1' when this attempt was counted by an earlier call.
local sale, user, attempts, queue, seen, seq, admitted = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local uid = ARGV[1]
local queued = redis.call('ZSCORE', queue, uid)
-- a waiting-room poll is not a new attempt, nor is the retry of one this script already
-- counted (ARGV[7]: after the caller loaded the sale or freed an abandoned claim)
if not queued and ARGV[7] ~= '1' then
  local n = redis.call('INCR', attempts)
  if n == 1 then redis.call('PEXPIRE', attempts, ARGV[5]) end
  if n > tonumber(ARGV[4]) then return {'rate_limited', tostring(redis.call('PTTL', attempts))} end
end
local s = redis.call('HMGET', sale, 'remaining', 'per_user_limit', 'starts_ms', 'ends_ms', 'admission_per_sec')
if not s[1] then return {'not_loaded'} end
if now < tonumber(s[3]) then return {'not_started'} end
if now >= tonumber(s[4]) then return {'ended'} end
local u = redis.call('HMGET', user, 'claim', 'claim_expires_ms', 'units')
if u[1] and tonumber(u[2]) > now then return {'existing', u[1], u[2]} end
if tonumber(u[3] or '0') >= tonumber(s[2]) then return {'limit_reached'} end
if tonumber(s[1]) <= 0 then
  if queued then redis.call('ZREM', queue, uid); redis.call('ZREM', seen, uid) end
  return {'sold_out'}
end
local rate = tonumber(s[5])
if rate > 0 then
  local sec = math.floor(now / 1000)
  local a = redis.call('HMGET', admitted, 'sec', 'used')
  local used = 0
  if tonumber(a[1] or '-1') == sec then used = tonumber(a[2]) end
  for _, idle in ipairs(redis.call('ZRANGEBYSCORE', seen, '-inf', now - tonumber(ARGV[6]), 'LIMIT', 0, 100)) do
    redis.call('ZREM', queue, idle)
    redis.call('ZREM', seen, idle)
  end
  local rank = redis.call('ZRANK', queue, uid)
  local ahead = rank or redis.call('ZCARD', queue)
  if ahead < rate - used then
    if rank then redis.call('ZREM', queue, uid); redis.call('ZREM', seen, uid) end
    redis.call('HSET', admitted, 'sec', sec, 'used', used + 1)
    redis.call('PEXPIREAT', admitted, tonumber(s[4]) + 3600000)
  else
    if not rank then
      redis.call('ZADD', queue, redis.call('INCR', seq), uid)
      redis.call('PEXPIREAT', queue, tonumber(s[4]) + 3600000)
      redis.call('PEXPIREAT', seq, tonumber(s[4]) + 3600000)
      rank = ahead
    end
    redis.call('ZADD', seen, now, uid)
    redis.call('PEXPIREAT', seen, tonumber(s[4]) + 3600000)
    local seconds = math.floor((rank - (rate - used)) / rate) + 1
    -- back well before the idle timeout, or the place would be lost
    local wait = math.min(seconds * 1000 - (now % 1000), math.floor(tonumber(ARGV[6]) / 2))
    return {'queued', tostring(rank + 1), tostring(wait)}
  end
end
local left = redis.call('HINCRBY', sale, 'remaining', -1)
if left < 0 then
  redis.call('HINCRBY', sale, 'remaining', 1)
  return {'sold_out'}
end
local expires = now + tonumber(ARGV[3])
redis.call('HSET', user, 'claim', ARGV[2], 'claim_expires_ms', expires, 'units', tonumber(u[3] or '0') + 1)
redis.call('PEXPIREAT', user, tonumber(s[4]) + 3600000)
return {'claimed', ARGV[2], tostring(expires)}
"#,
    )
});

/// One entry attempt of `user` at `sale`; `claim_ttl_ms` is how long a won unit is held.
/// `retry`: the same attempt again (after loading the sale, say), not counted twice.
pub async fn enter(redis: &RedisClient, sale: Uuid, user: Uuid, claim_ttl_ms: u64, retry: bool) -> Result<Entry, fred::error::Error> {
    let k = keys(sale, user);
    let new_claim = Uuid::now_v7();
    let reply: Vec<String> = ENTER
        .evalsha_with_reload(
            redis,
            vec![k.sale, k.user, k.attempts, k.queue, k.queue_seen, k.queue_seq, k.admitted],
            vec![
                user.to_string(),
                new_claim.to_string(),
                claim_ttl_ms.to_string(),
                ATTEMPTS_PER_WINDOW.to_string(),
                ATTEMPT_WINDOW_MS.to_string(),
                QUEUE_IDLE_MS.to_string(),
                if retry { "1" } else { "0" }.to_owned(),
            ],
        )
        .await?;
    let number = |i: usize| reply.get(i).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    let claim = |i: usize| reply.get(i).and_then(|v| Uuid::parse_str(v).ok()).unwrap_or(new_claim);
    Ok(match reply.first().map(String::as_str) {
        Some("claimed") => Entry::Claimed { claim_id: claim(1), expires_at_ms: number(2), new: true },
        Some("existing") => Entry::Claimed { claim_id: claim(1), expires_at_ms: number(2), new: false },
        Some("queued") => Entry::Queued { position: number(1), retry_after_ms: number(2) },
        Some("rate_limited") => Entry::RateLimited { retry_after_ms: number(1).max(1) },
        Some("not_started") => Entry::NotStarted,
        Some("ended") => Entry::Ended,
        Some("limit_reached") => Entry::LimitReached,
        Some("sold_out") => Entry::SoldOut,
        _ => Entry::NotLoaded,
    })
}

static GIVE_BACK: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
-- KEYS: sale, user, returned. ARGV: claim id, '1' to put the unit back on the counter.
-- Returns 1 if this call undid the claim.
if redis.call('SADD', KEYS[3], ARGV[1]) == 0 then return 0 end
redis.call('PEXPIRE', KEYS[3], 7 * 24 * 3600000)
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HINCRBY', KEYS[1], 'remaining', 1) end
if redis.call('EXISTS', KEYS[2]) == 1 then
  if tonumber(redis.call('HGET', KEYS[2], 'units') or '0') > 0 then redis.call('HINCRBY', KEYS[2], 'units', -1) end
  if redis.call('HGET', KEYS[2], 'claim') == ARGV[1] then redis.call('HDEL', KEYS[2], 'claim', 'claim_expires_ms') end
end
return 1
"#,
    )
});

/// Puts the unit of an unpaid claim back on the counter, once per claim id (so the next buyer
/// can win it), and frees the user's claim. A sale Redis has lost is rebuilt from Postgres,
/// where the claim is no longer counted.
pub async fn give_back(redis: &RedisClient, sale: Uuid, user: Uuid, claim_id: Uuid) -> Result<bool, fred::error::Error> {
    undo_claim(redis, sale, user, claim_id, true).await
}

/// Frees the user of a claim that Postgres refused because the sale has no unit left: the
/// counter granted a unit that does not exist, so it keeps the decrement, and drains what it
/// believed in too many (after a rebuild raced a claim's commit, say).
pub async fn withdraw_phantom_claim(redis: &RedisClient, sale: Uuid, user: Uuid, claim_id: Uuid) -> Result<bool, fred::error::Error> {
    undo_claim(redis, sale, user, claim_id, false).await
}

async fn undo_claim(redis: &RedisClient, sale: Uuid, user: Uuid, claim_id: Uuid, return_unit: bool) -> Result<bool, fred::error::Error> {
    let k = keys(sale, user);
    let args = vec![claim_id.to_string(), if return_unit { "1" } else { "0" }.to_owned()];
    let undone: i64 = GIVE_BACK.evalsha_with_reload(redis, vec![k.sale, k.user, k.returned], args).await?;
    Ok(undone == 1)
}

/// After payment the claim is spent: the user's unit stays counted, the claim is cleared.
pub async fn claim_paid(redis: &RedisClient, sale: Uuid, user: Uuid, claim_id: Uuid) -> Result<(), fred::error::Error> {
    let k = keys(sale, user);
    let current: Option<String> = redis.hget(&k.user, "claim").await?;
    if current.as_deref() == Some(claim_id.to_string().as_str()) {
        let _: i64 = redis.hdel(&k.user, vec!["claim", "claim_expires_ms"]).await?;
    }
    Ok(())
}

/// The settings and counter a sale is loaded with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleState {
    pub quantity: i64,
    /// Units not held by an open or paid claim in Postgres.
    pub remaining: i64,
    pub per_user_limit: i64,
    pub starts_ms: i64,
    pub ends_ms: i64,
    /// Entries admitted per second before the waiting room; 0 = no waiting room.
    pub admission_per_sec: i64,
}

static LOAD: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
-- KEYS: sale. ARGV: quantity, remaining, per-user limit, starts ms, ends ms, admission per sec.
-- Loads only a sale Redis does not have: a live counter is never overwritten.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'quantity', ARGV[1], 'remaining', ARGV[2], 'per_user_limit', ARGV[3],
  'starts_ms', ARGV[4], 'ends_ms', ARGV[5], 'admission_per_sec', ARGV[6])
redis.call('PEXPIREAT', KEYS[1], tonumber(ARGV[5]) + 3600000)
return 1
"#,
    )
});

/// Loads the sale unless Redis has it; `true` when it was loaded now.
pub async fn load(redis: &RedisClient, sale: Uuid, state: &SaleState) -> Result<bool, fred::error::Error> {
    let args: Vec<String> =
        [state.quantity, state.remaining, state.per_user_limit, state.starts_ms, state.ends_ms, state.admission_per_sec]
            .iter()
            .map(i64::to_string)
            .collect();
    let loaded: i64 = LOAD.evalsha_with_reload(redis, vec![sale_key(sale)], args).await?;
    Ok(loaded == 1)
}

/// The counter, if Redis has the sale.
pub async fn remaining(redis: &RedisClient, sale: Uuid) -> Result<Option<i64>, fred::error::Error> {
    redis.hget(sale_key(sale), "remaining").await
}

/// Users waiting in the sale's waiting room.
pub async fn queue_length(redis: &RedisClient, sale: Uuid) -> Result<i64, fred::error::Error> {
    redis.zcard(keys(sale, Uuid::nil()).queue).await
}

/// Forgets the sale's keys other than per-user ones (which expire an hour after the end).
pub async fn forget(redis: &RedisClient, sale: Uuid) -> Result<(), fred::error::Error> {
    let k = keys(sale, Uuid::nil());
    let _: i64 = redis.del(vec![k.queue, k.queue_seen, k.queue_seq, k.admitted]).await?;
    Ok(())
}
