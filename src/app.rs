//! Wiring: shared state, the router with its middleware, and serving until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use aws_config::SdkConfig;
use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::audit::chain::ChainKey;
use crate::audit::{self, AuditLog, AuditWriter, Fingerprinters, WriterLimits};
use crate::auth::Verifier;
use crate::config::{Config, ServerConfig};
use crate::credentials::Aws;
use crate::error::{Problem, ProblemType, render_problems};
use crate::policy::{AuditAdmins, Rules};
use crate::request_id::{REQUEST_ID_HEADER, drop_unusable_request_id};
use crate::routes;

/// Cheap, cloneable handles shared by every request.
#[derive(Clone, FromRef)]
pub struct AppState {
    /// Listener limits and CORS.
    pub server: Arc<ServerConfig>,
    /// Verifies bearer JWTs.
    pub verifier: Arc<Verifier>,
    /// The ordered rules.
    pub rules: Arc<Rules>,
    /// Which rules' callers administer the audit log.
    pub audit_admins: Arc<AuditAdmins>,
    /// STS and ECR.
    pub aws: Aws,
    /// The audit table.
    pub audit: AuditLog,
    /// Keyed token fingerprints: the current key and the previous ones.
    pub fingerprinters: Arc<Fingerprinters>,
}

/// Builds the router with all middleware.
///
/// Outermost first: request id (kept when the caller sent a sane one), tracing, CORS, error
/// rendering, then the limits that produce those errors.
pub fn build_router(state: AppState) -> Router {
    let server = state.server.clone();
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    let middleware = ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION, header::COOKIE]))
        .layer(middleware::from_fn(drop_unusable_request_id))
        .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let path = request.extensions().get::<MatchedPath>().map_or("", MatchedPath::as_str);
                    let id = request.headers().get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
                    tracing::info_span!("request", request_id = %id, method = %request.method(), path = %path)
                })
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::new(request_id))
        .layer(cors(&server.cors_allowed_origins))
        .layer(middleware::from_fn(render_problems))
        .layer(middleware::from_fn_with_state(server.max_header_bytes, limit_header_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            Duration::from_secs(server.request_timeout_secs),
        ))
        .layer(CatchPanicLayer::new())
        .layer(DefaultBodyLimit::max(server.max_body_bytes));
    routes::router().layer(middleware).with_state(state)
}

fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    // Bearer tokens travel in a header, never in cookies, so credentials mode stays off.
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static(REQUEST_ID_HEADER),
        ])
        .expose_headers([
            HeaderName::from_static(REQUEST_ID_HEADER),
            header::RETRY_AFTER,
            header::WWW_AUTHENTICATE,
        ])
        .max_age(Duration::from_secs(600))
}

/// Refuses header sections larger than the limit with 431.
async fn limit_header_bytes(State(limit): State<usize>, request: Request, next: Next) -> Response {
    let size: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if size > limit {
        return Problem::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProblemType::HeadersTooLarge,
            format!("request headers exceed {limit} bytes"),
        )
        .into_response();
    }
    next.run(request).await
}

/// A built application: the listener is bound and background tasks run, until it is served.
pub struct Application {
    listener: TcpListener,
    router: Router,
    background: Vec<JoinHandle<()>>,
}

impl Application {
    /// Connects everything the service needs and binds its listener.
    pub async fn build(config: Config, sdk: SdkConfig) -> anyhow::Result<Self> {
        let pool = connect_pool(&config)?;
        if config.database.migrate_on_start {
            audit::migrate(&pool).await?;
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("ecr-token-broker/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the HTTP client for key sets")?;
        let verifier = Arc::new(Verifier::new(&config.issuers, &http)?);
        let background = verifier.spawn_key_refresh();
        let rules = Rules::compile(&config.rules).context("compiling rules")?;
        let aws = Aws::new(sdk, Duration::from_secs(config.aws.operation_timeout_secs))?;
        let (writer, writer_task) = AuditWriter::spawn(
            pool.clone(),
            ChainKey::new(&config.audit.chain_key),
            WriterLimits {
                queue_capacity: config.audit.queue_capacity,
                max_batch: config.audit.max_batch,
                // A request waits for its commit as long as for a pooled connection, plus
                // time for the batch ahead of it.
                wait: Duration::from_secs(config.database.acquire_timeout_secs + 5),
            },
        );
        let mut background = background;
        background.push(writer_task);
        let listener = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("binding {}", config.server.listen))?;
        let state = AppState {
            fingerprinters: Arc::new(Fingerprinters::new(
                &config.audit.fingerprint_key_id,
                &config.audit.fingerprint_key,
                &config.audit.previous_fingerprint_keys,
            )),
            server: Arc::new(config.server),
            verifier,
            rules: Arc::new(rules),
            audit_admins: Arc::new(AuditAdmins::new(&config.audit.admin_rules)),
            aws,
            audit: AuditLog::new(writer, pool),
        };
        Ok(Self {
            listener,
            router: build_router(state),
            background,
        })
    }

    /// The bound address (useful when the config asked for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let result = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await;
        for task in self.background {
            task.abort();
        }
        result
    }
}

/// A lazy pool: the service starts (and reports not ready) while the database is down, and
/// every request reconnects as needed.
pub fn connect_pool(config: &Config) -> anyhow::Result<sqlx::PgPool> {
    use secrecy::ExposeSecret;
    let options: PgConnectOptions = config
        .database
        .url
        .expose_secret()
        .parse()
        .context("parsing the database URL")?;
    Ok(PgPoolOptions::new()
        .max_connections(config.database.max_connections)
        .acquire_timeout(Duration::from_secs(config.database.acquire_timeout_secs))
        .connect_lazy_with(options.application_name("ecr-token-broker")))
}
