//! The listener's own TLS (`[server.tls]`): the acceptor, and the certificate it serves,
//! swapped in place when the files rotate so that open connections and the listener live on.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::config::{KeyPairFiles, ServerTlsConfig, client_roots, tls_provider};

/// The certificate served to each new handshake: whichever pair was last read whole and
/// valid. A handshake takes it once, so a swap never mixes two pairs in one connection.
#[derive(Debug)]
struct CurrentCert(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// A TLS acceptor for `config`, and the task that reloads its certificate.
pub(super) fn acceptor(config: &ServerTlsConfig) -> anyhow::Result<(TlsAcceptor, JoinHandle<()>)> {
    // Read again rather than kept from the config's check: the files may have rotated since.
    let files = KeyPairFiles::read(&config.cert_file, &config.key_file)
        .map_err(|(field, problem)| anyhow::anyhow!("server.tls.{field}: {problem}"))?;
    let key = files
        .certified_key()
        .map_err(|(field, problem)| anyhow::anyhow!("server.tls.{field}: {problem}"))?;
    let current = Arc::new(CurrentCert(ArcSwap::new(key)));
    let provider = tls_provider();
    // TLS 1.2 and 1.3 only: rustls offers nothing older, and these are its safe defaults.
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match &config.client_ca_file {
        Some(path) => {
            let roots = client_roots(path)
                .map_err(|problem| anyhow::anyhow!("server.tls.client_ca_file: {problem}"))?;
            // Without a certificate from these CAs the handshake fails: nothing reaches HTTP.
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut server =
        builder.with_cert_resolver(Arc::clone(&current) as Arc<dyn ResolvesServerCert>);
    // HTTP/1.1 only, as on the plain listener (see `connections::builder`).
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let reloader = tokio::spawn(reload(config.clone(), files, current));
    Ok((TlsAcceptor::from(Arc::new(server)), reloader))
}

/// Reads the files every `reload_interval_secs`; a changed pair that is valid is served from
/// the next handshake on. A pair that is not (a half-written rotation, a key that is not the
/// certificate's) is logged once and the pair in force keeps serving.
async fn reload(config: ServerTlsConfig, mut seen: KeyPairFiles, current: Arc<CurrentCert>) {
    let mut ticks = tokio::time::interval(config.reload_interval());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    // The last problem logged, so that a bad pair left in place is not logged every poll.
    let mut reported: Option<String> = None;
    loop {
        ticks.tick().await;
        let outcome = match KeyPairFiles::read(&config.cert_file, &config.key_file) {
            Ok(files) if files == seen => continue,
            Ok(files) => {
                let key = files.certified_key();
                seen = files;
                key
            }
            Err(problem) => Err(problem),
        };
        match outcome {
            Ok(key) => {
                current.0.store(key);
                reported = None;
                tracing::info!(cert_file = %config.cert_file.display(), "TLS certificate reloaded");
            }
            Err((field, problem)) => {
                let line = format!("server.tls.{field}: {problem}");
                if reported.as_ref() != Some(&line) {
                    tracing::warn!(problem = %line, "TLS certificate not reloaded; the one in force keeps serving");
                    reported = Some(line);
                }
            }
        }
    }
}
