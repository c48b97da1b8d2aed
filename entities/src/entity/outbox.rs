use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum OutboxKind {
    #[sea_orm(string_value = "PRODUCT_CREATED")]
    ProductCreated,
    #[sea_orm(string_value = "PRODUCT_UPDATED")]
    ProductUpdated,
    #[sea_orm(string_value = "PRODUCT_DELETED")]
    ProductDeleted,
    #[sea_orm(string_value = "STOCK_CHANGED")]
    StockChanged,
    #[sea_orm(string_value = "CATEGORY_CREATED")]
    CategoryCreated,
}

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub aggregate: String,
    pub aggregate_id: String,
    pub kind: OutboxKind,
    pub payload: Json,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
