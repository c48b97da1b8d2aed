//! Side effects and their compensations, as Temporal activities. Each struct holds what its
//! activities need (the pool, gateways) and implements the contracts declared in
//! `emporium-workflows`; a test checks the names line up.

pub mod checkout;
pub mod flash;
pub mod inventory;
pub mod notification;
pub mod order;
pub mod payment;
pub mod system;

pub use checkout::CheckoutActivities;
pub use flash::FlashSaleActivities;
pub use inventory::InventoryActivities;
pub use notification::{NotificationActivities, Webhook};
pub use order::OrderActivities;
pub use payment::{PaymentActivities, PaymentGateway, SandboxGateway, StripeGateway};
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

#[cfg(test)]
mod tests {
    use temporalio_common::ActivityDefinition;

    use emporium_workflows::{
        checkout::contract as checkout, flash::contract as flash, order::contract as order, probe::contract as probe,
        sweeper::contract as sweeper,
    };

    use super::*;

    /// Workflows call activities by name; a renamed method would fail only at run time.
    #[test]
    fn implementation_names_match_the_contracts() {
        let pairs: [(&str, &str); 16] = [
            (SystemActivities::database_version.name(), probe::DatabaseVersion.name()),
            (CheckoutActivities::reserve_checkout.name(), checkout::ReserveCheckout.name()),
            (CheckoutActivities::release_stock.name(), checkout::ReleaseStock.name()),
            (CheckoutActivities::create_order.name(), checkout::CreateOrder.name()),
            (OrderActivities::record_transition.name(), order::RecordTransition.name()),
            (FlashSaleActivities::load_sale.name(), flash::LoadSale.name()),
            (FlashSaleActivities::end_sale.name(), flash::EndSale.name()),
            (FlashSaleActivities::reconcile_sale.name(), flash::ReconcileSale.name()),
            (FlashSaleActivities::begin_claim_payment.name(), flash::BeginClaimPayment.name()),
            (FlashSaleActivities::release_claim.name(), flash::ReleaseClaim.name()),
            (FlashSaleActivities::create_claim_order.name(), flash::CreateClaimOrder.name()),
            (NotificationActivities::deliver_notification.name(), order::DeliverNotification.name()),
            (PaymentActivities::charge_payment.name(), checkout::ChargePayment.name()),
            (PaymentActivities::refund_payment.name(), checkout::RefundPayment.name()),
            (InventoryActivities::release_expired_reservations.name(), sweeper::ReleaseExpiredReservations.name()),
            (SystemActivities::database_version.name(), "SystemActivities::database_version"),
        ];
        for (implemented, declared) in pairs {
            assert_eq!(implemented, declared);
        }
    }
}
