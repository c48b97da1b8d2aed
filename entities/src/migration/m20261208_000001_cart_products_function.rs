//! `cart_products(ids)`: the live products a cart is priced with, in a function whose query keeps
//! one generic plan.
//!
//! As a prepared statement, `WHERE p.id = ANY($1)` was planned again at every execution:
//! Postgres compares the generic plan's cost, which assumes an array of unknown length, with the
//! custom plans' cost for the arrays actually sent (one or two ids), finds the generic dearer and
//! keeps planning. In a profile of the anonymous-cart benchmark Postgres used about 40% of the
//! two cores, most of it in the planner, for a two-row primary-key lookup. Inside the function
//! `plan_cache_mode = force_generic_plan` holds for this one query (the function's `SET`
//! clause), so it is planned once per connection; the call itself has a plan that does not
//! depend on the array and is cached by the normal rule. The plan is the same for any number of
//! ids: an index scan of `products` by primary key and one of `inventory` per product.
//!
//! Only added: API instances of the previous release run their own query meanwhile.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const CREATE: &str = r#"
CREATE OR REPLACE FUNCTION cart_products(p_ids bigint[])
RETURNS TABLE (id bigint, sku text, title text, price_minor bigint, currency text, available integer, deleted boolean)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
AS $fn$
BEGIN
    RETURN QUERY
    SELECT p.id, p.sku, p.title, p.price_minor, p.currency, COALESCE(i.available, 0), p.deleted_at IS NOT NULL
    FROM products p LEFT JOIN inventory i ON i.product_id = p.id
    WHERE p.id = ANY(p_ids);
END
$fn$;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(CREATE).await.map(|_| ())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("DROP FUNCTION IF EXISTS cart_products(bigint[])").await.map(|_| ())
    }
}
