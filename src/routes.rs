//! The HTTP API, one module per resource; handlers are named `<verb>_<resource>`.

mod audit;
mod ecr;
mod health;
mod json_object;
mod meta;
mod whoami;

use axum::Router;

use crate::app::AppState;

pub use meta::RequestMeta;

/// Every route of the service.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(ecr::router())
        .merge(whoami::router())
        .merge(audit::router())
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
