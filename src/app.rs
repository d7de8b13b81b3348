//! Wiring: shared state, the router with its middleware, and serving until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use arc_swap::ArcSwap;
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
use tower_http::LatencyUnit;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::audit::chain::ChainKey;
use crate::audit::{self, AppendBounds, AuditLog, AuditWriter, Fingerprinters, WriterLimits};
use crate::config::{Config, Origin, ServerConfig};
use crate::credentials::cache::CacheSettings;
use crate::credentials::{Aws, CredentialSource};
use crate::error::{Problem, ProblemType, render_problems};
use crate::issuance::Issuer;
use crate::kill_switch::{self, DenyStore, StoredEntry};
use crate::metrics::Metrics;
use crate::request_id::{CallerRequestId, REQUEST_ID_HEADER, take_caller_request_id};
use crate::routes;
use reload::Reloader;

mod connections;
mod reload;
mod snapshot;
mod tls;

pub(crate) use reload::Hangups;
pub(crate) use snapshot::{Current, Snapshot};

/// What every request shares, behind one `Arc`: a request clones one pointer, not each part.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl FromRef<AppState> for Arc<ServerConfig> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.server)
    }
}

/// The parts of [`AppState`].
pub(crate) struct Shared {
    /// Listener limits and CORS.
    pub server: Arc<ServerConfig>,
    /// What a reload replaces: verifier, rules, admins, rate limits, deny lists. Requests
    /// take it through [`Current`], once each.
    snapshot: ArcSwap<Snapshot>,
    /// The credential cache, and STS and ECR behind it.
    pub credentials: CredentialSource,
    /// The audit table.
    pub audit: AuditLog,
    /// Keyed token fingerprints: the current key and the previous ones.
    pub fingerprinters: Arc<Fingerprinters>,
    /// The stored deny list.
    pub deny_store: Arc<DenyStore>,
    /// Set once shutdown has begun: `/readyz` then says not ready, so load balancers drain.
    pub draining: Arc<AtomicBool>,
    /// This application's Prometheus metrics.
    pub metrics: Metrics,
}

impl Shared {
    /// Installs a reloaded config's snapshot with the stored deny list in force, compiled
    /// against the new config, and drops the cached credentials either deny list reaches;
    /// returns how many.
    pub(crate) fn install(&self, snapshot: Snapshot) -> usize {
        self.snapshot.rcu(|current| Snapshot {
            deny: snapshot.deny.clone().carry_stored(&current.deny),
            ..snapshot.clone()
        });
        self.current().deny.forget_reached(&self.credentials)
    }

    /// Installs the stored deny entries `rows`, and `read_at` when they are a read of the
    /// whole table. When they differ from those in force, they are compiled against the
    /// config and the cached credentials they reach are dropped: returns how many, or
    /// `None` when the entries did not change. The deny store calls it with what it reads.
    pub(crate) fn install_stored_deny(
        &self,
        rows: &[StoredEntry],
        read_at: Option<Instant>,
    ) -> Option<usize> {
        let mut changed = false;
        self.snapshot.rcu(|current| {
            let (deny, differ) = current.deny.with_stored(rows, read_at);
            changed = differ;
            Snapshot {
                deny,
                ..Snapshot::clone(current)
            }
        });
        changed.then(|| {
            self.current()
                .deny
                .forget_reached_by_stored(&self.credentials)
        })
    }

    /// The snapshot now; a request takes [`Current`] instead, so that all of it sees one.
    pub(crate) fn current(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// What an issuance uses, with the request's snapshot `current`.
    pub(crate) fn issuer(&self, current: &Snapshot) -> Issuer {
        Issuer {
            verifier: Arc::clone(&current.verifier),
            credentials: self.credentials.clone(),
            fingerprinters: Arc::clone(&self.fingerprinters),
            audit: self.audit.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// Wraps `routes` in all middleware.
///
/// Outermost first: request id (always ours; a caller's sane one is kept beside it), tracing,
/// metrics, CORS, error rendering, then the limits that produce those errors.
pub(crate) fn build_router(state: AppState, routes: Router<AppState>) -> Router {
    let server = state.server.clone();
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    let middleware = ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION, header::COOKIE]))
        .layer(middleware::from_fn(take_caller_request_id))
        .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let path = request.extensions().get::<MatchedPath>().map_or("", MatchedPath::as_str);
                    let id = request.headers().get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
                    let caller_id = request.extensions().get::<CallerRequestId>().map_or("", |c| c.0.as_str());
                    tracing::info_span!("request", request_id = %id, caller_request_id = %caller_id, method = %request.method(), path = %path)
                })
                .on_response(
                    // Whole milliseconds would log most answers as taking 0 ms.
                    DefaultOnResponse::new()
                        .level(Level::INFO)
                        .latency_unit(LatencyUnit::Micros),
                ),
        )
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::metrics::record_http,
        ))
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
    routes.layer(middleware).with_state(state)
}

fn cors(origins: &[Origin]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o.as_str()).ok())
        .collect();
    // Bearer tokens travel in a header, never in cookies, so credentials mode stays off.
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static(REQUEST_ID_HEADER),
        ])
        .expose_headers([
            HeaderName::from_static(REQUEST_ID_HEADER),
            HeaderName::from_static(routes::AUDIT_ENTRY_HEADER),
            header::RETRY_AFTER,
            header::WWW_AUTHENTICATE,
            HeaderName::from_static("ratelimit"),
            HeaderName::from_static("ratelimit-policy"),
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
    /// `[server.tls]`'s acceptor for `listener`; the metrics listener stays plain.
    tls: Option<connections::Tls>,
    router: Router,
    /// `[metrics] listen`'s listener and the router serving `GET /metrics` alone on it.
    metrics: Option<(TcpListener, Router)>,
    server: Arc<ServerConfig>,
    background: Vec<JoinHandle<()>>,
    /// Ends once every record is committed, after the router (and every handle on the
    /// writer with it) is gone.
    writer: JoinHandle<()>,
    /// How long shutting down waits for the writer.
    writer_wait: Duration,
    /// Ends once every committed line is shipped, after the writer.
    sink: Option<JoinHandle<()>>,
    draining: Arc<AtomicBool>,
    state: AppState,
    http: reqwest::Client,
    reloader: Option<Reloader>,
}

/// How long shutting down waits for the sink to write what is queued.
const SINK_FLUSH_WAIT: Duration = Duration::from_secs(5);

impl Application {
    /// Connects everything the service needs and binds its listener.
    pub async fn build(config: Config, sdk: SdkConfig) -> anyhow::Result<Self> {
        let pool = connect_pool(&config)?;
        let read_pool = connect_read_pool(
            &config,
            config.database.read_max_connections,
            READER_APPLICATION_NAME,
        )?;
        // The deny poll's own connection: callers' reads can keep the shared pool busy.
        let deny_poll_pool = connect_read_pool(&config, 1, DENY_POLL_APPLICATION_NAME)?;
        if config.database.migrate_on_start {
            audit::migrate(&pool).await?;
        }
        let http = crate::auth::key_client(None)?;
        let metrics = Metrics::new(routes::endpoints().into_iter().map(|e| e.path));
        let snapshot = Snapshot::build(&config, None, &http, &metrics)?;
        let aws = Aws::new(sdk, &config.aws, &metrics)?;
        let credentials = CredentialSource::new(
            aws,
            CacheSettings {
                max_entries: config.cache.max_entries,
                min_remaining: Duration::from_secs(config.cache.min_remaining_secs),
                refresh_fraction: config.cache.refresh_fraction,
                // Waiting for another request's fetch is bounded like the request itself.
                wait: Duration::from_secs(config.server.request_timeout_secs),
            },
            metrics.cache(),
        );
        let (shipper, sink) = audit::spawn_sink(&config.audit_sink)?.unzip();
        // A request waits for its commit as long as for a pooled connection, plus time for
        // the batch ahead of it.
        let writer_wait = Duration::from_secs(config.database.acquire_timeout_secs + 5);
        let (writer, writer_task) = AuditWriter::spawn_measured(
            pool.clone(),
            ChainKey::new(&config.audit.chain_key),
            WriterLimits {
                queue_capacity: config.audit.queue_capacity,
                refusal_queue_capacity: config.audit.refusal_queue_capacity,
                shed_report_interval: Duration::from_secs(config.audit.shed_report_interval_secs),
                max_batch: config.audit.max_batch,
                wait: writer_wait,
                bounds: AppendBounds::from(&config.audit_chain),
            },
            shipper,
            metrics.audit_writer(),
        );
        let mut background = vec![snapshot.rate_limits.spawn_sweeper()];
        background.push(credentials.spawn_sweeper());
        background.push(metrics.spawn_upkeep());
        background.push(audit::spawn_head_log(
            pool.clone(),
            ChainKey::new(&config.audit.chain_key),
            config.audit_chain.head_log_interval(),
        ));
        let listener = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("binding {}", config.server.listen))?;
        let metrics_listener = match config.metrics.listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding {addr} (metrics.listen)"))?,
            ),
            None => None,
        };
        let tls = match &config.server.tls {
            Some(settings) => {
                let (acceptor, reloader) = tls::acceptor(settings)?;
                background.push(reloader);
                Some(connections::Tls {
                    acceptor,
                    handshake_timeout: settings.handshake_timeout(),
                })
            }
            None => None,
        };
        let server = Arc::new(config.server);
        let draining = Arc::new(AtomicBool::new(false));
        let state = AppState(Arc::new(Shared {
            draining: Arc::clone(&draining),
            fingerprinters: Arc::new(Fingerprinters::new(
                config.audit.fingerprint_key_id.as_str(),
                &config.audit.fingerprint_key,
                &config.audit.previous_keys_by_id(),
            )),
            server: Arc::clone(&server),
            snapshot: ArcSwap::from_pointee(snapshot),
            credentials,
            deny_store: Arc::new(DenyStore::new(
                pool.clone(),
                deny_poll_pool,
                read_pool.clone(),
            )),
            audit: AuditLog::new(writer, pool, read_pool),
            metrics,
        }));
        // Read before serving when the database lets it, so that a replica is ready as soon
        // as it starts; until a read succeeds it is not ready and issues nothing.
        let install = {
            let state = state.clone();
            move |rows: &[StoredEntry], read_at| state.install_stored_deny(rows, read_at)
        };
        if let Err(error) = state.deny_store.refresh(&install).await {
            tracing::warn!(%error, "reading the stored deny list at start failed; not ready and issuing nothing until a read succeeds");
        }
        background.push(kill_switch::spawn_poller(
            Arc::clone(&state.deny_store),
            install,
            config.admin.deny_poll_interval(),
        ));
        let metrics = metrics_listener.map(|listener| {
            (
                listener,
                build_router(state.clone(), routes::metrics_router()),
            )
        });
        Ok(Self {
            listener,
            tls,
            router: build_router(state.clone(), routes::router(metrics.is_none())),
            metrics,
            server,
            background,
            writer: writer_task,
            writer_wait,
            sink,
            draining,
            state,
            http,
            reloader: None,
        })
    }

    /// Reloads the config from `path` on SIGHUP (`hangups`, installed before anything
    /// else so that the signal never ends the process) and, when `[reload]` asks, when the
    /// file's content changes. `applied` is the text the service was built from.
    pub(crate) fn reload_from(mut self, path: PathBuf, applied: String, hangups: Hangups) -> Self {
        self.reloader = Some(Reloader::new(
            self.state.clone(),
            self.http.clone(),
            path,
            applied,
            hangups,
        ));
        self
    }

    /// The bound address (useful when the config asked for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address `GET /metrics` is served on alone, when `[metrics] listen` is set.
    pub fn metrics_addr(&self) -> Option<std::io::Result<SocketAddr>> {
        self.metrics
            .as_ref()
            .map(|(listener, _)| listener.local_addr())
    }

    /// Serves until `shutdown` resolves, then shuts down in order: `/readyz` says not ready
    /// while requests are still served for `shutdown_drain_secs`, the listeners close,
    /// in-flight requests get `shutdown_grace_secs` to finish, every record they queued is
    /// committed and every committed line shipped. Connections are bounded as `[server]`
    /// says ([`connections`]), on the metrics listener too.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Self {
            listener,
            tls,
            router,
            metrics,
            server,
            background,
            writer,
            writer_wait,
            sink,
            draining,
            state,
            http: _,
            reloader,
        } = self;
        let mut background = background;
        if let Some(reloader) = reloader {
            background.push(tokio::spawn(reloader.run()));
        }
        // Only the router and the background tasks hold the state from here on, so that
        // the writer ends once they are gone.
        drop(state);
        let drain = Duration::from_secs(server.shutdown_drain_secs);
        let stop_accepting = async move {
            shutdown.await;
            draining.store(true, Ordering::SeqCst);
            tracing::info!(
                drain_secs = drain.as_secs(),
                "shutting down: not ready, still serving until the load balancers drain"
            );
            tokio::time::sleep(drain).await;
            tracing::info!("shutting down: no new connections, finishing requests in flight");
        };
        let stop_accepting = futures::FutureExt::shared(futures::FutureExt::boxed(stop_accepting));
        let grace = Duration::from_secs(server.shutdown_grace_secs);
        let api = connections::serve(
            listener,
            router,
            &server,
            tls,
            stop_accepting.clone(),
            grace,
        );
        match metrics {
            Some((listener, router)) => {
                let metrics =
                    connections::serve(listener, router, &server, None, stop_accepting, grace);
                futures::join!(api, metrics);
            }
            None => api.await,
        }
        for task in background {
            task.abort();
        }
        // The router is gone; once the last request cut off by the grace period (whose task
        // still holds the state) has its record committed, the writer ends.
        if tokio::time::timeout(writer_wait + grace, writer)
            .await
            .is_err()
        {
            tracing::warn!("shutting down: the audit writer did not finish in time");
        }
        if let Some(sink) = sink
            && tokio::time::timeout(SINK_FLUSH_WAIT, sink).await.is_err()
        {
            tracing::warn!("shutting down: the audit sink did not finish writing in time");
        }
        tracing::info!("shut down");
        Ok(())
    }
}

/// A lazy pool: the service starts (and reports not ready) while the database is down, and
/// every request reconnects as needed.
pub(crate) fn connect_pool(config: &Config) -> anyhow::Result<sqlx::PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(config.database.max_connections)
        .acquire_timeout(Duration::from_secs(config.database.acquire_timeout_secs))
        .connect_lazy_with(connect_options(config)?))
}

/// A pool of `max_connections` for reads, apart from the writer's so that however many and
/// however heavy the reads, the writer never waits for a connection because of them (audit
/// reads and the deny list's listing share one; the deny poll has one of its own). Its
/// sessions are read-only and the database cancels a statement that runs too long.
fn connect_read_pool(
    config: &Config,
    max_connections: u32,
    application_name: &str,
) -> anyhow::Result<sqlx::PgPool> {
    let timeout_ms = (config.database.read_statement_timeout_secs * 1000).to_string();
    let options = connect_options(config)?
        .application_name(application_name)
        .options([
            ("statement_timeout", timeout_ms.as_str()),
            ("default_transaction_read_only", "on"),
        ]);
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(config.database.acquire_timeout_secs))
        .connect_lazy_with(options))
}

/// How the read pool's sessions name themselves in `pg_stat_activity`.
pub const READER_APPLICATION_NAME: &str = "ecr-token-broker-reads";

/// How the deny poll's session names itself in `pg_stat_activity`.
const DENY_POLL_APPLICATION_NAME: &str = "ecr-token-broker-deny-poll";

fn connect_options(config: &Config) -> anyhow::Result<PgConnectOptions> {
    Ok(config
        .database
        .connect_options()?
        .application_name("ecr-token-broker"))
}
