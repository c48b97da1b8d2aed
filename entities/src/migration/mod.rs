//! Schema migrations, run by the API and worker at start-up (`Migrator::up` is idempotent).

use sea_orm_migration::prelude::*;

mod m20261201_000001_create_schema;
mod m20261201_000002_create_cart_merges;
mod m20261202_000001_flash_sale_claims_paying;
mod m20261202_000010_outbox_txid;
mod m20261203_000001_cart_change_function;
mod m20261206_000001_cart_merges_by_take;
mod m20261206_000002_cart_change_batch;
mod m20261206_000003_cart_changes;
mod m20261207_000001_cart_changes_by_round;
mod m20261208_000001_cart_products_function;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261201_000001_create_schema::Migration),
            Box::new(m20261201_000002_create_cart_merges::Migration),
            Box::new(m20261202_000001_flash_sale_claims_paying::Migration),
            Box::new(m20261202_000010_outbox_txid::Migration),
            Box::new(m20261203_000001_cart_change_function::Migration),
            Box::new(m20261206_000001_cart_merges_by_take::Migration),
            Box::new(m20261206_000002_cart_change_batch::Migration),
            Box::new(m20261206_000003_cart_changes::Migration),
            Box::new(m20261207_000001_cart_changes_by_round::Migration),
            Box::new(m20261208_000001_cart_products_function::Migration),
        ]
    }
}
