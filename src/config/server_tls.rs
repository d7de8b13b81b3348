//! `[server.tls]`: the listener's own certificate, key and, for mutual TLS, client CA.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use serde::Deserialize;

/// `[server.tls]`: serve HTTPS rather than plain HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// The certificate chain, PEM, the listener's own certificate first.
    pub cert_file: PathBuf,
    /// The certificate's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// When set, clients must present a certificate issued by one of these CAs (PEM).
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// How often the two files are read again; a changed, valid pair is served from the next
    /// handshake on.
    #[serde(default = "default_reload_interval")]
    pub reload_interval_secs: u64,
    /// How long a client may take to finish its TLS handshake.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout_secs: u64,
}

fn default_reload_interval() -> u64 {
    10
}

fn default_handshake_timeout() -> u64 {
    10
}

impl ServerTlsConfig {
    /// How often the certificate and key files are read again.
    pub(crate) fn reload_interval(&self) -> Duration {
        Duration::from_secs(self.reload_interval_secs)
    }

    /// How long a TLS handshake may take.
    pub(crate) fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }

    /// The problems with the files this section names, each with its path in the config
    /// file, so that a bad file stops the config at load rather than the first handshake.
    pub(crate) fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let pair = KeyPairFiles::read(&self.cert_file, &self.key_file);
        if let Err((field, problem)) = pair.and_then(|pair| pair.certified_key().map(|_| ())) {
            problems.push((format!("server.tls.{field}"), problem));
        }
        if let Some(path) = &self.client_ca_file
            && let Err(problem) = client_roots(path)
        {
            problems.push(("server.tls.client_ca_file".to_owned(), problem));
        }
        problems
    }
}

/// The crypto every TLS listener uses: aws-lc-rs, as for the service's outgoing TLS.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The bytes of a certificate file and a key file, as read at one moment. Compared whole,
/// so that a reload parses only a pair that changed. `Debug` never shows them: the key is
/// secret.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct KeyPairFiles {
    cert_file: PathBuf,
    cert: Vec<u8>,
    key_file: PathBuf,
    key: Vec<u8>,
}

impl fmt::Debug for KeyPairFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPairFiles")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

/// Which setting a problem concerns (`cert_file` or `key_file`), and what it is.
type FileProblem = (&'static str, String);

impl KeyPairFiles {
    /// Reads both files.
    pub(crate) fn read(cert_file: &Path, key_file: &Path) -> Result<Self, FileProblem> {
        let read = |field, path: &Path| {
            std::fs::read(path).map_err(|e| (field, format!("cannot read {}: {e}", path.display())))
        };
        Ok(Self {
            cert: read("cert_file", cert_file)?,
            key: read("key_file", key_file)?,
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
        })
    }

    /// The chain and key as rustls serves them, once both parse and the key is the
    /// certificate's. Problems name the file, never its contents.
    pub(crate) fn certified_key(&self) -> Result<Arc<CertifiedKey>, FileProblem> {
        let cert_shown = self.cert_file.display();
        let key_shown = self.key_file.display();
        let chain = CertificateDer::pem_slice_iter(&self.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                (
                    "cert_file",
                    format!("{cert_shown} is not PEM certificates: {e}"),
                )
            })?;
        if chain.is_empty() {
            return Err((
                "cert_file",
                format!("{cert_shown} holds no PEM certificate"),
            ));
        }
        // The key's parse error is not quoted: it might echo part of the key.
        let key = PrivateKeyDer::from_pem_slice(&self.key)
            .map_err(|_| ("key_file", format!("{key_shown} holds no PEM private key")))?;
        CertifiedKey::from_der(chain, key, &provider())
            .map_err(|e| match e {
                rustls::Error::InconsistentKeys(_) => (
                    "key_file",
                    format!("{key_shown} is not the private key of {cert_shown}'s certificate"),
                ),
                _ => (
                    "key_file",
                    format!("{key_shown} is not a private key rustls can use with {cert_shown}"),
                ),
            })
            .map(Arc::new)
    }
}

/// The CAs whose client certificates are accepted, from `path`.
pub(crate) fn client_roots(path: &Path) -> Result<RootCertStore, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("{shown} is not PEM certificates: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("{shown} holds a certificate that is not a usable CA: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("{shown} holds no PEM certificate"));
    }
    Ok(roots)
}
