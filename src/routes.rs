//! The HTTP API, one module per resource; handlers are named `<verb>_<resource>`.

mod ecr;
mod health;
mod meta;

use axum::Router;

use crate::app::AppState;

pub use meta::RequestMeta;

/// Every route of the service.
pub fn router() -> Router<AppState> {
    Router::new().merge(ecr::router()).merge(health::router())
}
