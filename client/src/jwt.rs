//! Where the caller's JWT comes from: the environment, a file or a command. It is read
//! afresh on every call (kubelet rotates a projected service-account token in place) and
//! held only as a [`SecretString`], so it cannot reach a log by accident.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::Error;

/// A JWT is a few kilobytes; anything far larger is not one.
const MAX_JWT_BYTES: usize = 64 * 1024;

/// Where the JWT comes from.
pub(crate) enum JwtSource {
    /// The token itself, from `ECR_TOKEN_BROKER_JWT`.
    Value(SecretString),
    /// A file holding the token.
    File(PathBuf),
    /// A shell command that prints the token.
    Command(String),
}

impl std::fmt::Debug for JwtSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Value(_) => f.write_str("Value([redacted])"),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            // A command line may embed a secret of its own.
            Self::Command(_) => f.write_str("Command([redacted])"),
        }
    }
}

impl JwtSource {
    /// The current token, waiting at most `timeout` for a command.
    pub(crate) async fn read(&self, timeout: Duration) -> Result<SecretString, Error> {
        let token = match self {
            Self::Value(token) => token.expose_secret().to_owned(),
            Self::File(path) => std::fs::read_to_string(path)
                .map_err(|e| Error::Jwt(format!("{}: {e}", path.display())))?,
            Self::Command(command) => run(command, timeout).await?,
        };
        let token = token.trim();
        if token.is_empty() {
            return Err(Error::Jwt("the token is empty".to_owned()));
        }
        if token.len() > MAX_JWT_BYTES || token.chars().any(|c| c.is_whitespace()) {
            return Err(Error::Jwt(
                "this is not a JWT (too long, or spread over several words)".to_owned(),
            ));
        }
        Ok(SecretString::from(token.to_owned()))
    }
}

/// Runs `command` with `sh -c`; its stdout is the token and its stderr passes through (it is
/// the command's own diagnostics, not ours to judge).
async fn run(command: &str, timeout: Duration) -> Result<String, Error> {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Jwt(format!("starting the token command: {e}")))?;
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| {
            Error::Jwt(format!(
                "the token command did not finish within {}s",
                timeout.as_secs()
            ))
        })?
        .map_err(|e| Error::Jwt(format!("running the token command: {e}")))?;
    if !output.status.success() {
        return Err(Error::Jwt(format!(
            "the token command failed ({})",
            output.status
        )));
    }
    String::from_utf8(output.stdout)
        .map_err(|_| Error::Jwt("the token command printed something other than text".to_owned()))
}

/// A digest of who the token says its caller is: every claim but those that change from
/// one token to the next of the same caller (times and the token's own id). Credentials
/// are cached under it, so a second caller sharing the machine's user and cache (two CI
/// jobs on one runner) never receives the first one's credential, while a rotated token of
/// the same caller still finds it. The claims are not verified here; the broker verifies
/// them whenever a credential is issued.
pub(crate) fn caller_digest(token: &SecretString) -> String {
    let token = token.expose_secret();
    let claims = token
        .split('.')
        .nth(1)
        .and_then(|payload| URL_SAFE_NO_PAD.decode(payload).ok())
        .and_then(|json| serde_json::from_slice::<Value>(&json).ok());
    let mut hash = Sha256::new();
    match claims {
        Some(Value::Object(mut claims)) => {
            for varying in ["exp", "iat", "nbf", "jti"] {
                claims.remove(varying);
            }
            // Sorted keys, so the digest does not depend on the issuer's claim order.
            let mut claims: Vec<(String, Value)> = claims.into_iter().collect();
            claims.sort_by(|a, b| a.0.cmp(&b.0));
            hash.update(b"claims\0");
            hash.update(serde_json::to_vec(&claims).expect("JSON values serialise"));
        }
        // Not a JWT we can read: only the very same token may reuse its credential.
        _ => {
            hash.update(b"token\0");
            hash.update(token.as_bytes());
        }
    }
    hex::encode(hash.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: Value) -> SecretString {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        SecretString::from(format!("eyJhbGciOiJSUzI1NiJ9.{payload}.c2lnbmF0dXJl"))
    }

    #[test]
    fn a_rotated_token_of_the_same_caller_has_the_same_digest() {
        let first = jwt(serde_json::json!({
            "iss": "https://ci", "sub": "repo:acme/api", "aud": "b", "iat": 1, "exp": 2,
            "nbf": 1, "jti": "a"
        }));
        let rotated = jwt(serde_json::json!({
            "sub": "repo:acme/api", "iss": "https://ci", "aud": "b", "iat": 7, "exp": 9,
            "jti": "b"
        }));
        assert_eq!(caller_digest(&first), caller_digest(&rotated));
    }

    #[test]
    fn another_caller_or_claim_has_another_digest() {
        let a = jwt(serde_json::json!({"iss": "https://ci", "sub": "repo:acme/api"}));
        let b = jwt(serde_json::json!({"iss": "https://ci", "sub": "repo:acme/web"}));
        let c = jwt(serde_json::json!({"iss": "https://ci", "sub": "repo:acme/api", "ref": "x"}));
        assert_ne!(caller_digest(&a), caller_digest(&b));
        assert_ne!(caller_digest(&a), caller_digest(&c));
        let opaque = SecretString::from("not-a-jwt".to_owned());
        let other = SecretString::from("not-a-jwt-either".to_owned());
        assert_ne!(caller_digest(&opaque), caller_digest(&other));
    }

    #[tokio::test]
    async fn each_source_yields_the_trimmed_token() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "file.token.value\n").unwrap();
        let t = Duration::from_secs(10);
        let read = |source: JwtSource| async move {
            source.read(t).await.map(|s| s.expose_secret().to_owned())
        };
        assert_eq!(
            read(JwtSource::Value(" a.b.c ".to_owned().into()))
                .await
                .unwrap(),
            "a.b.c"
        );
        assert_eq!(
            read(JwtSource::File(file.clone())).await.unwrap(),
            "file.token.value"
        );
        assert_eq!(
            read(JwtSource::Command("echo cmd.token.value".to_owned()))
                .await
                .unwrap(),
            "cmd.token.value"
        );
        // Read again each time: a rotated file is seen at once.
        std::fs::write(&file, "rotated.token.value").unwrap();
        assert_eq!(
            read(JwtSource::File(file)).await.unwrap(),
            "rotated.token.value"
        );
    }

    #[tokio::test]
    async fn failures_name_the_source_and_not_the_token() {
        let t = Duration::from_secs(10);
        let message = |r: Result<SecretString, Error>| r.err().unwrap().to_string();
        assert!(message(JwtSource::Command("exit 3".to_owned()).read(t).await).contains("failed"));
        assert!(
            message(
                JwtSource::Command("sleep 5".to_owned())
                    .read(Duration::from_millis(100))
                    .await
            )
            .contains("did not finish")
        );
        assert!(
            message(JwtSource::File("/nonexistent/token".into()).read(t).await)
                .contains("/nonexistent/token")
        );
        let two_words = JwtSource::Value("secret words".to_owned().into());
        let m = message(two_words.read(t).await);
        assert!(m.contains("not a JWT") && !m.contains("secret"), "{m}");
        assert!(message(JwtSource::Value("  ".to_owned().into()).read(t).await).contains("empty"));
    }
}
