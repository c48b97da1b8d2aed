//! Flash-sale claims get a PAYING state (the charge and the expiry serialise on it, as a
//! checkout's do), a user holds at most one open claim per sale, and each sale has its own
//! waiting-room admission rate.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE flash_sale_claims DROP CONSTRAINT IF EXISTS flash_sale_claims_status_check;
                 ALTER TABLE flash_sale_claims ADD CONSTRAINT flash_sale_claims_status_check
                     CHECK (status IN ('CLAIMED', 'PAYING', 'PAID', 'EXPIRED'));
                 CREATE UNIQUE INDEX flash_sale_claims_open_idx ON flash_sale_claims (sale_id, user_id)
                     WHERE status IN ('CLAIMED', 'PAYING');
                 ALTER TABLE flash_sales ADD COLUMN admission_per_sec integer NOT NULL DEFAULT 0
                     CHECK (admission_per_sec >= 0);",
            )
            .await
            .map(|_| ())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE flash_sales DROP COLUMN IF EXISTS admission_per_sec;
                 DROP INDEX IF EXISTS flash_sale_claims_open_idx;
                 ALTER TABLE flash_sale_claims DROP CONSTRAINT IF EXISTS flash_sale_claims_status_check;
                 ALTER TABLE flash_sale_claims ADD CONSTRAINT flash_sale_claims_status_check
                     CHECK (status IN ('CLAIMED', 'PAID', 'EXPIRED'));",
            )
            .await
            .map(|_| ())
    }
}
