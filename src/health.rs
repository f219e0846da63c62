//! `/health/live` (the process answers) and `/health/ready` (the database answers).

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::state::AppState;

pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// How long readiness waits for the database: an unreachable one is "not ready" at once.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(1500);

pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let answered = tokio::time::timeout(READY_TIMEOUT, state.store.ping())
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {READY_TIMEOUT:?}")));
    match answered {
        Ok(()) => HttpResponse::Ok().json(json!({ "status": "ok", "database": "ok" })),
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "readiness check failed");
            HttpResponse::ServiceUnavailable()
                .insert_header((actix_web::http::header::RETRY_AFTER, "1"))
                .json(json!({ "status": "unavailable", "database": "unreachable" }))
        }
    }
}
