//! The routes of the API and the list of what they serve, built by the same calls so that
//! the list, which the OpenAPI test holds against `openapi.yaml`, cannot drift from the router.

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, on};

use crate::app::AppState;

/// One operation the service serves: an HTTP method on a path, as the router matches it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The method, `GET`, `POST` or `DELETE`.
    pub method: Method,
    /// The path, in the router's syntax (which is also OpenAPI's: parameters as `{name}`).
    pub path: &'static str,
}

/// A router together with the endpoints it serves; each route module builds one.
pub(super) struct Routes {
    router: Router<AppState>,
    endpoints: Vec<Endpoint>,
}

impl Routes {
    /// No routes yet.
    pub(super) fn new() -> Self {
        Self {
            router: Router::new(),
            endpoints: Vec::new(),
        }
    }

    /// Serves `GET path` with `handler` (axum answers `HEAD` with it too).
    pub(super) fn get<H, T>(self, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.on(Method::GET, path, handler)
    }

    /// Serves `POST path` with `handler`.
    pub(super) fn post<H, T>(self, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.on(Method::POST, path, handler)
    }

    /// Serves `DELETE path` with `handler`.
    pub(super) fn delete<H, T>(self, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.on(Method::DELETE, path, handler)
    }

    /// Both sets of routes; axum panics at start-up if they overlap.
    pub(super) fn merge(mut self, other: Self) -> Self {
        self.router = self.router.merge(other.router);
        self.endpoints.extend(other.endpoints);
        self
    }

    /// The router that serves these routes.
    pub(super) fn into_router(self) -> Router<AppState> {
        self.router
    }

    /// What these routes serve, in the order they were added.
    pub(super) fn into_endpoints(self) -> Vec<Endpoint> {
        self.endpoints
    }

    /// Registers the handler and records the endpoint from the same `method`.
    fn on<H, T>(mut self, method: Method, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone())
            .expect("get, post and delete are methods axum can route");
        self.router = self.router.route(path, on(filter, handler));
        self.endpoints.push(Endpoint { method, path });
        self
    }
}
