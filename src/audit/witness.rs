//! The chain's head, published in the service's log at an interval, so that the log
//! pipeline keeps a witness of how far the chain reached: rows later deleted from the end,
//! or lost in a failover, are then caught by `audit verify --expect`.

use std::time::Duration;

use sqlx::PgPool;
use tokio::task::JoinHandle;

use super::chain::{ChainEntry, ChainKey};
use super::store::{ChainHead, chain_head};

/// Logs the chain's head (`head = ID:HASH`, the form `--expect` takes) every
/// `interval`, until aborted. A failed read is logged and tried again next time.
pub(crate) fn spawn_head_log(pool: PgPool, key: ChainKey, interval: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let head = async {
                let mut conn = pool.acquire().await?;
                chain_head(&mut conn, &key).await
            };
            match head.await {
                Ok(ChainHead { id: 0, .. }) => {
                    tracing::info!("audit chain head: the chain is empty")
                }
                Ok(ChainHead { id, hash, .. }) => tracing::info!(
                    head = %ChainEntry { id, hash },
                    "audit chain head"
                ),
                Err(error) => tracing::warn!(%error, "could not read the audit chain head"),
            }
        }
    })
}
