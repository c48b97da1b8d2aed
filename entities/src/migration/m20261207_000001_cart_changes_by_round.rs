//! `cart_changes` applies a batch in rounds of set-based statements instead of one change at a
//! time. The function before ran four statements per change (lock, check, write, lines), and
//! per change most of Postgres's time went into starting each statement's executor, not into
//! the work itself. Now a round (the first change of every user in the batch, then the second,
//! ...) takes four statements whatever its size: lock every cart of the round, check every
//! change, write every line, return every cart. Removals add a fifth. Same arguments, same rows
//! and the same outcome per change as before, so API instances of the previous release keep
//! working during a rolling deploy.
//!
//! This also drops `cart_change` and `cart_change_batch`, which no release since `cart_changes`
//! came calls.

use sea_orm_migration::prelude::*;

use super::{m20261203_000001_cart_change_function, m20261206_000002_cart_change_batch, m20261206_000003_cart_changes};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The contract is `m20261206_000003`'s: `changes` is a JSON array of `{"user", "newCart",
/// "mode", "product", "quantity"}`; each change's rows come back tagged with `idx`, its position
/// in the array. `status` 0 applied, 1 over the line limit, 2 not enough stock, 3 no such line,
/// 4 the cart holds another currency (`cart_currency`), 5 no such product. A refusal changes no
/// line (a cart row created for it stays, empty; the version counter moves) and returns one row
/// without a line; success returns the lines, unordered (one all-NULL line row when the cart is
/// empty). An error aborts the whole call, and nothing of it is applied. `lock_timeout_ms`, when
/// given, bounds the wait for a cart locked elsewhere, for the rest of the transaction.
///
/// Changes to one user apply in the order given: a user's k-th change is in round k, and the
/// rounds run one after the other. Within a round every user is distinct, so one statement can
/// do a step for all of them. Carts are locked in user order, so two batches never wait on each
/// other in a cycle (a later round only re-locks carts its batch already holds).
///
/// Each statement of a plpgsql function takes its own snapshot under read committed, so the
/// check that follows the lock sees every change committed before the lock was granted. One
/// statement for both would read the lines as they were before waiting for the lock.
const CREATE: &str = r#"
CREATE OR REPLACE FUNCTION cart_changes(p_changes jsonb, p_max_line integer, p_lock_timeout_ms integer)
RETURNS TABLE (
    idx integer, status integer, in_cart integer, available integer, cart_currency text, version bigint,
    product_id bigint, quantity integer, unit_price_minor bigint, currency text, added_at timestamptz,
    sku text, title text, price_minor bigint, current_currency text, current_available integer, deleted boolean)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    -- every change, with its round
    a_idx integer[]; a_round integer[]; a_user uuid[]; a_new_cart uuid[]; a_mode text[]; a_product bigint[];
    a_quantity integer[];
    v_rounds integer;
    -- the round's carts, locked
    l_user uuid[]; l_cart uuid[]; l_version bigint[];
    -- the round's changes, checked
    d_idx integer[]; d_mode text[]; d_product bigint[]; d_cart uuid[]; d_version bigint[]; d_status integer[];
    d_existing integer[]; d_available integer[]; d_other text[]; d_price bigint[]; d_currency text[];
    d_wanted integer[];
    v_writes boolean;
    v_deletes boolean;
    v_removed integer[];
BEGIN
    IF p_lock_timeout_ms IS NOT NULL THEN
        PERFORM set_config('lock_timeout', p_lock_timeout_ms || 'ms', true); -- this transaction only
    END IF;

    SELECT array_agg(ch.ord::integer - 1 ORDER BY ch.ord), array_agg(ch.rnd ORDER BY ch.ord),
           array_agg(ch."user" ORDER BY ch.ord), array_agg(ch."newCart" ORDER BY ch.ord),
           array_agg(ch.mode ORDER BY ch.ord), array_agg(ch.product ORDER BY ch.ord),
           array_agg(ch.quantity ORDER BY ch.ord), max(ch.rnd)
      INTO a_idx, a_round, a_user, a_new_cart, a_mode, a_product, a_quantity, v_rounds
      FROM (SELECT x.*, row_number() OVER (PARTITION BY x."user" ORDER BY x.ord)::integer AS rnd
              FROM ROWS FROM (jsonb_to_recordset(p_changes)
                       AS ("user" uuid, "newCart" uuid, mode text, product bigint, quantity integer)) WITH ORDINALITY
                   AS x("user", "newCart", mode, product, quantity, ord)) ch;
    IF v_rounds IS NULL THEN
        RETURN; -- no changes
    END IF;
    IF NOT (a_mode <@ ARRAY['add', 'set', 'remove', 'clear']) THEN -- NULL is in no array
        RAISE EXCEPTION 'cart_changes: unknown mode in %', a_mode;
    END IF;

    FOR v_round IN 1 .. v_rounds LOOP
        -- Lock (creating where needed) the round's carts, in user order. The version moves even
        -- when the change is then refused; nothing else does.
        WITH locked AS (
            INSERT INTO carts AS ca (id, user_id, version)
            SELECT ch.new_cart, ch.user_id, 1
              FROM unnest(a_user, a_new_cart, a_round) AS ch(user_id, new_cart, rnd)
             WHERE ch.rnd = v_round
             ORDER BY ch.user_id
            ON CONFLICT (user_id) DO UPDATE SET version = ca.version + 1, updated_at = now()
            RETURNING ca.user_id, ca.id, ca.version)
        SELECT array_agg(l.user_id), array_agg(l.id), array_agg(l.version)
          INTO l_user, l_cart, l_version
          FROM locked l;

        -- Check each change against its cart as now committed. A removal is decided by its
        -- delete below.
        SELECT array_agg(ch.idx), array_agg(ch.mode), array_agg(ch.product), array_agg(l.cart_id),
               array_agg(l.version), array_agg(s.status), array_agg(ci.quantity), array_agg(COALESCE(i.available, 0)),
               array_agg(o.currency), array_agg(p.price_minor), array_agg(p.currency), array_agg(w.wanted),
               bool_or(s.status = 0 AND ch.mode IN ('add', 'set')), bool_or(ch.mode IN ('remove', 'clear'))
          INTO d_idx, d_mode, d_product, d_cart, d_version, d_status, d_existing, d_available, d_other, d_price,
               d_currency, d_wanted, v_writes, v_deletes
          FROM unnest(a_idx, a_round, a_user, a_mode, a_product, a_quantity)
               AS ch(idx, rnd, user_id, mode, product, quantity)
          JOIN unnest(l_user, l_cart, l_version) AS l(user_id, cart_id, version) ON l.user_id = ch.user_id
          LEFT JOIN products p ON p.id = ch.product AND p.deleted_at IS NULL AND ch.mode IN ('add', 'set')
          LEFT JOIN inventory i ON i.product_id = p.id
          LEFT JOIN cart_items ci ON ci.cart_id = l.cart_id AND ci.product_id = ch.product
          LEFT JOIN LATERAL (SELECT oc.currency FROM cart_items oc
                              WHERE oc.cart_id = l.cart_id AND oc.currency <> p.currency LIMIT 1) o ON true
          CROSS JOIN LATERAL (SELECT CASE ch.mode WHEN 'add' THEN COALESCE(ci.quantity, 0) + ch.quantity
                                                  WHEN 'set' THEN ch.quantity END AS wanted) w
          CROSS JOIN LATERAL (SELECT CASE
                  WHEN ch.mode NOT IN ('add', 'set') THEN 0
                  WHEN ch.mode = 'set' AND ci.quantity IS NULL THEN 3
                  WHEN p.id IS NULL THEN 5
                  WHEN w.wanted > p_max_line THEN 1
                  WHEN w.wanted > COALESCE(i.available, 0) THEN 2
                  WHEN o.currency IS NOT NULL THEN 4
                  ELSE 0 END AS status) s
         WHERE ch.rnd = v_round;

        IF v_writes THEN
            -- An existing line keeps the price and time it was first added at. A new one gets
            -- clock_timestamp(), not the transaction's now(), so lines one user adds in one
            -- batch (one per round) list in the order they were added.
            INSERT INTO cart_items AS ci (cart_id, product_id, quantity, unit_price_minor, currency, added_at)
            SELECT d.cart_id, d.product, d.wanted, d.price, d.currency, clock_timestamp()
              FROM unnest(d_cart, d_product, d_wanted, d_price, d_currency, d_status, d_mode)
                   AS d(cart_id, product, wanted, price, currency, status, mode)
             WHERE d.status = 0 AND d.mode IN ('add', 'set')
            ON CONFLICT (cart_id, product_id) DO UPDATE SET quantity = EXCLUDED.quantity, updated_at = now();
        END IF;

        IF v_deletes THEN
            WITH gone AS (
                DELETE FROM cart_items ci
                 USING unnest(d_idx, d_cart, d_product, d_mode) AS d(idx, cart_id, product, mode)
                 WHERE ci.cart_id = d.cart_id
                   AND (d.mode = 'clear' OR (d.mode = 'remove' AND ci.product_id = d.product))
                RETURNING d.idx)
            SELECT array_agg(g.idx) INTO v_removed FROM gone g;
            -- a removal that found no line is refused
            d_status := ARRAY(
                SELECT CASE WHEN d.mode = 'remove' AND NOT d.idx = ANY (COALESCE(v_removed, '{}')) THEN 3 ELSE d.status END
                  FROM unnest(d_idx, d_mode, d_status) WITH ORDINALITY AS d(idx, mode, status, ord)
                 ORDER BY d.ord);
        END IF;

        -- A refusal's one row; an applied change's cart, priced now (one all-NULL line row when
        -- it is empty).
        RETURN QUERY
            SELECT d.idx, d.status,
                   CASE WHEN d.status = 0 THEN COALESCE(d.wanted, 0) ELSE COALESCE(d.existing, 0) END,
                   d.available,
                   d.other, -- NULL unless refused for it
                   d.version, ci.product_id, ci.quantity, ci.unit_price_minor,
                   CASE WHEN d.status = 0 THEN ci.currency ELSE d.currency END,
                   ci.added_at, p.sku, p.title, p.price_minor, p.currency,
                   CASE WHEN ci.product_id IS NULL THEN NULL ELSE COALESCE(i.available, 0) END,
                   CASE WHEN ci.product_id IS NULL THEN NULL ELSE p.deleted_at IS NOT NULL END
              FROM unnest(d_idx, d_status, d_wanted, d_existing, d_available, d_other, d_version, d_currency, d_cart)
                   AS d(idx, status, wanted, existing, available, other, version, currency, cart_id)
              LEFT JOIN cart_items ci ON d.status = 0 AND ci.cart_id = d.cart_id
              LEFT JOIN products p ON p.id = ci.product_id -- a line's product always exists (a key)
              LEFT JOIN inventory i ON i.product_id = ci.product_id;
    END LOOP;
END
$fn$;
"#;

const DROP_SINGLE_AND_BATCH: &str = "DROP FUNCTION IF EXISTS cart_change_batch(jsonb, integer); \
    DROP FUNCTION IF EXISTS cart_change(uuid, uuid, text, bigint, integer, integer);";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(CREATE).await?;
        db.execute_unprepared(DROP_SINGLE_AND_BATCH).await.map(|_| ())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(m20261203_000001_cart_change_function::CREATE).await?;
        db.execute_unprepared(m20261206_000002_cart_change_batch::CREATE).await?;
        db.execute_unprepared(m20261206_000003_cart_changes::CREATE).await.map(|_| ())
    }
}
