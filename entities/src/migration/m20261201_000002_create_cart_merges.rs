//! Remembers which anonymous sessions were merged into which account, in the transaction that
//! merges them, so a repeated login with the same session merges once.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE TABLE cart_merges (
                    session_id text PRIMARY KEY,
                    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                    merged_at  timestamptz NOT NULL DEFAULT now()
                )",
            )
            .await
            .map(|_| ())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("DROP TABLE IF EXISTS cart_merges").await.map(|_| ())
    }
}
