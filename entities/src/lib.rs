//! Emporium's records: SeaORM entities, migrations, and the store functions that read and write
//! them. Store functions are generic over `ConnectionTrait` so they run on the pool or inside a
//! transaction the caller owns.

pub mod db;
pub mod entity;
pub mod flash_redis;
pub mod migration;
pub mod redis;
pub mod store;

pub use migration::Migrator;
pub use store::StoreError;
