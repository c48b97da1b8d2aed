use chrono::Utc;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, Statement};
use uuid::Uuid;

use super::StoreError;
use crate::entity::users::{self, Role};

pub async fn find_user_by_email<C: ConnectionTrait>(db: &C, email: &str) -> Result<Option<users::Model>, StoreError> {
    Ok(users::Entity::find().filter(users::Column::Email.eq(email)).one(db).await?)
}

pub async fn find_user<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<Option<users::Model>, StoreError> {
    Ok(users::Entity::find_by_id(id).one(db).await?)
}

/// Inserts a new user; `StoreError::Duplicate` when the email is taken.
pub async fn insert_user<C: ConnectionTrait>(db: &C, email: &str, password_hash: &str, role: Role) -> Result<users::Model, StoreError> {
    let now = Utc::now();
    let user = users::ActiveModel {
        id: Set(Uuid::now_v7()),
        email: Set(email.to_owned()),
        password_hash: Set(password_hash.to_owned()),
        role: Set(role),
        created_at: Set(now),
        updated_at: Set(now),
    };
    Ok(user.insert(db).await?)
}

/// Creates the admin account, or makes an existing account with that email an admin with this
/// password. Safe to run at every start-up and from several instances at once.
pub async fn upsert_admin<C: ConnectionTrait>(db: &C, email: &str, password_hash: &str) -> Result<Uuid, StoreError> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO users (id, email, password_hash, role) VALUES ($1, $2, $3, 'admin') \
             ON CONFLICT (email) DO UPDATE SET password_hash = EXCLUDED.password_hash, role = 'admin', \
             updated_at = now() RETURNING id",
            [Uuid::now_v7().into(), email.into(), password_hash.into()],
        ))
        .await?
        .ok_or(StoreError::NotFound)?;
    Ok(row.try_get("", "id")?)
}
