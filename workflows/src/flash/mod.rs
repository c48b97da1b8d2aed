//! Flash sales: a `FlashSaleWorkflow` per sale (`flash-sale:<id>`: pre-warm, end, reconcile)
//! and a `FlashSaleClaimWorkflow` per won unit (`flash-claim:<sale>:<user>`: payment or expiry).

mod claim;
pub mod contract;
mod sale;

pub use claim::FlashSaleClaimWorkflow;
pub use sale::FlashSaleWorkflow;
