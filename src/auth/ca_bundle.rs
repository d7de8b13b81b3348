//! An issuer's private certificate authorities (`[[issuers]] ca_file`), read once when the
//! config loads. It trusts nothing by itself: `jwks::key_client` decides what the
//! certificates vouch for.

use std::path::{Path, PathBuf};

/// The PEM certificates of one `ca_file`, read and checked when the config loads: a file that
/// is missing or holds no certificate stops the config, rather than surfacing later as key
/// fetches that fail. Compared by content, so a reload that finds the same path with new
/// certificates builds the issuer's HTTP client again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CaBundle {
    path: PathBuf,
    pem: Vec<u8>,
}

impl CaBundle {
    /// Reads `path`; the error says what is wrong with it, naming the file.
    pub(crate) fn read(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        let pem = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
        let bundle = Self {
            path: path.to_owned(),
            pem,
        };
        match bundle.certificates() {
            Ok(certificates) if !certificates.is_empty() => Ok(bundle),
            Ok(_) => Err(format!("{shown} holds no PEM certificate")),
            Err(e) => Err(format!("{shown} is not a PEM certificate bundle: {e}")),
        }
    }

    /// The file the certificates came from.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The certificates, as the HTTP client takes them.
    pub(crate) fn certificates(&self) -> Result<Vec<reqwest::Certificate>, reqwest::Error> {
        reqwest::Certificate::from_pem_bundle(&self.pem)
    }
}
