//! The on-disk credential cache, so that docker's many `get` calls during one build make one
//! request to the broker.
//!
//! It holds live registry passwords. Each entry is one JSON file named by a digest of what
//! it answers (broker, caller, host, narrowing), so concurrent invocations for different
//! hosts never write the same file; a write goes through [`crate::private_file`], so a
//! reader sees the old entry or the new one, never half of one. Files are mode
//! 0600 in a directory of mode 0700; a directory that others can enter is refused, not
//! silently tightened.

use std::fs::{self, DirBuilder};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Narrowing;
use crate::credential::Credential;
use crate::error::Error;
use crate::registry::EcrHost;

/// What one cache entry answers for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CacheKey {
    /// The entry's file name, without `.json`.
    stem: String,
    host: String,
}

impl CacheKey {
    /// The key of `host`'s credential from the broker at `endpoint` for the caller whose
    /// claims digest to `caller`, narrowed by `narrowing`.
    pub(crate) fn new(endpoint: &Url, caller: &str, host: &EcrHost, narrowing: &Narrowing) -> Self {
        let mut hash = Sha256::new();
        // Each part ends in NUL, which none of them can contain, so no two keys run together.
        let repositories = narrowing.repositories.as_ref().map(|r| r.join(","));
        let duration = narrowing.duration_seconds.map(|d| d.to_string());
        for part in [
            "v1",
            endpoint.as_str(),
            caller,
            host.as_str(),
            narrowing.access.as_deref().unwrap_or("-"),
            repositories.as_deref().unwrap_or("-"),
            duration.as_deref().unwrap_or("-"),
        ] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        Self {
            stem: hex::encode(hash.finalize()),
            host: host.to_string(),
        }
    }
}

/// One entry as stored.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    host: String,
    username: String,
    password: String,
    expires_at: DateTime<Utc>,
    refresh_at: DateTime<Utc>,
}

/// The cache in one directory.
pub(crate) struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// The cache in `dir`, created on first write.
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The entry for `key` if it is still fresh at `now`.
    pub(crate) fn get(
        &self,
        key: &CacheKey,
        now: DateTime<Utc>,
    ) -> Result<Option<Credential>, Error> {
        if !self.private_dir_exists()? {
            return Ok(None);
        }
        Ok(read_entry(&self.path(&key.stem))
            .filter(|entry| entry.host == key.host && entry.refresh_at > now)
            .map(|entry| Credential {
                username: entry.username,
                password: SecretString::from(entry.password),
                expires_at: entry.expires_at,
                refresh_at: entry.refresh_at,
            }))
    }

    /// Stores `credential` under `key` if it is still fresh at `now`, and removes entries
    /// that have expired: a password nobody can use should not linger on disk.
    pub(crate) fn put(
        &self,
        key: &CacheKey,
        credential: &Credential,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        if credential.refresh_at <= now {
            return Ok(());
        }
        self.create_private_dir()?;
        let entry = Entry {
            host: key.host.clone(),
            username: credential.username.clone(),
            password: credential.password.expose_secret().to_owned(),
            expires_at: credential.expires_at,
            refresh_at: credential.refresh_at,
        };
        let json = serde_json::to_vec(&entry).expect("an entry serialises");
        let target = self.path(&key.stem);
        crate::private_file::replace(&target, &json)
            .map_err(|e| Error::Cache(format!("writing {}: {e}", target.display())))?;
        for (path, entry) in self.entries()? {
            if entry.expires_at <= now {
                fs::remove_file(path).ok();
            }
        }
        Ok(())
    }

    /// The hosts with a fresh entry at `now`, each once, sorted.
    pub(crate) fn hosts(&self, now: DateTime<Utc>) -> Result<Vec<String>, Error> {
        let mut hosts: Vec<String> = self
            .entries()?
            .into_iter()
            .filter(|(_, entry)| entry.refresh_at > now)
            .map(|(_, entry)| entry.host)
            .collect();
        hosts.sort();
        hosts.dedup();
        Ok(hosts)
    }

    /// Removes every entry for `host`, whoever the caller and whatever the narrowing;
    /// returns how many there were.
    pub(crate) fn erase(&self, host: &EcrHost) -> Result<usize, Error> {
        let mut erased = 0;
        for (path, entry) in self.entries()? {
            if entry.host == host.as_str() {
                fs::remove_file(&path)
                    .map_err(|e| Error::Cache(format!("removing {}: {e}", path.display())))?;
                erased += 1;
            }
        }
        Ok(erased)
    }

    fn path(&self, stem: &str) -> PathBuf {
        self.dir.join(format!("{stem}.json"))
    }

    /// Every readable entry; none when the directory does not exist yet.
    fn entries(&self) -> Result<Vec<(PathBuf, Entry)>, Error> {
        if !self.private_dir_exists()? {
            return Ok(Vec::new());
        }
        let listing = fs::read_dir(&self.dir)
            .map_err(|e| Error::Cache(format!("listing {}: {e}", self.dir.display())))?;
        Ok(listing
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .filter_map(|p| read_entry(&p).map(|entry| (p, entry)))
            .collect())
    }

    fn create_private_dir(&self) -> Result<(), Error> {
        if self.private_dir_exists()? {
            return Ok(());
        }
        if let Some(parent) = self.dir.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| Error::Cache(format!("creating {}: {e}", parent.display())))?;
        }
        match DirBuilder::new().mode(0o700).create(&self.dir) {
            Ok(()) => {}
            // Another invocation made it meanwhile: it is checked below like any other.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(Error::Cache(format!(
                    "creating {}: {e}",
                    self.dir.display()
                )));
            }
        }
        if self.private_dir_exists()? {
            Ok(())
        } else {
            Err(Error::Cache(format!(
                "{} was not created",
                self.dir.display()
            )))
        }
    }

    /// Whether the directory exists; an error if it is a link, not a directory, or open
    /// to other users.
    fn private_dir_exists(&self) -> Result<bool, Error> {
        let metadata = match fs::symlink_metadata(&self.dir) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::Cache(format!("{}: {e}", self.dir.display()))),
        };
        if !metadata.is_dir() {
            return Err(Error::Cache(format!(
                "{} is not a directory (a symbolic link is refused)",
                self.dir.display()
            )));
        }
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::Cache(format!(
                "{} has mode {mode:04o}; it holds passwords, so it must be 0700",
                self.dir.display()
            )));
        }
        Ok(true)
    }
}

/// An entry, or `None` if the file is unreadable, not ours, or readable by others.
fn read_entry(path: &Path) -> Option<Entry> {
    let metadata = fs::symlink_metadata(path).ok()?;
    if !metadata.is_file() || metadata.permissions().mode() & 0o077 != 0 {
        return None;
    }
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

#[cfg(test)]
mod tests;
