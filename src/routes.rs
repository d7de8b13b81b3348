//! The HTTP API, one module per resource; handlers are named `<verb>_<resource>`.

mod audit;
mod ecr;
mod health;
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
