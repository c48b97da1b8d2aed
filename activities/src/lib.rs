//! Side effects and their compensations, as Temporal activities. Each struct holds what its
//! activities need (the pool, gateways) and implements the contracts declared in
//! `emporium-workflows`; a test checks the names line up.

pub mod system;

pub use system::SystemActivities;
