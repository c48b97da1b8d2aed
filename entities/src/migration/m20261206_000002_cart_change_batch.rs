//! `cart_change_batch(changes, max_line)` applies several signed-in cart changes in one round
//! trip and one commit. The API's cart writer sends the changes that queued up while its
//! previous batches were running, so a busy store pays one statement, one commit and one
//! connection wake-up per batch instead of per change; an idle store sends batches of one.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `changes` is a JSON array of `{"user", "newCart", "mode", "product", "quantity"}`, in the
/// order the caller wants the carts locked (by user, so two batches never wait on each other in
/// a cycle). Each change runs through `cart_change` in that order and its rows come back tagged
/// with `idx`, its position in the array. A refusal is a row like any other; an error aborts the
/// whole batch, and nothing of it is applied. A cart locked elsewhere for longer than the lock
/// timeout fails the batch too (the caller then sends the changes one by one), rather than
/// keeping every other cart of the batch waiting with it.
pub(super) const CREATE: &str = r#"
CREATE OR REPLACE FUNCTION cart_change_batch(p_changes jsonb, p_max_line integer)
RETURNS TABLE (
    idx integer, status integer, in_cart integer, available integer, cart_currency text, version bigint,
    product_id bigint, quantity integer, unit_price_minor bigint, currency text, added_at timestamptz,
    sku text, title text, price_minor bigint, current_currency text, current_available integer, deleted boolean)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_change jsonb;
BEGIN
    PERFORM set_config('lock_timeout', '250ms', true); -- for this transaction only
    FOR i IN 0 .. jsonb_array_length(p_changes) - 1 LOOP
        v_change := p_changes -> i;
        RETURN QUERY SELECT i, c.*
          FROM cart_change((v_change ->> 'user')::uuid, (v_change ->> 'newCart')::uuid, v_change ->> 'mode',
                           (v_change ->> 'product')::bigint, (v_change ->> 'quantity')::integer, p_max_line) AS c;
    END LOOP;
END
$fn$;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(CREATE).await.map(|_| ())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("DROP FUNCTION IF EXISTS cart_change_batch(jsonb, integer)").await.map(|_| ())
    }
}
