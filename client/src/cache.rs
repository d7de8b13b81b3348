//! The on-disk credential cache, so that docker's many `get` calls during one build make one
//! request to the broker.
//!
//! It holds live registry passwords. Each entry is one JSON file named by a digest of what
//! it answers (broker, caller, host, narrowing), so concurrent invocations for different
//! hosts never write the same file; a write goes to a private temporary file renamed into
//! place, so a reader sees the old entry or the new one, never half of one. Files are mode
//! 0600 in a directory of mode 0700; a directory that others can enter is refused, not
//! silently tightened.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
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
        let temporary = self.dir.join(format!(
            ".{}.{}.{:016x}.tmp",
            key.stem,
            std::process::id(),
            fastrand::u64(..)
        ));
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .and_then(|mut file| {
                file.write_all(&json)?;
                file.sync_all()
            })
            .and_then(|()| fs::rename(&temporary, &target));
        if let Err(e) = written {
            fs::remove_file(&temporary).ok();
            return Err(Error::Cache(format!("writing {}: {e}", target.display())));
        }
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
mod tests {
    use super::*;
    use crate::credential::tests::{at, credential};

    fn host(id: &str) -> EcrHost {
        EcrHost::from_server_url(&format!("{id}.dkr.ecr.eu-west-1.amazonaws.com")).unwrap()
    }

    fn key(caller: &str, host: &EcrHost, narrowing: &Narrowing) -> CacheKey {
        let endpoint = Url::parse("https://broker.example.com/v1/ecr/authorization-token").unwrap();
        CacheKey::new(&endpoint, caller, host, narrowing)
    }

    const NOW: &str = "2026-11-23T12:00:00Z";

    /// Stores a credential received at [`NOW`].
    fn store(cache: &Cache, key: &CacheKey, password: &str, expires_at: &str) {
        cache
            .put(key, &credential(password, expires_at, at(NOW)), at(NOW))
            .unwrap();
    }

    #[test]
    fn a_fresh_entry_is_served_until_half_its_life() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("ecr-token-broker"));
        let h = host("111122223333");
        let k = key("caller-a", &h, &Narrowing::default());
        assert!(cache.get(&k, at(NOW)).unwrap().is_none());
        store(&cache, &k, "pw-1", "2026-11-23T12:30:00Z");
        let hit = cache.get(&k, at("2026-11-23T12:14:59Z")).unwrap().unwrap();
        assert_eq!(hit.password.expose_secret(), "pw-1");
        assert_eq!(hit.refresh_at, at("2026-11-23T12:15:00Z"));
        assert!(cache.get(&k, at("2026-11-23T12:15:00Z")).unwrap().is_none());
    }

    #[test]
    fn files_are_private_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("nested/ecr-token-broker");
        let cache = Cache::new(cache_dir.clone());
        let k = key("caller-a", &host("111122223333"), &Narrowing::default());
        store(&cache, &k, "pw-1", "2026-11-23T12:30:00Z");
        store(&cache, &k, "pw-2", "2026-11-23T12:40:00Z");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&cache_dir), 0o700);
        let files: Vec<PathBuf> = fs::read_dir(&cache_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "no temporary file is left: {files:?}");
        assert_eq!(mode(&files[0]), 0o600);
        let hit = cache.get(&k, at(NOW)).unwrap().unwrap();
        assert_eq!(hit.password.expose_secret(), "pw-2");
    }

    #[test]
    fn callers_and_narrowings_do_not_share_entries() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("c"));
        let h = host("111122223333");
        let push = Narrowing {
            access: Some("push".to_owned()),
            ..Narrowing::default()
        };
        let k = key("caller-a", &h, &Narrowing::default());
        store(&cache, &k, "pw", "2026-11-23T12:30:00Z");
        for other in [
            key("caller-b", &h, &Narrowing::default()),
            key("caller-a", &host("444455556666"), &Narrowing::default()),
            key("caller-a", &h, &push),
        ] {
            assert_ne!(other, k);
            assert!(cache.get(&other, at(NOW)).unwrap().is_none());
        }
    }

    #[test]
    fn an_open_directory_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).unwrap();
        let cache = Cache::new(open.clone());
        let k = key("caller-a", &host("111122223333"), &Narrowing::default());
        let error = cache
            .put(
                &k,
                &credential("pw", "2026-11-23T12:30:00Z", at(NOW)),
                at(NOW),
            )
            .unwrap_err()
            .to_string();
        assert!(error.contains("mode 0755"), "{error}");
        assert!(!error.contains("pw\""), "{error}");
        assert_eq!(fs::read_dir(&open).unwrap().count(), 0);
        assert_eq!(
            fs::metadata(&open).unwrap().permissions().mode() & 0o777,
            0o755
        );
    }

    #[test]
    fn list_and_erase_by_host_and_expired_entries_go() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("c"));
        let (a, b) = (host("111122223333"), host("444455556666"));
        let pull = Narrowing::default();
        let push = Narrowing {
            access: Some("push".to_owned()),
            ..Narrowing::default()
        };
        let fresh = credential("pw", "2026-11-23T12:30:00Z", at(NOW));
        cache.put(&key("x", &a, &pull), &fresh, at(NOW)).unwrap();
        cache.put(&key("x", &a, &push), &fresh, at(NOW)).unwrap();
        cache.put(&key("x", &b, &pull), &fresh, at(NOW)).unwrap();
        assert_eq!(
            cache.hosts(at(NOW)).unwrap(),
            vec![a.to_string(), b.to_string()]
        );
        assert_eq!(cache.erase(&a).unwrap(), 2);
        assert_eq!(cache.hosts(at(NOW)).unwrap(), vec![b.to_string()]);
        // An hour on, the old entry has expired: the next write removes it.
        let later = at("2026-11-23T13:00:00Z");
        let c = credential("pw", "2026-11-23T13:30:00Z", later);
        cache.put(&key("y", &a, &pull), &c, later).unwrap();
        assert_eq!(cache.hosts(later).unwrap(), vec![a.to_string()]);
        assert_eq!(fs::read_dir(dir.path().join("c")).unwrap().count(), 1);
    }

    #[test]
    fn a_credential_without_life_left_is_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("c"));
        let k = key("x", &host("111122223333"), &Narrowing::default());
        store(&cache, &k, "pw", "2015-01-01T00:00:00Z");
        assert!(!dir.path().join("c").exists());
    }
}
