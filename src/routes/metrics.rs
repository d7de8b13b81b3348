//! `GET /metrics`: the Prometheus text exposition, on whichever listener `[metrics]` names. The
//! series themselves live in `src/metrics`.

use axum::extract::State;
use axum::response::Response;

use crate::app::AppState;

/// Where the exposition is served, on whichever listener `[metrics]` names.
pub(super) const PATH: &str = "/metrics";

pub(super) fn router() -> super::Routes {
    super::Routes::new().get(PATH, get_metrics)
}

/// The Prometheus text exposition of this process's metrics.
async fn get_metrics(State(state): State<AppState>) -> Response {
    let deny_list_read_at = state.current().deny.stored_read_at();
    state
        .metrics
        .render(state.audit.queue_depth(), deny_list_read_at)
}
