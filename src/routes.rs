//! The HTTP API, one module per resource; handlers are named `<verb>_<resource>`.

mod admin;
mod audit;
mod caller;
mod ecr;
mod endpoint;
mod health;
mod json_object;
mod meta;
mod metrics;
mod spec;
mod whoami;

use axum::Router;

use crate::app::AppState;
use endpoint::Routes;

pub(crate) use ecr::AUDIT_ENTRY_HEADER;
pub use endpoint::Endpoint;
pub(crate) use meta::RequestMeta;

/// Every route of the API; `GET /metrics` too when it has no listener of its own.
pub(crate) fn router(with_metrics: bool) -> Router<AppState> {
    let api = api();
    if with_metrics {
        api.merge(metrics::router()).into_router()
    } else {
        api.into_router()
    }
}

/// `GET /metrics` alone, for a listener of its own.
pub(crate) fn metrics_router() -> Router<AppState> {
    metrics::router().into_router()
}

/// Every endpoint the service serves, from the same registrations as [`router`] and
/// [`metrics_router`], so that a test can hold them against the documented ones.
pub fn endpoints() -> Vec<Endpoint> {
    api().merge(metrics::router()).into_endpoints()
}

/// The routes of every resource of the API.
fn api() -> Routes {
    Routes::new()
        .merge(ecr::router())
        .merge(whoami::router())
        .merge(audit::router())
        .merge(admin::router())
        .merge(health::router())
        .merge(spec::router())
}

/// A JSON response that no cache may keep: every API answer here is about one caller.
pub(crate) fn no_store_json(body: impl serde::Serialize) -> axum::response::Response {
    use axum::response::IntoResponse;
    no_store(axum::Json(body).into_response())
}

/// `response` marked so that no cache keeps it.
pub(crate) fn no_store(mut response: axum::response::Response) -> axum::response::Response {
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}
