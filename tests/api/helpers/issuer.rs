//! A real token issuer for tests: signing keys, and a JWKS and OIDC discovery document served
//! over HTTP (or HTTPS under a test CA) on 127.0.0.1.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};

use super::tls::{ServerCert, acceptor, serve_https};

pub const AUDIENCE: &str = "ecr-token-broker";

/// A key the test issuer signs with.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    encoding: EncodingKey,
}

impl SigningKey {
    fn load(kid: &str, alg: Algorithm, pem: &[u8]) -> Self {
        let encoding = match alg {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem),
            _ => EncodingKey::from_rsa_pem(pem),
        }
        .expect("fixture key parses");
        Self {
            kid: kid.to_owned(),
            alg,
            encoding,
        }
    }

    pub fn rsa_primary() -> Self {
        Self::load(
            "rsa-primary",
            Algorithm::RS256,
            include_bytes!("../../fixtures/keys/rsa-primary.pem"),
        )
    }

    pub fn rsa_rotated() -> Self {
        Self::load(
            "rsa-rotated",
            Algorithm::RS256,
            include_bytes!("../../fixtures/keys/rsa-rotated.pem"),
        )
    }

    pub fn ec_p256() -> Self {
        Self::load(
            "ec-p256",
            Algorithm::ES256,
            include_bytes!("../../fixtures/keys/ec-p256.pem"),
        )
    }

    pub fn ed25519() -> Self {
        Self::load(
            "ed25519",
            Algorithm::EdDSA,
            include_bytes!("../../fixtures/keys/ed25519.pem"),
        )
    }

    /// The public JWK, as an issuer publishes it.
    pub fn jwk(&self) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.encoding, self.alg).expect("public JWK");
        jwk.common.key_id = Some(self.kid.clone());
        jwk.common.key_algorithm = Some(KeyAlgorithm::from(self.alg));
        jwk
    }

    /// Same key material, announced for another algorithm (PS256 uses RSA keys too).
    pub fn with_alg(mut self, alg: Algorithm) -> Self {
        self.alg = alg;
        self
    }
}

#[derive(Clone)]
struct Published {
    issuer: String,
    keys: Arc<Mutex<Vec<Jwk>>>,
    jwks_fetches: Arc<AtomicUsize>,
    /// The `jwks_uri` the discovery document names; `None`: this issuer's own.
    discovered_jwks_uri: Arc<Mutex<Option<String>>>,
    discovery_fetches: Arc<AtomicUsize>,
    redirects: Arc<AtomicUsize>,
}

/// The issuer: clones share one server, which stops when the last of them is dropped
/// (services that share a database may trust the same issuer).
#[derive(Clone)]
pub struct TestIssuer {
    pub url: String,
    published: Published,
    _server: Arc<ServerTask>,
}

struct ServerTask(tokio::task::JoinHandle<()>);

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl TestIssuer {
    /// Starts an issuer that publishes the RSA primary, EC P-256 and Ed25519 keys.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// [`TestIssuer::start`] over HTTPS with `server`'s certificate, at
    /// `https://127.0.0.1:PORT`, as an issuer under a private CA.
    pub async fn start_https(server: &ServerCert) -> Self {
        Self::start_with(Some(server)).await
    }

    async fn start_with(tls: Option<&ServerCert>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind issuer");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let address = listener.local_addr().expect("issuer address");
        let url = format!("{scheme}://{address}");
        let published = Published {
            issuer: url.clone(),
            keys: Arc::new(Mutex::new(
                [
                    SigningKey::rsa_primary(),
                    SigningKey::ec_p256(),
                    SigningKey::ed25519(),
                ]
                .iter()
                .map(SigningKey::jwk)
                .collect(),
            )),
            jwks_fetches: Arc::new(AtomicUsize::new(0)),
            discovered_jwks_uri: Arc::new(Mutex::new(None)),
            discovery_fetches: Arc::new(AtomicUsize::new(0)),
            redirects: Arc::new(AtomicUsize::new(0)),
        };
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks.json", get(jwks))
            // Answers with a redirect to the real JWKS.
            .route("/moved/jwks.json", get(moved))
            .with_state(published.clone());
        let server = match tls {
            None => tokio::spawn(async move {
                axum::serve(listener, router).await.expect("issuer serves");
            }),
            Some(server) => tokio::spawn(serve_https(listener, router, acceptor(server))),
        };
        Self {
            url,
            published,
            _server: Arc::new(ServerTask(server)),
        }
    }

    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks.json", self.url)
    }

    /// Adds a key to the published set, as an issuer does when it rotates.
    pub fn publish(&self, key: &SigningKey) {
        self.published.keys.lock().unwrap().push(key.jwk());
    }

    /// Stops publishing `key`, as an issuer does when it retires a key.
    pub fn retire(&self, key: &SigningKey) {
        let kid = Some(key.kid.clone());
        self.published
            .keys
            .lock()
            .unwrap()
            .retain(|jwk| jwk.common.key_id != kid);
    }

    /// How often the JWKS was fetched.
    pub fn jwks_fetches(&self) -> usize {
        self.published.jwks_fetches.load(Ordering::SeqCst)
    }

    /// How often the discovery document was fetched.
    pub fn discovery_fetches(&self) -> usize {
        self.published.discovery_fetches.load(Ordering::SeqCst)
    }

    /// How often the redirecting URL was asked.
    pub fn redirects(&self) -> usize {
        self.published.redirects.load(Ordering::SeqCst)
    }

    /// Makes the discovery document name `uri` as the `jwks_uri`.
    pub fn discover_jwks_at(&self, uri: &str) {
        *self.published.discovered_jwks_uri.lock().unwrap() = Some(uri.to_owned());
    }

    /// A token with valid default claims, signed by the primary RSA key.
    pub fn token(&self) -> TokenBuilder {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = json!({
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": "repo:acme/api:ref:refs/heads/main",
            "iat": now,
            "nbf": now,
            "exp": now + 600,
            "repository": "acme/api",
            "repository_owner": "acme",
            "ref": "refs/heads/main",
            "actor": "octocat",
        });
        TokenBuilder {
            claims: claims.as_object().unwrap().clone(),
            key: SigningKey::rsa_primary(),
            kid: None,
            header: Map::new(),
        }
    }
}

async fn discovery(State(p): State<Published>) -> Json<Value> {
    p.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    let jwks_uri = p.discovered_jwks_uri.lock().unwrap().clone();
    let jwks_uri = jwks_uri.unwrap_or_else(|| format!("{}/jwks.json", p.issuer));
    Json(json!({"issuer": p.issuer, "jwks_uri": jwks_uri}))
}

async fn moved(State(p): State<Published>) -> axum::response::Redirect {
    p.redirects.fetch_add(1, Ordering::SeqCst);
    axum::response::Redirect::temporary("/jwks.json")
}

async fn jwks(State(p): State<Published>) -> Json<JwkSet> {
    p.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    Json(JwkSet {
        keys: p.keys.lock().unwrap().clone(),
    })
}

pub struct TokenBuilder {
    claims: Map<String, Value>,
    key: SigningKey,
    kid: Option<String>,
    header: Map<String, Value>,
}

impl TokenBuilder {
    pub fn claim(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.claims.insert(name.to_owned(), value.into());
        self
    }

    pub fn without(mut self, name: &str) -> Self {
        self.claims.remove(name);
        self
    }

    /// Shifts `iat`, `nbf` and `exp` by `secs` (negative: into the past).
    pub fn shifted(mut self, secs: i64) -> Self {
        for name in ["iat", "nbf", "exp"] {
            let value = self.claims[name].as_i64().unwrap() + secs;
            self.claims.insert(name.to_owned(), value.into());
        }
        self
    }

    pub fn signed_by(mut self, key: SigningKey) -> Self {
        self.key = key;
        self
    }

    /// Claims the token was signed by `kid`, whatever key really signed it.
    pub fn kid(mut self, kid: &str) -> Self {
        self.kid = Some(kid.to_owned());
        self
    }

    /// Sets a header parameter (`null` removes it), signed like the rest.
    pub fn header(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.header.insert(name.to_owned(), value.into());
        self
    }

    pub fn sign(self) -> String {
        let mut header = Header::new(self.key.alg);
        header.kid = Some(self.kid.unwrap_or(self.key.kid.clone()));
        let Value::Object(mut fields) = serde_json::to_value(&header).unwrap() else {
            unreachable!("a header is an object")
        };
        for (name, value) in self.header {
            match value {
                Value::Null => fields.remove(&name),
                value => fields.insert(name, value),
            };
        }
        let header: Header = serde_json::from_value(Value::Object(fields)).expect("a header");
        jsonwebtoken::encode(&header, &self.claims, &self.key.encoding).expect("signing")
    }

    /// HS256 over the claims with `secret` as the HMAC key.
    pub fn sign_hs256(self, secret: &[u8], kid: Option<&str>) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, &self.claims, &EncodingKey::from_secret(secret))
            .expect("signing")
    }

    /// An unsigned token (`alg: none`), as an attacker would send it.
    pub fn unsigned(self) -> String {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&self.claims).unwrap());
        format!("{header}.{claims}.")
    }
}
