use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::app::AppState;
use crate::error::{Problem, ProblemType};

pub(super) fn router() -> super::Routes {
    super::Routes::new()
        .get("/healthz", get_healthz)
        .get("/readyz", get_readyz)
}

/// Liveness: the process serves requests.
async fn get_healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: the audit database answers and every issuer's keys are loaded, so an issuing
/// request could succeed.
async fn get_readyz(State(state): State<AppState>) -> Response {
    let database = matches!(
        tokio::time::timeout(Duration::from_secs(2), state.audit.ping()).await,
        Ok(Ok(()))
    );
    let keys = state.verifier.keys_loaded();
    if database && keys {
        return Json(json!({"status": "ready", "checks": {"database": "ok", "keys": "ok"}}))
            .into_response();
    }
    let mut failing = Vec::new();
    if !database {
        failing.push("the audit database is unreachable");
    }
    if !keys {
        failing.push("signing keys of some issuer are not loaded");
    }
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ProblemType::NotReady,
        failing.join("; "),
    )
    .into_response()
}
