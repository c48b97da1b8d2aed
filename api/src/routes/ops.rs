use fred::interfaces::ClientLike;
use poem::web::Data;
use poem_openapi::{
    ApiResponse, Enum, Object, OpenApi,
    payload::{Json, PlainText},
};
use sea_orm::ConnectionTrait;

use super::ApiTags;
use crate::{error::ErrorCode, state::AppState};

pub struct OpsApi;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
enum DependencyStatus {
    Up,
    Down,
}

#[derive(Object)]
struct Health {
    status: String,
}

#[derive(Object)]
struct DependencyChecks {
    postgres: DependencyStatus,
    redis: DependencyStatus,
    temporal: DependencyStatus,
}

#[derive(Object)]
struct Ready {
    status: String,
    checks: DependencyChecks,
}

#[derive(Object)]
struct NotReady {
    /// Always `not_ready`.
    code: ErrorCode,
    /// Names what is down.
    message: String,
    /// The dependencies that did not answer.
    down: Vec<String>,
    checks: DependencyChecks,
}

#[derive(ApiResponse)]
enum HealthResponse {
    /// The process is up.
    #[oai(status = 200)]
    Ok(Json<Health>),
}

#[derive(ApiResponse)]
enum ReadyResponse {
    /// Postgres, Redis and Temporal all answer.
    #[oai(status = 200)]
    Ready(Json<Ready>),
    /// At least one dependency does not answer.
    #[oai(status = 503)]
    NotReady(Json<NotReady>),
}

#[derive(ApiResponse)]
enum MetricsResponse {
    /// Prometheus text exposition format.
    #[oai(status = 200, content_type = "text/plain; version=0.0.4")]
    Ok(PlainText<String>),
}

fn status(result: &anyhow::Result<()>, name: &str) -> DependencyStatus {
    match result {
        Ok(()) => DependencyStatus::Up,
        Err(err) => {
            tracing::warn!(dependency = name, error = ?err, "readiness check failed");
            DependencyStatus::Down
        }
    }
}

#[OpenApi(tag = "ApiTags::Operations")]
impl OpsApi {
    /// Liveness: the process is up.
    #[oai(path = "/healthz", method = "get")]
    async fn healthz(&self) -> HealthResponse {
        HealthResponse::Ok(Json(Health { status: "ok".to_owned() }))
    }

    /// Readiness: Postgres, Redis and Temporal are reachable.
    #[oai(path = "/readyz", method = "get")]
    async fn readyz(&self, state: Data<&AppState>) -> ReadyResponse {
        let postgres = async {
            state.db.execute_unprepared("SELECT 1").await?;
            anyhow::Ok(())
        };
        let redis = async {
            state.redis.ping::<String>(None).await?;
            anyhow::Ok(())
        };
        let (postgres, redis, temporal) = tokio::join!(postgres, redis, state.temporal.check());
        let checks = DependencyChecks {
            postgres: status(&postgres, "postgres"),
            redis: status(&redis, "redis"),
            temporal: status(&temporal, "temporal"),
        };
        let down: Vec<String> = [("postgres", checks.postgres), ("redis", checks.redis), ("temporal", checks.temporal)]
            .into_iter()
            .filter(|(_, s)| *s == DependencyStatus::Down)
            .map(|(name, _)| name.to_owned())
            .collect();
        if down.is_empty() {
            ReadyResponse::Ready(Json(Ready { status: "ready".to_owned(), checks }))
        } else {
            ReadyResponse::NotReady(Json(NotReady {
                code: ErrorCode::NotReady,
                message: format!("not ready: {} down", down.join(", ")),
                down,
                checks,
            }))
        }
    }

    /// Prometheus metrics.
    #[oai(path = "/metrics", method = "get")]
    async fn metrics(&self, state: Data<&AppState>) -> MetricsResponse {
        // Flash-sale units sold and claims expired happen in the worker; Postgres has them.
        match emporium_entities::store::flash_sales::recent_figures(&state.db).await {
            Ok(figures) => {
                // the waiting rooms are in Redis: one ZCARD each, sent together
                let queues = futures::future::join_all(
                    figures.iter().map(|(sale, _)| emporium_entities::flash_redis::queue_length(&state.redis, *sale)),
                )
                .await;
                for ((sale, f), queued) in figures.into_iter().zip(queues) {
                    state.metrics.flash_sale_figures(sale, f.paid, f.expired);
                    match queued {
                        Ok(queued) => state.metrics.flash_queue_length(sale, queued),
                        Err(err) => tracing::warn!(error = %err, sale_id = %sale, "waiting-room length unavailable for /metrics"),
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "flash-sale figures unavailable for /metrics"),
        }
        MetricsResponse::Ok(PlainText(state.metrics.render()))
    }
}
