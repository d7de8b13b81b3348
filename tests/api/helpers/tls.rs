//! Test certificate authorities and server certificates, made when a test runs.
//!
//! Made with the `openssl` command rather than the `rcgen` crate: the machines and CI images
//! that run these tests already have it (the PostgreSQL server packages pull it in), so no
//! crate joins the build for tests alone, and the certificates are made the way an operator
//! makes a private CA, which is what these tests stand in for.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A certificate authority of the test's own, in a directory that lives as long as it does.
pub struct TestCa {
    dir: tempfile::TempDir,
    /// The CA certificate, PEM: what a client is told to trust.
    pub cert: PathBuf,
    key: PathBuf,
}

/// A certificate (PEM) and its private key (PKCS#8 PEM).
pub struct ServerCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `openssl req` arguments for a new, unencrypted EC P-256 key: quick to make, and taken by
/// Postgres and rustls alike.
const NEW_EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
];

/// `openssl req` with a new key and `args`.
fn openssl_req(args: &[&str]) {
    let mut all = vec!["req"];
    all.extend_from_slice(&NEW_EC_KEY);
    all.extend_from_slice(args);
    openssl(&all);
}

fn openssl(args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl command (package `openssl`) makes the test certificates");
    assert!(
        output.status.success(),
        "openssl {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}

impl TestCa {
    /// A new CA (EC P-256, valid for a day) named `name`.
    pub fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let cert = dir.path().join("ca.pem");
        let key = dir.path().join("ca.key");
        openssl_req(&[
            "-x509",
            "-keyout",
            path(&key),
            "-out",
            path(&cert),
            "-days",
            "1",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        Self { dir, cert, key }
    }

    /// A server certificate for exactly these subject alternative names (`DNS:localhost`,
    /// `IP:127.0.0.1`), signed by this CA.
    pub fn server_cert(&self, names: &[&str]) -> ServerCert {
        self.leaf(
            "test server",
            &format!(
                "subjectAltName={}\nextendedKeyUsage=serverAuth\n",
                names.join(",")
            ),
        )
    }

    /// A client certificate, for mutual TLS, signed by this CA.
    pub fn client_cert(&self) -> ServerCert {
        self.leaf("test client", "extendedKeyUsage=clientAuth\n")
    }

    /// A certificate for `subject` with these extensions, and a new key, signed by this CA.
    fn leaf(&self, subject: &str, extensions_text: &str) -> ServerCert {
        let n = std::fs::read_dir(self.dir.path()).unwrap().count();
        let key = self.dir.path().join(format!("leaf{n}.key"));
        let request = self.dir.path().join(format!("leaf{n}.csr"));
        let cert = self.dir.path().join(format!("leaf{n}.pem"));
        let extensions = self.dir.path().join(format!("leaf{n}.ext"));
        std::fs::write(
            &extensions,
            format!(
                "basicConstraints=critical,CA:FALSE\n\
                 keyUsage=critical,digitalSignature\n{extensions_text}"
            ),
        )
        .unwrap();
        openssl_req(&[
            "-new",
            "-keyout",
            path(&key),
            "-out",
            path(&request),
            "-subj",
            &format!("/CN={subject}"),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            path(&request),
            "-CA",
            path(&self.cert),
            "-CAkey",
            path(&self.key),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            path(&extensions),
            "-out",
            path(&cert),
        ]);
        ServerCert { cert, key }
    }
}

impl ServerCert {
    /// The certificate and key in one PEM, as `reqwest::Identity::from_pem` takes a client's.
    pub fn identity(&self) -> reqwest::Identity {
        let mut pem = std::fs::read(&self.cert).unwrap();
        pem.extend(std::fs::read(&self.key).unwrap());
        reqwest::Identity::from_pem(&pem).expect("a PEM identity")
    }
}

/// A client that trusts `ca` alone, not the system's roots.
pub fn client_trusting(ca: &TestCa) -> reqwest::ClientBuilder {
    let pem = std::fs::read(&ca.cert).unwrap();
    reqwest::Client::builder().tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem).unwrap())
}

/// A TLS acceptor presenting `server`'s certificate.
pub fn acceptor(server: &ServerCert) -> tokio_rustls::TlsAcceptor {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(&server.cert)
        .expect("read the server certificate")
        .collect::<Result<Vec<_>, _>>()
        .expect("a PEM certificate");
    let key = PrivateKeyDer::from_pem_file(&server.key).expect("a PEM private key");
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("the server certificate and key match");
    tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config))
}

/// Serves `router` over TLS, one HTTP/1.1 connection per accepted socket. A client that
/// refuses the certificate ends its handshake, which ends that connection only.
pub async fn serve_https(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    acceptor: tokio_rustls::TlsAcceptor,
) {
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(stream).await else {
                return;
            };
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router))
                .await;
        });
    }
}
