//! The service's own HTTPS listener (`[server.tls]`), through the real binary with
//! certificates made when the test runs: issuing and the probes over TLS 1.2 and 1.3, plain
//! HTTP and strangers' CAs refused, mutual TLS refused at the handshake without a client
//! certificate, and the certificate files rotated under load without dropping a request,
//! a bad new pair refused in one log line while the old one keeps serving.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::helpers::tls::{ServerCert, TestCa, client_trusting};
use crate::helpers::{Load, ServiceProcess, TestApp, wait_for};

/// How long a rotation may take to show: a poll a second, on a loaded machine.
const ROTATION_SHOWS: Duration = Duration::from_secs(20);

/// Names the listener's certificate carries: the harness calls it at 127.0.0.1.
const NAMES: [&str; 2] = ["IP:127.0.0.1", "DNS:localhost"];

/// A directory laid out as Kubernetes mounts a Secret: `tls.crt` and `tls.key` are links
/// through `..data` to a directory of the current version, and an update swaps `..data` in
/// one rename, so a reader sees the old pair or the new one, never half of each.
pub(crate) struct SecretDir {
    dir: tempfile::TempDir,
    version: usize,
}

impl SecretDir {
    pub(crate) fn new(cert: &Path, key: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for name in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(format!("..data/{name}"), dir.path().join(name)).unwrap();
        }
        let mut secret = Self { dir, version: 0 };
        secret.put(cert, key);
        secret
    }

    /// Publishes a new version holding copies of `cert` and `key`.
    pub(crate) fn put(&mut self, cert: &Path, key: &Path) {
        self.version += 1;
        let version = format!("..v{}", self.version);
        let staged = self.dir.path().join(&version);
        std::fs::create_dir(&staged).unwrap();
        std::fs::copy(cert, staged.join("tls.crt")).unwrap();
        std::fs::copy(key, staged.join("tls.key")).unwrap();
        let link = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&version, &link).unwrap();
        std::fs::rename(&link, self.dir.path().join("..data")).unwrap();
    }

    pub(crate) fn cert(&self) -> PathBuf {
        self.dir.path().join("tls.crt")
    }

    pub(crate) fn key(&self) -> PathBuf {
        self.dir.path().join("tls.key")
    }

    /// `[server.tls]` serving this directory's pair, read again every second.
    pub(crate) fn server_toml(&self, extra: &str) -> String {
        format!(
            "[server.tls]\ncert_file = {:?}\nkey_file = {:?}\nreload_interval_secs = 1\n{extra}",
            self.cert().display(),
            self.key().display(),
        )
    }
}

/// The service, serving `pair` over HTTPS; `http` is the harness's client.
pub(crate) async fn https_service(
    pair: &ServerCert,
    extra: &str,
    http: reqwest::Client,
) -> (ServiceProcess, SecretDir) {
    let secret = SecretDir::new(&pair.cert, &pair.key);
    let service = TestApp::builder()
        .server(&secret.server_toml(extra))
        .env("RUST_LOG", "warn,ecr_token_broker=info")
        .https(http)
        .spawn_process()
        .await;
    (service, secret)
}

/// A fresh connection (so a fresh handshake) from `client` to `service`'s `/healthz`.
async fn healthz(client: reqwest::ClientBuilder, service: &ServiceProcess) -> reqwest::Result<u16> {
    let client = client.pool_max_idle_per_host(0).build().unwrap();
    let response = client
        .get(format!("{}/healthz", service.address))
        .send()
        .await?;
    Ok(response.status().as_u16())
}

#[tokio::test]
async fn https_issues_and_answers_the_probes_and_refuses_plain_http_and_strangers() {
    // Arrange
    let ca = TestCa::new("listener CA");
    let (service, _secret) = https_service(
        &ca.server_cert(&NAMES),
        "",
        client_trusting(&ca).build().unwrap(),
    )
    .await;
    let token = service.issuer.token().sign();

    // Act
    let issued = service.issue(&token).await;
    let probes = [
        healthz(client_trusting(&ca), &service).await,
        healthz(
            client_trusting(&ca).tls_version_max(reqwest::tls::Version::TLS_1_2),
            &service,
        )
        .await,
        healthz(
            client_trusting(&ca).tls_version_min(reqwest::tls::Version::TLS_1_3),
            &service,
        )
        .await,
    ];
    let ready = service
        .http
        .get(format!("{}/readyz", service.address))
        .send()
        .await
        .unwrap();
    let plain = reqwest::Client::new()
        .get(service.address.replace("https://", "http://") + "/healthz")
        .send()
        .await;
    let stranger = healthz(client_trusting(&TestCa::new("another CA")), &service).await;

    // Assert
    assert_eq!(issued.status(), 200, "{}", issued.text().await.unwrap());
    for probe in probes {
        assert_eq!(probe.unwrap(), 200);
    }
    assert_eq!(ready.status(), 200);
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");
    let error = format!(
        "{:?}",
        stranger.expect_err("a client trusting another CA connected")
    );
    assert!(error.contains("UnknownIssuer"), "{error}");
}

#[tokio::test]
async fn mutual_tls_refuses_a_client_without_a_certificate_from_the_ca_at_the_handshake() {
    // Arrange
    let ca = TestCa::new("listener CA");
    let clients = TestCa::new("client CA");
    let known = clients.client_cert();
    let strangers = TestCa::new("stranger CA");
    let stranger = strangers.client_cert();
    let (service, _secret) = https_service(
        &ca.server_cert(&NAMES),
        &format!("client_ca_file = {:?}\n", clients.cert.display()),
        client_trusting(&ca)
            .identity(known.identity())
            .build()
            .unwrap(),
    )
    .await;
    let token = service.issuer.token().sign();

    // Act
    let issued = service.issue(&token).await;
    let without = healthz(client_trusting(&ca), &service).await;
    let with_a_strangers =
        healthz(client_trusting(&ca).identity(stranger.identity()), &service).await;
    let with_the_cas = healthz(client_trusting(&ca).identity(known.identity()), &service).await;

    // Assert: the refused get no HTTP answer at all, only a failed connection.
    assert_eq!(issued.status(), 200);
    assert!(
        without.is_err(),
        "answered without a client certificate: {without:?}"
    );
    assert!(
        with_a_strangers.is_err(),
        "answered a stranger's certificate: {with_a_strangers:?}"
    );
    assert_eq!(with_the_cas.unwrap(), 200);
    let log = service.log();
    assert!(!log.contains("PRIVATE KEY"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotating_the_files_under_load_drops_no_request_and_new_handshakes_get_the_new_certificate()
{
    // Arrange: the load trusts both CAs, so it sees every request through the rotation.
    let old_ca = TestCa::new("old CA");
    let new_ca = TestCa::new("new CA");
    let both = || {
        let pem = [
            std::fs::read(&old_ca.cert).unwrap(),
            std::fs::read(&new_ca.cert).unwrap(),
        ]
        .concat();
        reqwest::Client::builder()
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem).unwrap())
            .timeout(Duration::from_secs(20))
    };
    let (service, mut secret) =
        https_service(&old_ca.server_cert(&NAMES), "", both().build().unwrap()).await;
    let token = service.issuer.token().sign();
    let kept_alive = both().build().unwrap();
    // Half keep their connections; half make a new one, so a handshake, each time.
    let clients = (0..6).map(|i| {
        if i % 2 == 0 {
            kept_alive.clone()
        } else {
            both().pool_max_idle_per_host(0).build().unwrap()
        }
    });
    let load = Load::start(&service.address, &token, clients);
    load.flowing(30, ROTATION_SHOWS)
        .await
        .expect("requests flow before the rotation");
    assert!(healthz(client_trusting(&new_ca), &service).await.is_err());

    // Act
    let new_pair = new_ca.server_cert(&NAMES);
    secret.put(&new_pair.cert, &new_pair.key);
    let rotated = wait_for(ROTATION_SHOWS, async || {
        healthz(client_trusting(&new_ca), &service).await.ok()
    })
    .await;
    let after = load.ok();
    load.flowing(after + 30, ROTATION_SHOWS)
        .await
        .expect("requests flow after the rotation");
    let total = load.stop().await;

    // Assert
    assert_eq!(
        rotated,
        Some(200),
        "new handshakes never got the new certificate"
    );
    assert!(
        healthz(client_trusting(&old_ca), &service).await.is_err(),
        "new handshakes still get the old certificate"
    );
    assert!(total.other.is_empty(), "dropped: {:?}", total.other);
    assert!(total.ok >= 60, "{total:?}");
}

#[tokio::test]
async fn a_bad_new_pair_is_refused_in_one_log_line_and_the_old_one_keeps_serving() {
    // Arrange
    let old_ca = TestCa::new("old CA");
    let new_ca = TestCa::new("new CA");
    let old_pair = old_ca.server_cert(&NAMES);
    let new_pair = new_ca.server_cert(&NAMES);
    let (service, mut secret) =
        https_service(&old_pair, "", client_trusting(&old_ca).build().unwrap()).await;
    let refused = "TLS certificate not reloaded";

    // Act: the new certificate with the old key.
    secret.put(&new_pair.cert, &old_pair.key);
    let logged = wait_for(ROTATION_SHOWS, async || {
        service.log().contains(refused).then_some(())
    })
    .await;
    let old_still_served = healthz(client_trusting(&old_ca), &service).await;
    let new_served = healthz(client_trusting(&new_ca), &service).await;
    // Then the pair that belongs together, whose arrival shows that the bad one was polled
    // again without being logged again.
    secret.put(&new_pair.cert, &new_pair.key);
    let fixed = wait_for(ROTATION_SHOWS, async || {
        healthz(client_trusting(&new_ca), &service).await.ok()
    })
    .await;

    // Assert
    assert_eq!(logged, Some(()), "the bad pair was never logged");
    assert_eq!(old_still_served.unwrap(), 200);
    assert!(new_served.is_err(), "the bad pair was served");
    assert_eq!(fixed, Some(200));
    let log = service.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(refused)).collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("server.tls.key_file"), "{}", lines[0]);
    assert!(
        lines[0].contains("is not the private key of"),
        "{}",
        lines[0]
    );
    let key = std::fs::read_to_string(&old_pair.key).unwrap();
    assert!(!log.contains("PRIVATE KEY"), "{log}");
    assert!(!log.contains(key.lines().nth(1).unwrap()), "{log}");
    assert!(log.contains("TLS certificate reloaded"), "{log}");
}
