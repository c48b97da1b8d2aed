//! The search indexer follows the outbox by transaction, not by id alone: ids come from an
//! identity column, so a transaction that commits late can carry a smaller id than rows already
//! read. `txid` (the writing transaction, `pg_current_xact_id()`) lets the indexer tell rows of
//! finished transactions (below the snapshot's xmin: final) from rows of recent ones.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Rows that exist already get the migrating transaction's id: one finished transaction.
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE outbox ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();
                 CREATE INDEX outbox_txid_idx ON outbox (txid, id);",
            )
            .await
            .map(|_| ())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS outbox_txid_idx; ALTER TABLE outbox DROP COLUMN IF EXISTS txid;")
            .await
            .map(|_| ())
    }
}
