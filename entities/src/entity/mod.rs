//! SeaORM entities. Statuses and kinds are Rust enums stored as the text the migration CHECKs.

pub mod categories;
pub mod inventory;
pub mod outbox;
pub mod products;
pub mod users;
