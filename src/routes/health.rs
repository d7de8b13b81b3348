//! `GET /healthz` (the process serves) and `GET /readyz` (the audit database answers, the writer
//! runs, the stored deny list is fresh enough, shutdown has not begun). Issuer key states are
//! reported but do not decide readiness.

use std::collections::BTreeMap;
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

/// An issuer whose keys are loaded.
const KEYS_OK: &str = "ok";
/// An issuer whose keys are not loaded (yet, or its key URL has failed since start).
const KEYS_NOT_LOADED: &str = "keys not loaded";

/// Readiness: the audit database answers and the audit writer runs, so that a request
/// could be recorded, and the stored deny list has been read recently enough to trust it
/// (from start until its first read, and while reads fail for longer than
/// `[admin] deny_max_staleness_secs`, nothing would be issued). Each issuer's key state is reported but does not decide readiness:
/// one identity provider's outage must not take every new pod out for all the others, and
/// a token of that issuer is refused with 401 all the same.
///
/// Once shutdown has begun it is not ready whatever else holds, so that load balancers stop
/// sending while the requests they already sent are still answered.
async fn get_readyz(State(state): State<AppState>) -> Response {
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ProblemType::NotReady,
            "shutting down",
        )
        .into_response();
    }
    let database = matches!(
        tokio::time::timeout(Duration::from_secs(2), state.audit.ping()).await,
        Ok(Ok(()))
    );
    let writer = state.audit.writer_running();
    let current = state.current();
    let issuers: BTreeMap<&str, &str> = current
        .verifier
        .key_states()
        .into_iter()
        .map(|(name, loaded)| (name, if loaded { KEYS_OK } else { KEYS_NOT_LOADED }))
        .collect();
    let deny_list = current.deny.stored_age();
    if database
        && writer
        && let Ok(age) = deny_list
    {
        return Json(json!({
            "status": "ready",
            "checks": {
                "database": "ok",
                "auditWriter": "ok",
                "denyList": "ok",
                "denyListAgeSeconds": (age.as_secs_f64() * 1000.0).round() / 1000.0,
                "issuers": issuers,
            }
        }))
        .into_response();
    }
    let mut failing = Vec::new();
    if !database {
        failing.push("the audit database is unreachable".to_owned());
    }
    if !writer {
        failing.push("the audit writer has stopped".to_owned());
    }
    if let Err(stale) = deny_list {
        failing.push(stale.to_string());
    }
    let unloaded: Vec<&str> = issuers
        .iter()
        .filter(|(_, state)| **state == KEYS_NOT_LOADED)
        .map(|(name, _)| *name)
        .collect();
    if !unloaded.is_empty() {
        failing.push(format!(
            "(also: {KEYS_NOT_LOADED} for issuer {})",
            unloaded.join(", ")
        ));
    }
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ProblemType::NotReady,
        failing.join("; "),
    )
    .into_response()
}
