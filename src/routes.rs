//! The HTTP API, one module per resource; handlers are named `<verb>_<resource>`.

mod admin;
mod audit;
mod ecr;
mod endpoint;
mod health;
mod json_object;
mod meta;
mod whoami;

use axum::Router;

use crate::app::AppState;
use endpoint::Routes;

pub(crate) use ecr::AUDIT_ENTRY_HEADER;
pub use endpoint::Endpoint;
pub(crate) use meta::RequestMeta;

/// Every route of the service.
pub(crate) fn router() -> Router<AppState> {
    all().into_router()
}

/// Every endpoint [`router`] serves, from the same registrations, so that a test can hold
/// them against the documented ones.
pub fn endpoints() -> Vec<Endpoint> {
    all().into_endpoints()
}

/// The routes of every resource.
fn all() -> Routes {
    Routes::new()
        .merge(ecr::router())
        .merge(whoami::router())
        .merge(audit::router())
        .merge(admin::router())
        .merge(health::router())
}

/// A JSON response that no cache may keep: every API answer here is about one caller.
pub(crate) fn no_store_json(body: impl serde::Serialize) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut response = axum::Json(body).into_response();
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}
