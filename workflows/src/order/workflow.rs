use std::{
    collections::VecDeque,
    time::{Duration, UNIX_EPOCH},
};

use serde_json::json;
use temporalio_common::RetryPolicy;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{ActivityOptions, LocalActivityOptions, WorkflowContext, WorkflowContextView, WorkflowResult, workflows::join};

use super::contract::*;
use crate::{
    checkout::contract::{RefundInput, RefundPayment},
    steps,
};

type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// A command accepted from the API, applied by the run loop in the order of acceptance.
#[derive(Debug, Clone)]
enum Command {
    Ship(Shipment),
    Deliver,
    Cancel,
    RequestReturn(ReturnRequest),
    ReceiveReturn(ReturnRequest),
}

/// One order's lifecycle: PLACED → SHIPPED → DELIVERED, CANCELLED before shipping,
/// RETURN_REQUESTED → RETURNED after delivery; refunds retried until they succeed, with
/// REFUND_PENDING showing meanwhile. Notifications are delivered beside the lifecycle, so a
/// failing webhook never holds up the order.
#[workflow]
#[derive(Default)]
pub struct OrderWorkflow {
    view: OrderView,
    payment_id: String,
    return_window_secs: u64,
    cancelled: bool,
    /// Accepted commands not yet applied, with their sequence numbers.
    queue: VecDeque<(u32, Command)>,
    accepted: u32,
    /// Sequence number of the last command whose first transition is in Postgres.
    applied: u32,
    cancel_seq: u32,
    /// Tax refunded with returns so far (the last return refunds the rest, so rounding never
    /// loses a cent).
    tax_refunded: i64,
    /// Notifications waiting for delivery, oldest first.
    outbox: VecDeque<String>,
    lifecycle_over: bool,
}

fn database_step() -> LocalActivityOptions {
    steps::database_step(&[])
}

/// REFUND_PENDING shows while it retries; a payment that does not exist is final.
fn refund_step() -> ActivityOptions {
    steps::refund_step(&["payment_not_found", "invalid_input"])
}

/// Webhook delivery: a bounded number of attempts with backoff; the activity marks the
/// notification FAILED on the last one.
fn delivery_step() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(15))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_secs(1))
                .backoff_coefficient(2.0)
                .maximum_interval(Duration::from_secs(60))
                .maximum_attempts(WEBHOOK_MAX_ATTEMPTS)
                .build(),
        )
        .build()
}

fn now_ms(ctx: &WorkflowContext<OrderWorkflow>) -> u64 {
    ctx.workflow_time().unwrap_or(UNIX_EPOCH).duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl OrderWorkflow {
    /// Whether `command` is legal now; `Ok(false)` for a repeated cancel (nothing to do).
    fn check(&self, command: &Command) -> Result<bool, OrderRefusal> {
        use OrderStatus::*;
        let status = self.view.status;
        if self.cancelled {
            return match command {
                Command::Cancel => Ok(false),
                _ => Err(OrderRefusal::OrderCancelled),
            };
        }
        match command {
            Command::Cancel => match status {
                Placed => Ok(true),
                _ => Err(OrderRefusal::OrderAlreadyShipped),
            },
            Command::Ship(_) => match status {
                Placed => Ok(true),
                Shipped => Err(OrderRefusal::OrderAlreadyShipped),
                _ => Err(OrderRefusal::OrderAlreadyDelivered),
            },
            Command::Deliver => match status {
                Placed => Err(OrderRefusal::OrderNotShipped),
                Shipped => Ok(true),
                _ => Err(OrderRefusal::OrderAlreadyDelivered),
            },
            Command::RequestReturn(request) => match status {
                Placed | Shipped => Err(OrderRefusal::OrderNotDelivered),
                ReturnRequested | RefundPending => Err(OrderRefusal::ReturnInProgress),
                _ if !self.view.return_window_open => Err(OrderRefusal::ReturnWindowClosed),
                _ => self.check_return_items(&request.items).map(|()| true),
            },
            Command::ReceiveReturn(_) => match status {
                ReturnRequested => Ok(true),
                _ => Err(OrderRefusal::NoReturnRequested),
            },
        }
    }

    fn check_return_items(&self, items: &[ReturnItem]) -> Result<(), OrderRefusal> {
        for item in items {
            let Some(line) = self.view.lines.iter().find(|l| l.product_id == item.product_id) else {
                return Err(OrderRefusal::ProductNotInOrder);
            };
            let asked: i32 = items.iter().filter(|i| i.product_id == item.product_id).map(|i| i.quantity).sum();
            if item.quantity <= 0 || asked > line.quantity - line.returned {
                return Err(OrderRefusal::ReturnQuantityExceeded);
            }
        }
        Ok(())
    }

    /// Accepts a legal command: the in-memory status moves at once, so the next command is
    /// judged against it. Returns the sequence number to wait for.
    fn accept(&mut self, command: Command) -> Result<u32, OrderRefusal> {
        if !self.check(&command)? {
            return Ok(self.cancel_seq); // a repeated cancel waits for the first
        }
        let command = match command {
            Command::Ship(shipment) => {
                self.view.status = OrderStatus::Shipped;
                Command::Ship(shipment)
            }
            Command::Deliver => {
                self.view.status = OrderStatus::Delivered;
                // open from the moment it is delivered; the timer starts once recorded
                self.view.return_window_open = true;
                Command::Deliver
            }
            Command::Cancel => {
                self.cancelled = true;
                self.view.status = OrderStatus::RefundPending;
                Command::Cancel
            }
            Command::RequestReturn(request) => {
                self.view.status = OrderStatus::ReturnRequested;
                self.view.open_return = Some(request.clone());
                Command::RequestReturn(request)
            }
            Command::ReceiveReturn(_) => {
                self.view.status = OrderStatus::RefundPending;
                Command::ReceiveReturn(self.view.open_return.take().unwrap_or(ReturnRequest { items: Vec::new(), reason: String::new() }))
            }
        };
        self.accepted += 1;
        if matches!(command, Command::Cancel) {
            self.cancel_seq = self.accepted;
        }
        self.queue.push_back((self.accepted, command));
        Ok(self.accepted)
    }

    /// The lifecycle has nothing left to wait for: cancelled and refunded, or the return window
    /// closed with no return open.
    fn settled(&self) -> bool {
        self.queue.is_empty()
            && match self.view.status {
                OrderStatus::Cancelled => true,
                OrderStatus::Delivered | OrderStatus::Returned => !self.view.return_window_open,
                _ => false,
            }
    }

    /// Amount refunded for returned `items`: their price plus their share of the tax; the
    /// return that completes the order also takes the tax that rounding left behind.
    fn return_refund(&self, items: &[ReturnItem]) -> (i64, i64) {
        let subtotal = self.view.totals.subtotal_minor;
        let items_subtotal: i64 = items
            .iter()
            .filter_map(|i| {
                self.view.lines.iter().find(|l| l.product_id == i.product_id).map(|l| l.unit_price_minor * i64::from(i.quantity))
            })
            .sum();
        let everything_back = self.view.lines.iter().all(|l| {
            let now: i32 = items.iter().filter(|i| i.product_id == l.product_id).map(|i| i.quantity).sum();
            l.returned + now >= l.quantity
        });
        let tax = if everything_back {
            self.view.totals.tax_minor - self.tax_refunded
        } else if subtotal > 0 {
            self.view.totals.tax_minor * items_subtotal / subtotal
        } else {
            0
        };
        (items_subtotal + tax, tax)
    }
}

async fn record(ctx: &WorkflowContext<OrderWorkflow>, input: RecordTransitionInput) -> WorkflowResult<()> {
    let status = input.status;
    let notification = input.notification.as_ref().map(|n| n.dedupe_key.clone());
    // Retried until the database answers; a failure here is not a business outcome.
    ctx.execute_local_activity(RecordTransition, input, database_step()).await?;
    ctx.upsert_search_attributes([ORDER_STATUS.value_set(status.as_str().to_owned())]);
    ctx.state_mut(|s| {
        if let Some(key) = notification {
            s.outbox.push_back(key);
        }
    });
    Ok(())
}

fn transition(view: &OrderView, dedupe: &str, event: &str, status: OrderStatus, data: serde_json::Value) -> RecordTransitionInput {
    RecordTransitionInput {
        order_id: view.order_id.clone(),
        user_id: view.user_id.clone(),
        dedupe_key: format!("order:{}:{dedupe}", view.order_id),
        event: event.to_owned(),
        data,
        status,
        shipment: None,
        restock: Vec::new(),
        count_as_returned: false,
        notification: None,
    }
}

fn notify(view: &OrderView, dedupe: &str, kind: &str, extra: serde_json::Value) -> Option<NotificationSpec> {
    Some(NotificationSpec {
        kind: kind.to_owned(),
        dedupe_key: format!("order:{}:notify:{dedupe}", view.order_id),
        payload: json!({ "orderId": view.order_id, "userId": view.user_id, "details": extra }),
    })
}

/// Refunds `amount` under `key`, retried until the gateway pays it out.
async fn refund(ctx: &WorkflowContext<OrderWorkflow>, key: String, amount: i64, reason: &str) -> WorkflowResult<()> {
    if amount <= 0 {
        return Ok(());
    }
    let input = RefundInput {
        payment_id: ctx.state(|s| s.payment_id.clone()),
        idempotency_key: key,
        reason: reason.to_owned(),
        amount_minor: Some(amount),
    };
    // Fails only on a non-retryable error (no such payment): the workflow then fails visibly,
    // with the order left REFUND_PENDING for an operator.
    ctx.execute_activity(RefundPayment, input, refund_step()).await?;
    ctx.state_mut(|s| s.view.refunded_minor += amount);
    Ok(())
}

async fn apply(ctx: &WorkflowContext<OrderWorkflow>, seq: u32, command: Command) -> WorkflowResult<()> {
    let view = ctx.state(|s| s.view.clone());
    let mark_applied = |ctx: &WorkflowContext<OrderWorkflow>| ctx.state_mut(|s| s.applied = seq);
    match command {
        Command::Ship(shipment) => {
            let data = json!({ "carrier": shipment.carrier, "trackingNumber": shipment.tracking_number });
            let mut t = transition(&view, "shipped", "SHIPPED", OrderStatus::Shipped, data.clone());
            t.shipment = Some(shipment);
            t.notification = notify(&view, "shipped", "ORDER_SHIPPED", data);
            record(ctx, t).await?;
            mark_applied(ctx);
        }
        Command::Deliver => {
            let mut t = transition(&view, "delivered", "DELIVERED", OrderStatus::Delivered, json!({}));
            t.notification = notify(&view, "delivered", "ORDER_DELIVERED", json!({}));
            record(ctx, t).await?;
            let deadline = now_ms(ctx) + ctx.state(|s| s.return_window_secs.max(1)) * 1000;
            ctx.state_mut(|s| s.view.return_deadline_ms = deadline);
            mark_applied(ctx);
        }
        Command::Cancel => {
            let restock: Vec<ReturnItem> = view
                .lines
                .iter()
                .filter(|l| l.quantity > l.returned)
                .map(|l| ReturnItem { product_id: l.product_id, quantity: l.quantity - l.returned })
                .collect();
            let data = json!({ "restocked": restock });
            let mut t = transition(&view, "cancelled", "CANCELLED", OrderStatus::RefundPending, data);
            t.restock = restock;
            t.notification = notify(&view, "cancelled", "ORDER_CANCELLED", json!({}));
            record(ctx, t).await?;
            mark_applied(ctx);
            let amount = view.totals.total_minor - view.refunded_minor;
            refund(ctx, cancel_refund_key(&view.order_id), amount, "order_cancelled").await?;
            let view = ctx.state(|s| s.view.clone());
            let data = json!({ "amount": amount, "currency": view.totals.currency, "reason": "order_cancelled" });
            let mut t = transition(&view, "refund:cancel", "REFUNDED", OrderStatus::Cancelled, data.clone());
            t.notification = notify(&view, "refund:cancel", "ORDER_REFUNDED", data);
            record(ctx, t).await?;
            ctx.state_mut(|s| s.view.status = OrderStatus::Cancelled);
        }
        Command::RequestReturn(request) => {
            let n = view.returns_received + 1;
            let data = json!({ "items": request.items, "reason": request.reason });
            let mut t = transition(&view, &format!("return-{n}:requested"), "RETURN_REQUESTED", OrderStatus::ReturnRequested, data.clone());
            t.notification = notify(&view, &format!("return-{n}:requested"), "ORDER_RETURN_REQUESTED", data);
            record(ctx, t).await?;
            mark_applied(ctx);
        }
        Command::ReceiveReturn(request) => {
            let n = view.returns_received + 1;
            let (amount, tax) = ctx.state(|s| s.return_refund(&request.items));
            let data = json!({ "items": request.items });
            let mut t = transition(&view, &format!("return-{n}:received"), "RETURNED", OrderStatus::RefundPending, data);
            t.restock = request.items.clone();
            t.count_as_returned = true;
            t.notification = notify(&view, &format!("return-{n}:received"), "ORDER_RETURN_RECEIVED", json!({ "items": request.items }));
            record(ctx, t).await?;
            ctx.state_mut(|s| {
                for item in &request.items {
                    if let Some(line) = s.view.lines.iter_mut().find(|l| l.product_id == item.product_id) {
                        line.returned += item.quantity;
                    }
                }
                s.view.returns_received = n;
                s.tax_refunded += tax;
            });
            mark_applied(ctx);
            refund(ctx, return_refund_key(&view.order_id, n), amount, "order_returned").await?;
            let view = ctx.state(|s| s.view.clone());
            let data = json!({ "amount": amount, "currency": view.totals.currency, "reason": "order_returned", "return": n });
            let dedupe = format!("refund:return-{n}");
            let mut t = transition(&view, &dedupe, "REFUNDED", OrderStatus::Returned, data.clone());
            t.notification = notify(&view, &dedupe, "ORDER_REFUNDED", data);
            record(ctx, t).await?;
            ctx.state_mut(|s| s.view.status = OrderStatus::Returned);
        }
    }
    Ok(())
}

/// Applies accepted commands one at a time until the order has nothing left to wait for.
async fn lifecycle(ctx: WorkflowContext<OrderWorkflow>) -> WorkflowResult<()> {
    loop {
        ctx.wait_condition(|s| !s.queue.is_empty() || s.settled()).await?;
        let Some((seq, command)) = ctx.state_mut(|s| s.queue.pop_front()) else {
            break;
        };
        apply(&ctx, seq, command).await?;
    }
    ctx.state_mut(|s| s.lifecycle_over = true);
    Ok(())
}

/// Closes the return window when its time is up (from delivery).
async fn return_window(ctx: WorkflowContext<OrderWorkflow>) -> WorkflowResult<()> {
    // recorded delivery is what sets the deadline
    ctx.wait_condition(|s| s.view.return_deadline_ms > 0 || s.cancelled).await?;
    if ctx.state(|s| s.view.return_deadline_ms > 0) {
        let window = ctx.state(|s| s.return_window_secs);
        ctx.timer(Duration::from_secs(window.max(1))).await;
        ctx.state_mut(|s| s.view.return_window_open = false);
    }
    Ok(())
}

/// Delivers queued notifications in order until the lifecycle is over. A delivery that gives
/// up is marked FAILED by the activity and the next one goes on.
async fn deliveries(ctx: WorkflowContext<OrderWorkflow>) -> WorkflowResult<()> {
    loop {
        ctx.wait_condition(|s| !s.outbox.is_empty() || s.lifecycle_over).await?;
        let Some(dedupe_key) = ctx.state_mut(|s| s.outbox.pop_front()) else {
            return Ok(());
        };
        let _ = ctx.execute_activity(DeliverNotification, DeliverNotificationInput { dedupe_key }, delivery_step()).await;
    }
}

#[workflow_methods]
impl OrderWorkflow {
    /// The order as placed. State is set here rather than in `run` because an update (a ship
    /// sent the moment the order appears) can arrive with the first workflow task, and its
    /// handler runs before `run` does: state set in `run` would overwrite what it accepted.
    #[init]
    pub fn new(_ctx: &WorkflowContextView, input: OrderInput) -> Self {
        let view = OrderView {
            order_id: input.order_id.clone(),
            user_id: input.user_id.clone(),
            status: OrderStatus::Placed,
            lines: input
                .lines
                .iter()
                .map(|l| LineState { product_id: l.product_id, quantity: l.quantity, unit_price_minor: l.unit_price_minor, returned: 0 })
                .collect(),
            totals: input.totals.clone(),
            ..OrderView::default()
        };
        Self {
            view,
            payment_id: input.payment_id,
            return_window_secs: input.return_window_secs,
            // queued by the checkout in the order's own transaction
            outbox: VecDeque::from([format!("order:{}:notify:placed", input.order_id)]),
            ..Self::default()
        }
    }

    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<OrderView> {
        let (a, b, c) = join!(lifecycle(ctx.clone()), return_window(ctx.clone()), deliveries(ctx.clone()));
        a?;
        b?;
        c?;
        let handlers = ctx.clone();
        ctx.wait_condition(move |_| handlers.all_handlers_finished()).await?;
        Ok(ctx.state(|s| s.view.clone()))
    }

    #[query(name = "status")]
    pub fn status(&self, _ctx: &WorkflowContextView) -> OrderView {
        self.view.clone()
    }

    #[update_validator(cancel)]
    fn validate_cancel(&self, _ctx: &WorkflowContextView, _input: &()) -> Result<(), HandlerError> {
        refuse(self.check(&Command::Cancel))
    }

    /// The customer cancels before shipping: restock at once, refund in full.
    #[update(name = "cancel")]
    pub async fn cancel(ctx: &mut WorkflowContext<Self>, _input: ()) -> Result<CommandOutcome, HandlerError> {
        submit(ctx, Command::Cancel).await
    }

    #[update_validator(ship)]
    fn validate_ship(&self, _ctx: &WorkflowContextView, input: &Shipment) -> Result<(), HandlerError> {
        refuse(self.check(&Command::Ship(input.clone())))
    }

    #[update(name = "ship")]
    pub async fn ship(ctx: &mut WorkflowContext<Self>, input: Shipment) -> Result<CommandOutcome, HandlerError> {
        submit(ctx, Command::Ship(input)).await
    }

    #[update_validator(deliver)]
    fn validate_deliver(&self, _ctx: &WorkflowContextView, _input: &()) -> Result<(), HandlerError> {
        refuse(self.check(&Command::Deliver))
    }

    #[update(name = "deliver")]
    pub async fn deliver(ctx: &mut WorkflowContext<Self>, _input: ()) -> Result<CommandOutcome, HandlerError> {
        submit(ctx, Command::Deliver).await
    }

    #[update_validator(request_return)]
    fn validate_request_return(&self, _ctx: &WorkflowContextView, input: &ReturnRequest) -> Result<(), HandlerError> {
        refuse(self.check(&Command::RequestReturn(input.clone())))
    }

    /// The customer asks to return some units; they are refunded once received.
    #[update(name = "request_return")]
    pub async fn request_return(ctx: &mut WorkflowContext<Self>, input: ReturnRequest) -> Result<CommandOutcome, HandlerError> {
        submit(ctx, Command::RequestReturn(input)).await
    }

    #[update_validator(receive_return)]
    fn validate_receive_return(&self, _ctx: &WorkflowContextView, _input: &()) -> Result<(), HandlerError> {
        refuse(self.check(&Command::ReceiveReturn(ReturnRequest { items: Vec::new(), reason: String::new() })))
    }

    /// The warehouse has the returned units: restock them and refund.
    #[update(name = "receive_return")]
    pub async fn receive_return(ctx: &mut WorkflowContext<Self>, _input: ()) -> Result<CommandOutcome, HandlerError> {
        submit(ctx, Command::ReceiveReturn(ReturnRequest { items: Vec::new(), reason: String::new() })).await
    }
}

/// A validator's answer: the refusal's code is the update failure's message.
fn refuse(check: Result<bool, OrderRefusal>) -> Result<(), HandlerError> {
    check.map(|_| ()).map_err(|refusal| refusal.as_str().into())
}

/// Accepts the command (checked again: the validator saw the state before earlier updates of
/// the same activation ran) and answers once its first transition is in Postgres.
async fn submit(ctx: &mut WorkflowContext<OrderWorkflow>, command: Command) -> Result<CommandOutcome, HandlerError> {
    let seq = match ctx.state_mut(|s| s.accept(command)) {
        Ok(seq) => seq,
        Err(refusal) => return Ok(CommandOutcome::Refused { refusal }),
    };
    ctx.wait_condition(move |s| s.applied >= seq).await?;
    Ok(CommandOutcome::Accepted { order: ctx.state(|s| s.view.clone()) })
}
