//! Side effects and their compensations, as Temporal activities. Each struct holds what its
//! activities need (the pool, gateways) and implements the contracts declared in
//! `emporium-workflows`; a test checks the names line up.

pub mod checkout;
pub mod payment;
pub mod system;

pub use checkout::CheckoutActivities;
pub use payment::{PaymentActivities, PaymentGateway, SandboxGateway};
pub use system::SystemActivities;

use serde::Serialize;
use temporalio_sdk::{ApplicationFailure, activities::ActivityError};

/// A business outcome the workflow branches on: final (never retried), with a type name and
/// optional details.
pub(crate) fn business_failure<D: Serialize + Send + Sync + 'static>(kind: &str, message: String, details: Option<D>) -> ActivityError {
    let failure = ApplicationFailure::builder(message).type_name(kind.to_owned()).non_retryable(true);
    match details {
        Some(details) => ActivityError::application(failure.details(details).build()),
        None => ActivityError::application(failure.build()),
    }
}
