//! The test harness: the real service on a random port, against real Postgres (a fresh
//! database per test), a real moto server and a real JWKS issuer, all on 127.0.0.1.

pub mod connect_proxy;
pub mod issuer;
pub mod load;
pub mod moto;
pub mod postgres;
pub mod proxy;
pub mod tls;

use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use ecr_token_broker::Application;
use ecr_token_broker::Config;
use ecr_token_broker::MIGRATOR;
use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

pub use issuer::{SigningKey, TestIssuer};
pub use load::Load;
pub use moto::Moto;
pub use proxy::{Fault, FaultProxy, Operation};

pub const FINGERPRINT_KEY: &str = "test-fingerprint-key-0123456789abcdef0123456789";
pub const CHAIN_KEY: &str = "test-chain-key-0123456789abcdef0123456789abcdef";
pub const ROLE_ARN: &str = "arn:aws:iam::111122223333:role/ecr-pull";
pub const ROLE_ACCOUNT: &str = "111122223333";
pub const SECOND_ACCOUNT: &str = "444455556666";
pub const PORTAL_ORIGIN: &str = "https://portal.example.com";

/// The rule every default test app has: acme's main branch may pull from two accounts in
/// two regions for up to 30 minutes.
pub const DEFAULT_RULES: &str = r#"
[[rules]]
name = "acme-main"
issuer = "test"
claims = { repository_owner = "acme", ref = ["refs/heads/main", "refs/tags/v*"] }
role_arn = "arn:aws:iam::111122223333:role/ecr-pull"
regions = ["us-east-1", "eu-west-1"]
registry_ids = ["111122223333", "444455556666"]
session_duration_secs = 1800
"#;

/// An issuer named `down` whose key URL never answers (port 1 on loopback): give it to
/// `extra_issuers` with `keys_stay_unloaded("down")`.
pub const UNREACHABLE_ISSUER: &str = r#"
[[issuers]]
name = "down"
issuer = "https://down.example.com"
jwks_uri = "http://127.0.0.1:1/jwks"
audiences = ["ecr-token-broker"]
algorithms = ["RS256"]
"#;

pub fn admin_database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Every audit row of the database at `database_url`, oldest first, as JSON objects.
pub async fn audit_rows_in(database_url: &str) -> Vec<Value> {
    let db = PgPoolOptions::new()
        .max_connections(1)
        .connect(database_url)
        .await
        .expect("connect test database");
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT row_to_json(a)::text FROM audit_events a ORDER BY id")
            .fetch_all(&db)
            .await
            .expect("read audit rows");
    db.close().await;
    rows.iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect()
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Creates an empty database (no schema) for one test and returns its URL.
pub async fn empty_database() -> String {
    empty_database_on(&admin_database_url()).await
}

/// Creates an empty database on the server at `admin_url`.
pub async fn empty_database_on(admin_url: &str) -> String {
    let admin_url = admin_url.to_owned();
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin_url)
        .await
        .unwrap_or_else(|e| {
            panic!("connecting to {admin_url} ({e}); run scripts/test.sh, which starts Postgres")
        });
    let name = format!("ecrtb_test_{}", uuid::Uuid::new_v4().simple());
    // The name is ours (a UUID), not input.
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .expect("create database");
    admin.close().await;
    let mut url = reqwest::Url::parse(&admin_url).expect("DATABASE_URL is a URL");
    url.set_path(&name);
    url.to_string()
}

/// Creates a migrated database on the server at `admin_url` and returns its URL.
async fn fresh_database_on(admin_url: &str) -> String {
    let url = empty_database_on(admin_url).await;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("connect test database");
    MIGRATOR.run(&pool).await.expect("migrations apply");
    pool.close().await;
    url
}

/// Options for one test app.
pub struct TestAppBuilder {
    rules: String,
    issuer_keys: String,
    extra_issuers: String,
    moto: Option<Moto>,
    faults: Vec<Fault>,
    cache: String,
    database_url: Option<String>,
    database_server: Option<String>,
    aws_credentials: (String, String),
    operation_timeout_secs: u64,
    env: Vec<(String, String)>,
    admin_rules: Vec<String>,
    fingerprint_key: (String, String),
    previous_fingerprint_keys: Vec<(String, String)>,
    limits: String,
    extra_config: String,
    unloaded_keys: Vec<String>,
    server: String,
    database: String,
    audit: String,
    prepare_issuer: Option<PrepareIssuer>,
    issuer: Option<TestIssuer>,
    https: Option<reqwest::Client>,
}

/// Limits far above what any test sends, so that only the tests about limits meet them
/// (moto in a debug build answers far slower than AWS, so production ceilings would refuse
/// calls that AWS would serve).
const GENEROUS_LIMITS: &str = r#"
[aws.ecr_ceiling]
max_concurrent = 10000
per_second = 100000
max_wait_ms = 10000

[aws.sts_ceiling]
max_concurrent = 10000
per_second = 100000
max_wait_ms = 10000

[rate_limit]
per_second = 100000
burst = 100000
unauthenticated = { per_second = 100000, burst = 100000 }
"#;

/// Sets the test issuer up before the service starts.
type PrepareIssuer = Box<dyn FnOnce(&TestIssuer) + Send>;

impl TestAppBuilder {
    /// More config sections, as TOML (such as `[audit_chain]`).
    pub fn extra_config(mut self, toml: &str) -> Self {
        self.extra_config.push_str(toml);
        self
    }

    /// An issuer whose keys the test expects never to load: `spawn` does not wait for them.
    pub fn keys_stay_unloaded(mut self, issuer: &str) -> Self {
        self.unloaded_keys.push(issuer.to_owned());
        self
    }

    pub fn rules(mut self, toml: &str) -> Self {
        self.rules = toml.to_owned();
        self
    }

    /// How the test issuer's keys are found, and any other settings of it (TOML lines);
    /// `{issuer}` and `{jwks_uri}` expand.
    pub fn issuer_keys(mut self, toml: &str) -> Self {
        self.issuer_keys = toml.to_owned();
        self
    }

    /// More `[[issuers]]` entries; `{issuer}` and `{jwks_uri}` expand to the test issuer's.
    pub fn extra_issuers(mut self, toml: &str) -> Self {
        self.extra_issuers = toml.to_owned();
        self
    }

    /// Trust this issuer (another app's) instead of a fresh one.
    pub fn issuer(mut self, issuer: TestIssuer) -> Self {
        self.issuer = Some(issuer);
        self
    }

    /// Use this moto (already set up) instead of a fresh one.
    pub fn moto(mut self, moto: Moto) -> Self {
        self.moto = Some(moto);
        self
    }

    /// Route AWS calls through a fault-injecting proxy; faults add up.
    pub fn fault(mut self, fault: Fault) -> Self {
        self.faults.push(fault);
        self
    }

    /// The `[cache]` section's settings (TOML lines).
    pub fn cache(mut self, toml: &str) -> Self {
        self.cache = toml.to_owned();
        self
    }

    pub fn database_url(mut self, url: &str) -> Self {
        self.database_url = Some(url.to_owned());
        self
    }

    /// Create the test's database on this server instead of `DATABASE_URL`'s.
    pub fn database_server(mut self, admin_url: &str) -> Self {
        self.database_server = Some(admin_url.to_owned());
        self
    }

    pub fn aws_credentials(mut self, access_key: &str, secret_key: &str) -> Self {
        self.aws_credentials = (access_key.to_owned(), secret_key.to_owned());
        self
    }

    pub fn operation_timeout_secs(mut self, secs: u64) -> Self {
        self.operation_timeout_secs = secs;
        self
    }

    /// `[audit] admin_rules`: callers of these rules read every audit record.
    pub fn admin_rules(mut self, rules: &[&str]) -> Self {
        self.admin_rules = rules.iter().map(|r| (*r).to_owned()).collect();
        self
    }

    /// The current fingerprint key (default: `test-key`, [`FINGERPRINT_KEY`]).
    pub fn fingerprint_key(mut self, id: &str, key: &str) -> Self {
        self.fingerprint_key = (id.to_owned(), key.to_owned());
        self
    }

    /// Adds an entry to `[audit] previous_fingerprint_keys`.
    pub fn previous_fingerprint_key(mut self, id: &str, key: &str) -> Self {
        self.previous_fingerprint_keys
            .push((id.to_owned(), key.to_owned()));
        self
    }

    /// The `[rate_limit]`, `[aws.ecr_ceiling]` and `[aws.sts_ceiling]` tables, instead of
    /// generous ones that no other test reaches; a table left out takes the service's
    /// defaults.
    pub fn limits(mut self, toml: &str) -> Self {
        self.limits = toml.to_owned();
        self
    }

    /// More `[server]` settings (TOML lines).
    pub fn server(mut self, toml: &str) -> Self {
        self.server = toml.to_owned();
        self
    }

    /// More `[database]` settings (TOML lines).
    pub fn database(mut self, toml: &str) -> Self {
        self.database = toml.to_owned();
        self
    }

    /// More `[audit]` settings (TOML lines).
    pub fn audit(mut self, toml: &str) -> Self {
        self.audit = toml.to_owned();
        self
    }

    /// An environment variable as `Config::parse` sees it (the process environment is left
    /// alone, since tests run in parallel).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The service serves HTTPS (`server` sets `[server.tls]`), and `client` is how the
    /// harness reaches it: trusting its CA, with a client certificate for mutual TLS.
    pub fn https(mut self, client: reqwest::Client) -> Self {
        self.https = Some(client);
        self
    }

    /// Sets the test issuer up before the service starts, so its first key fetch sees it.
    pub fn prepare_issuer(mut self, prepare: impl FnOnce(&TestIssuer) + Send + 'static) -> Self {
        self.prepare_issuer = Some(Box::new(prepare));
        self
    }

    /// Starts moto, the issuer, the proxy and the database, and renders the config with
    /// `listen` as the listen address.
    async fn prepare(self, listen: &str) -> Prepared {
        let moto = match self.moto {
            Some(moto) => moto,
            None => Moto::start().await,
        };
        let proxy = if self.faults.is_empty() {
            None
        } else {
            Some(FaultProxy::start(&moto.url, self.faults).await)
        };
        let aws_endpoint = proxy.as_ref().map_or(moto.url.clone(), |p| p.url.clone());
        let issuer = match self.issuer {
            Some(issuer) => issuer,
            None => TestIssuer::start().await,
        };
        if let Some(prepare) = self.prepare_issuer {
            prepare(&issuer);
        }
        let database_url = match (self.database_url, self.database_server) {
            (Some(url), _) => url,
            (None, Some(server)) => fresh_database_on(&server).await,
            (None, None) => fresh_database_on(&admin_database_url()).await,
        };
        let extra_issuers = self
            .extra_issuers
            .replace("{issuer}", &issuer.url)
            .replace("{jwks_uri}", &issuer.jwks_uri());
        let admin_rules: Vec<String> = self.admin_rules.iter().map(|r| format!("{r:?}")).collect();
        let previous_keys: Vec<String> = self
            .previous_fingerprint_keys
            .iter()
            .map(|(id, key)| format!("{id:?} = {key:?}"))
            .collect();
        let text = format!(
            r#"
[server]
listen = "{listen}"
cors_allowed_origins = ["{PORTAL_ORIGIN}"]
max_body_bytes = 4096
max_header_bytes = 12288
{server}

[database]
url = "{database_url}"
acquire_timeout_secs = 2
{database}

[audit]
fingerprint_key_id = "{fingerprint_key_id}"
fingerprint_key = "{fingerprint_key}"
previous_fingerprint_keys = {{ {previous_keys} }}
chain_key = "{CHAIN_KEY}"
admin_rules = [{admin_rules}]
{audit}

[aws]
operation_timeout_secs = {timeout}

[cache]
{cache}
{extra_config}

[[issuers]]
name = "test"
issuer = "{issuer_url}"
{issuer_keys}
audiences = ["ecr-token-broker"]
algorithms = ["RS256", "ES256", "EdDSA"]
jwks_min_refresh_interval_secs = 1
{extra_issuers}
{rules}
{limits}
"#,
            timeout = self.operation_timeout_secs,
            cache = self.cache,
            fingerprint_key_id = self.fingerprint_key.0,
            fingerprint_key = self.fingerprint_key.1,
            previous_keys = previous_keys.join(", "),
            admin_rules = admin_rules.join(", "),
            issuer_url = issuer.url,
            issuer_keys = self
                .issuer_keys
                .replace("{jwks_uri}", &issuer.jwks_uri())
                .replace("{issuer}", &issuer.url),
            rules = self.rules,
            limits = self.limits,
            extra_config = self.extra_config,
            server = self.server,
            database = self.database,
            audit = self.audit,
        );
        Prepared {
            text,
            env: self.env,
            aws_endpoint,
            aws_credentials: self.aws_credentials,
            database_url,
            moto,
            proxy,
            issuer,
        }
    }

    /// Runs the real binary as a child process, for tests that kill it.
    pub async fn spawn_process(self) -> ServiceProcess {
        let port = free_port();
        let (scheme, http) = match self.https.clone() {
            Some(client) => ("https", client),
            None => ("http", reqwest::Client::new()),
        };
        let p = self.prepare(&format!("127.0.0.1:{port}")).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("config.toml");
        std::fs::write(&config, &p.text).expect("write config");
        // A clean environment: the harness's own DATABASE_URL must not override the config.
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ecr-token-broker"))
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_ENDPOINT_URL", &p.aws_endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", &p.aws_credentials.0)
            .env("AWS_SECRET_ACCESS_KEY", &p.aws_credentials.1)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "warn")
            .envs(p.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(std::fs::File::create(dir.path().join("service.out")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("service.log")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("start the service binary");
        let service = ServiceProcess {
            address: format!("{scheme}://127.0.0.1:{port}"),
            http,
            config_text: p.text,
            child,
            database_url: p.database_url,
            _moto: p.moto,
            issuer: p.issuer,
            _proxy: p.proxy,
            dir,
        };
        let ready = wait_for(Duration::from_secs(30), async || {
            let ready = service
                .http
                .get(format!("{}/readyz", service.address))
                .send()
                .await;
            let ready = ready.ok().filter(|r| r.status().is_success())?;
            let body = ready.text().await.unwrap_or_default();
            (!body.contains("keys not loaded")).then_some(())
        })
        .await;
        if ready.is_none() {
            panic!(
                "the service process never became ready:\n{}",
                std::fs::read_to_string(service.dir.path().join("service.log")).unwrap_or_default()
            );
        }
        service
    }

    pub async fn spawn(self) -> TestApp {
        let unloaded_keys = self.unloaded_keys.clone();
        let p = self.prepare("127.0.0.1:0").await;
        let env = &p.env;
        let config = Config::parse(&p.text, |name| {
            env.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
        })
        .unwrap_or_else(|e| panic!("test config is invalid:\n{e}\n{}", p.text));
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&p.aws_endpoint)
            .credentials_provider(Credentials::new(
                p.aws_credentials.0.clone(),
                p.aws_credentials.1.clone(),
                None,
                None,
                "test",
            ))
            .load()
            .await;
        let app = Application::build(config, sdk)
            .await
            .expect("application builds");
        let address = format!("http://{}", app.local_addr().unwrap());
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.serve(async {
            stopped.await.ok();
        }));
        let Prepared {
            database_url,
            moto,
            proxy,
            issuer,
            ..
        } = p;
        let test_app = TestApp {
            address,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            database_url,
            moto,
            proxy,
            issuer,
            _shutdown: shutdown,
        };
        test_app.wait_for_keys(&unloaded_keys).await;
        test_app
    }
}

/// The service running as its own process.
pub struct ServiceProcess {
    pub address: String,
    /// How the harness reaches it (for HTTPS, trusting its CA).
    pub http: reqwest::Client,
    /// The config it was started with.
    pub config_text: String,
    pub child: tokio::process::Child,
    pub database_url: String,
    pub issuer: TestIssuer,
    _moto: Moto,
    _proxy: Option<FaultProxy>,
    dir: tempfile::TempDir,
}

impl ServiceProcess {
    /// What the service has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("service.log")).unwrap_or_default()
    }

    /// Replaces the config file as a ConfigMap update does: the new file is written beside
    /// it and renamed over it, so the service never reads half a file.
    pub fn write_config(&self, text: &str) {
        let next = self.dir.path().join("config.toml.next");
        std::fs::write(&next, text).expect("write the new config");
        std::fs::rename(&next, self.dir.path().join("config.toml")).expect("swap the config");
    }

    /// Sends SIGHUP.
    pub fn hangup(&self) {
        let pid = self.child.id().expect("the service runs").to_string();
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP {pid}");
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .try_wait()
            .expect("wait on the service")
            .is_none()
    }

    /// `POST /v1/ecr/authorization-token` with this bearer token.
    pub async fn issue(&self, token: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/ecr/authorization-token", self.address))
            .bearer_auth(token)
            .send()
            .await
            .expect("the service answers")
    }

    /// `GET /v1/whoami` with this bearer token, as JSON.
    pub async fn whoami(&self, token: &str) -> Value {
        self.http
            .get(format!("{}/v1/whoami", self.address))
            .bearer_auth(token)
            .send()
            .await
            .expect("the service answers")
            .json()
            .await
            .expect("whoami answers JSON")
    }

    /// What the service has written to its standard output so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("service.out")).unwrap_or_default()
    }
}

struct Prepared {
    text: String,
    env: Vec<(String, String)>,
    aws_endpoint: String,
    aws_credentials: (String, String),
    database_url: String,
    moto: Moto,
    proxy: Option<FaultProxy>,
    issuer: TestIssuer,
}

pub struct TestApp {
    pub address: String,
    pub http: reqwest::Client,
    pub database_url: String,
    pub moto: Moto,
    proxy: Option<FaultProxy>,
    pub issuer: TestIssuer,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl TestApp {
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            rules: DEFAULT_RULES.to_owned(),
            issuer_keys: r#"jwks_uri = "{jwks_uri}""#.to_owned(),
            extra_issuers: String::new(),
            moto: None,
            faults: Vec::new(),
            cache: String::new(),
            database_url: None,
            database_server: None,
            aws_credentials: ("AKIDTESTBROKER".to_owned(), "test-secret".to_owned()),
            operation_timeout_secs: 10,
            env: Vec::new(),
            admin_rules: Vec::new(),
            fingerprint_key: ("test-key".to_owned(), FINGERPRINT_KEY.to_owned()),
            previous_fingerprint_keys: Vec::new(),
            limits: GENEROUS_LIMITS.to_owned(),
            extra_config: String::new(),
            unloaded_keys: Vec::new(),
            server: String::new(),
            database: String::new(),
            audit: String::new(),
            prepare_issuer: None,
            issuer: None,
            https: None,
        }
    }

    pub async fn spawn() -> Self {
        Self::builder().spawn().await
    }

    /// Waits until every issuer's keys are loaded, but those of `unloaded`.
    async fn wait_for_keys(&self, unloaded: &[String]) {
        wait_for(Duration::from_secs(30), async || {
            let body: Value = self.get("/readyz").await.json().await.ok()?;
            let loaded = match body["checks"]["issuers"].as_object() {
                Some(issuers) => issuers
                    .iter()
                    .all(|(name, state)| state == "ok" || unloaded.contains(name)),
                // Not ready (no database): the detail names issuers without keys.
                None => !body["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("keys not loaded")),
            };
            loaded.then_some(())
        })
        .await
        .expect("the service never loaded the test issuer's keys");
    }

    /// The fault-injecting proxy in front of moto (the app must have been built with a fault).
    pub fn proxy(&self) -> &FaultProxy {
        self.proxy
            .as_ref()
            .expect("the test app was built without a fault proxy")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("GET")
    }

    /// `GET /v1/whoami` with this bearer token.
    pub async fn whoami(&self, token: &str) -> reqwest::Response {
        self.http
            .get(self.url("/v1/whoami"))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET /v1/whoami")
    }

    /// `POST /v1/ecr/authorization-token` with an optional bearer token and JSON body.
    pub async fn issue(&self, token: Option<&str>, body: Option<Value>) -> reqwest::Response {
        let mut request = self.http.post(self.url("/v1/ecr/authorization-token"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("POST authorization-token")
    }

    /// `GET /v1/audit/issuances` with a bearer token and query parameters.
    pub async fn audit_issuances(&self, token: &str, query: &[(&str, &str)]) -> reqwest::Response {
        let mut url = reqwest::Url::parse(&self.url("/v1/audit/issuances")).unwrap();
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        self.http
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .expect("GET audit issuances")
    }

    /// `POST /v1/audit/lookup` with a bearer token and a JSON body.
    pub async fn audit_lookup(&self, token: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url("/v1/audit/lookup"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("POST audit lookup")
    }

    /// A valid token of the default caller.
    pub fn token(&self) -> String {
        self.issuer.token().sign()
    }

    pub async fn db(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(1)
            .connect(&self.database_url)
            .await
            .expect("connect test database")
    }

    /// Every audit row, oldest first, as JSON objects.
    pub async fn audit_rows(&self) -> Vec<Value> {
        audit_rows_in(&self.database_url).await
    }

    /// The one audit row of a request.
    pub async fn audit_row(&self, request_id: &str) -> Value {
        let rows: Vec<Value> = self
            .audit_rows()
            .await
            .into_iter()
            .filter(|r| r["request_id"] == request_id)
            .collect();
        assert_eq!(
            rows.len(),
            1,
            "expected exactly one audit row for {request_id}, got {rows:?}"
        );
        rows.into_iter().next().unwrap()
    }
}

/// The API calls a test makes of a running service, whether it runs in the test's process
/// ([`TestApp`]) or as a process of its own ([`ServiceProcess`]).
pub(crate) trait Service {
    /// Where it listens, as `http://127.0.0.1:PORT` (or `https://`).
    fn address(&self) -> &str;

    /// How the harness reaches it.
    fn http(&self) -> &reqwest::Client;

    /// `POST /v1/admin/deny` with `body` sent as it is.
    async fn post_deny(&self, token: &str, body: &str) -> reqwest::Response {
        self.http()
            .post(format!("{}/v1/admin/deny", self.address()))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    /// `GET /v1/admin/deny`.
    async fn get_deny(&self, token: &str) -> reqwest::Response {
        self.http()
            .get(format!("{}/v1/admin/deny", self.address()))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// `DELETE /v1/admin/deny/{id}`.
    async fn delete_deny(&self, token: &str, id: &str) -> reqwest::Response {
        self.http()
            .delete(format!("{}/v1/admin/deny/{id}", self.address()))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }
}

impl Service for TestApp {
    fn address(&self) -> &str {
        &self.address
    }

    fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

impl Service for ServiceProcess {
    fn address(&self) -> &str {
        &self.address
    }

    fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

/// Asks `check` again every 50 ms until it gives a value, or gives `None` once `timeout` has
/// passed: how a test waits for something to happen, however slow the machine. The timeout
/// only bounds a failing test; a passing one waits just as long as it must.
pub async fn wait_for<T>(
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The audit log's fingerprint of an authorization token under [`FINGERPRINT_KEY`].
pub fn fingerprint(token: &str) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(FINGERPRINT_KEY.as_bytes()).unwrap();
    mac.update(token.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The `x-request-id` of a response.
pub fn request_id(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-request-id")
        .expect("every response has x-request-id")
        .to_str()
        .unwrap()
        .to_owned()
}

/// The `proxyEndpoint` of every AuthorizationData in an issue response body, in order.
pub fn proxy_endpoints(body: &Value) -> Vec<String> {
    body["authorizationData"]
        .as_array()
        .expect("authorizationData")
        .iter()
        .map(|d| d["proxyEndpoint"].as_str().unwrap().to_owned())
        .collect()
}

/// Asserts an RFC 9457 problem of `status` and type `slug`, and returns its body.
pub async fn assert_problem(response: reqwest::Response, status: u16, slug: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let id = request_id(&response);
    let body: Value = response.json().await.expect("problem JSON");
    assert_eq!(
        body["type"],
        format!("https://ecr-token-broker.dev/problems/{slug}"),
        "{body}"
    );
    assert_eq!(body["status"], status);
    assert!(
        body["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert!(
        body["detail"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert_eq!(body["requestId"], id.as_str());
    body
}
