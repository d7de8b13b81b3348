//! The on-disk cache: entries served until half their life, private files replaced whole, no
//! sharing across callers or narrowings, an open directory refused, and erasing by host.

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
