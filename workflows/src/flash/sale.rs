use std::time::{Duration, UNIX_EPOCH};

use crate::steps;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{ActivityOptions, WorkflowContext, WorkflowContextView, WorkflowResult};

use super::contract::*;

/// A sale's timeline: load it into Redis shortly before it starts (a durable timer), end it at
/// `endsAt`, then, once every claim has been paid or has expired, reconcile Redis with Postgres
/// and return the unsold units to normal stock.
#[workflow]
#[derive(Default)]
pub struct FlashSaleWorkflow {
    outcome: SaleOutcome,
}

/// Redis or Postgres steps: retried with backoff until they succeed; a sale that does not
/// exist is final.
fn store_step() -> ActivityOptions {
    steps::backoff_step(Duration::from_secs(30), Duration::from_millis(500), Duration::from_secs(30), &["sale_not_found"])
}

/// How often reconciliation looks again while claims are still open.
const RECONCILE_EVERY: Duration = Duration::from_secs(15);

fn now_ms(ctx: &WorkflowContext<FlashSaleWorkflow>) -> u64 {
    ctx.workflow_time().unwrap_or(UNIX_EPOCH).duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[workflow_methods]
impl FlashSaleWorkflow {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: SaleInput) -> WorkflowResult<SaleOutcome> {
        let sale = SaleRef { sale_id: input.sale_id.clone() };
        let prewarm_at = input.starts_at_ms.saturating_sub(PREWARM_LEAD_MS);
        let now = now_ms(ctx);
        if prewarm_at > now {
            ctx.timer(Duration::from_millis(prewarm_at - now)).await;
        }
        ctx.execute_activity(LoadSale, sale.clone(), store_step()).await?;

        let now = now_ms(ctx);
        if input.ends_at_ms > now {
            ctx.timer(Duration::from_millis(input.ends_at_ms - now)).await;
        }
        ctx.execute_activity(EndSale, sale.clone(), store_step()).await?;

        // claims won just before the end may still be paid for
        ctx.timer(Duration::from_millis(input.claim_ttl_ms.max(1))).await;
        loop {
            let outcome = ctx.execute_activity(ReconcileSale, sale.clone(), store_step()).await?;
            if outcome.reconciled {
                ctx.state_mut(|s| s.outcome = outcome.clone());
                return Ok(outcome);
            }
            ctx.timer(RECONCILE_EVERY).await;
        }
    }

    #[query(name = "outcome")]
    pub fn outcome(&self, _ctx: &WorkflowContextView) -> SaleOutcome {
        self.outcome.clone()
    }
}
