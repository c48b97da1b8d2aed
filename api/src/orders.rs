//! The API side of orders: sends lifecycle commands to `OrderWorkflow`s as workflow updates.

use sea_orm::DatabaseConnection;
use temporalio_client::{Client, WorkflowExecuteUpdateOptions, WorkflowHandle, errors::WorkflowUpdateError};
use uuid::Uuid;

use emporium_entities::store::orders;
use emporium_workflows::order::{
    OrderWorkflow,
    contract::{CommandOutcome, OrderRefusal, OrderStatus, ReturnRequest, Shipment, workflow_id},
};

use crate::{
    error::{ApiError, ApiResult, ErrorCode},
    state::TemporalGateway,
};

/// A lifecycle command, as the API names them.
#[derive(Debug, Clone)]
pub enum OrderCommand {
    Cancel,
    RequestReturn(ReturnRequest),
    Ship(Shipment),
    Deliver,
    ReceiveReturn,
}

#[derive(Clone)]
pub struct Orders {
    db: DatabaseConnection,
    temporal: TemporalGateway,
}

fn not_found(order_id: Uuid) -> ApiError {
    ApiError::new(ErrorCode::OrderNotFound, format!("order {order_id} does not exist"))
}

pub fn refusal(refusal: OrderRefusal) -> ApiError {
    let code = match refusal {
        OrderRefusal::OrderAlreadyShipped => ErrorCode::OrderAlreadyShipped,
        OrderRefusal::OrderAlreadyDelivered => ErrorCode::OrderAlreadyDelivered,
        OrderRefusal::OrderCancelled => ErrorCode::OrderCancelled,
        OrderRefusal::OrderNotShipped => ErrorCode::OrderNotShipped,
        OrderRefusal::OrderNotDelivered => ErrorCode::OrderNotDelivered,
        OrderRefusal::ReturnWindowClosed => ErrorCode::ReturnWindowClosed,
        OrderRefusal::ReturnInProgress => ErrorCode::ReturnInProgress,
        OrderRefusal::NoReturnRequested => ErrorCode::NoReturnRequested,
        OrderRefusal::ReturnQuantityExceeded => ErrorCode::ReturnQuantityExceeded,
        OrderRefusal::ProductNotInOrder => ErrorCode::ProductNotInOrder,
    };
    ApiError::new(code, refusal.message())
}

/// The refusal for a command to an order whose workflow has finished (window closed, or
/// cancelled and refunded); `None` when the command is a repeat of how it ended.
fn refusal_after_close(status: OrderStatus, command: &OrderCommand) -> Option<OrderRefusal> {
    match (status, command) {
        (OrderStatus::Cancelled, OrderCommand::Cancel) => None,
        (OrderStatus::Cancelled, _) => Some(OrderRefusal::OrderCancelled),
        (_, OrderCommand::Cancel | OrderCommand::Ship(_)) => Some(OrderRefusal::OrderAlreadyShipped),
        (_, OrderCommand::Deliver) => Some(OrderRefusal::OrderAlreadyDelivered),
        (_, OrderCommand::RequestReturn(_)) => Some(OrderRefusal::ReturnWindowClosed),
        (_, OrderCommand::ReceiveReturn) => Some(OrderRefusal::NoReturnRequested),
    }
}

/// One command as the workflow update it is.
async fn send(
    handle: &WorkflowHandle<Client, OrderWorkflow>,
    command: OrderCommand,
    options: WorkflowExecuteUpdateOptions,
) -> Result<CommandOutcome, WorkflowUpdateError> {
    match command {
        OrderCommand::Cancel => handle.execute_update(OrderWorkflow::cancel, (), options).await,
        OrderCommand::Ship(shipment) => handle.execute_update(OrderWorkflow::ship, shipment, options).await,
        OrderCommand::Deliver => handle.execute_update(OrderWorkflow::deliver, (), options).await,
        OrderCommand::RequestReturn(request) => handle.execute_update(OrderWorkflow::request_return, request, options).await,
        OrderCommand::ReceiveReturn => handle.execute_update(OrderWorkflow::receive_return, (), options).await,
    }
}

impl Orders {
    pub fn new(db: DatabaseConnection, temporal: TemporalGateway) -> Self {
        Self { db, temporal }
    }

    /// Sends `command` to the order's workflow and answers once its first step is recorded.
    /// With `owner`, the order must be theirs (404 otherwise, as if it did not exist).
    pub async fn command(&self, order_id: Uuid, owner: Option<Uuid>, command: OrderCommand) -> ApiResult<()> {
        let (user_id, mut status) = orders::status_of(&self.db, order_id).await?.ok_or_else(|| not_found(order_id))?;
        if owner.is_some_and(|owner| owner != user_id) {
            return Err(not_found(order_id));
        }
        let client = self.temporal.client().await.map_err(|e| ApiError::unavailable("the workflow service", e))?;
        let handle = client.get_workflow_handle::<OrderWorkflow>(workflow_id(&order_id.to_string()));
        // Cancel, ship and deliver happen once per order: a fixed update id makes a repeated
        // request the same update, answered alike. Returns may be several.
        let update_id = match &command {
            OrderCommand::Cancel => Some(format!("cancel:{order_id}")),
            OrderCommand::Ship(_) => Some(format!("ship:{order_id}")),
            OrderCommand::Deliver => Some(format!("deliver:{order_id}")),
            OrderCommand::RequestReturn(_) | OrderCommand::ReceiveReturn => None,
        };
        let options = match update_id {
            Some(id) => WorkflowExecuteUpdateOptions::builder().update_id(id).build(),
            None => WorkflowExecuteUpdateOptions::default(),
        };
        // The order row commits before the checkout starts the order's workflow, so a command
        // right after the order appears can find no workflow yet: while the order is PLACED
        // (its workflow cannot have ended), wait for it rather than answer from Postgres.
        let mut waits = [50u64, 100, 200, 400, 800, 1_600, 1_600].into_iter();
        let sent = loop {
            let sent = send(&handle, command.clone(), options.clone()).await;
            let placed = |status: &str| OrderStatus::parse(status) == Some(OrderStatus::Placed);
            if !matches!(sent, Err(WorkflowUpdateError::NotFound(_))) || !placed(&status) {
                break sent;
            }
            // the workflow may also have ended meanwhile (a cancel refunded): look again
            status = orders::status_of(&self.db, order_id).await?.ok_or_else(|| not_found(order_id))?.1;
            if !placed(&status) {
                break sent;
            }
            let Some(ms) = waits.next() else {
                return Err(ApiError::unavailable("the order's workflow", anyhow::anyhow!("order {order_id} has no workflow yet")));
            };
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        };
        match sent {
            Ok(CommandOutcome::Accepted { .. }) => Ok(()),
            Ok(CommandOutcome::Refused { refusal: r }) => Err(refusal(r)),
            Err(WorkflowUpdateError::Failed(failure)) => match OrderRefusal::parse(&failure.message) {
                Some(r) => Err(refusal(r)),
                None => Err(ApiError::internal(anyhow::anyhow!("order update failed: {}", failure.message))),
            },
            Err(WorkflowUpdateError::NotFound(_)) => {
                let status = OrderStatus::parse(&status)
                    .ok_or_else(|| ApiError::internal(anyhow::anyhow!("order {order_id} has an unknown status {status:?}")))?;
                match refusal_after_close(status, &command) {
                    None => Ok(()),
                    Some(r) => Err(refusal(r)),
                }
            }
            Err(err) => Err(ApiError::unavailable("the workflow service", err)),
        }
    }
}
