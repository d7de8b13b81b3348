//! How a credential is obtained: from the cache while it is fresh, from the broker otherwise
//! (and then cached). Speaks to the broker and the cache only through their modules.

use chrono::Utc;

use crate::broker::Broker;
use crate::cache::{Cache, CacheKey};
use crate::config::Settings;
use crate::credential::Credential;
use crate::error::Error;
use crate::jwt::{JwtSource, caller_digest};
use crate::registry::EcrHost;

/// The credential for `host` as the caller of the JWT from `source`, from the cache if it
/// holds a fresh one for this caller and narrowing, else from the broker (and then cached).
pub(crate) async fn credential(
    settings: &Settings,
    source: &JwtSource,
    host: &EcrHost,
) -> Result<Credential, Error> {
    let jwt = source.read(settings.timeout).await?;
    let mut cache = settings.cache_dir.clone().map(Cache::new);
    let key = CacheKey::new(
        &settings.endpoint,
        &caller_digest(&jwt),
        host,
        &settings.narrowing,
    );
    if let Some(usable) = &cache {
        match usable.get(&key, Utc::now()) {
            Ok(Some(credential)) => return Ok(credential),
            Ok(None) => {}
            // Unusable (say, open to other users): warned of once, then left alone.
            Err(e) => {
                crate::warn(&e);
                cache = None;
            }
        }
    }
    let credential = Broker::new(settings)?
        .issue(&jwt, host, &settings.narrowing)
        .await?;
    if let Some(cache) = &cache
        && let Err(e) = cache.put(&key, &credential, Utc::now())
    {
        crate::warn(&e);
    }
    Ok(credential)
}
