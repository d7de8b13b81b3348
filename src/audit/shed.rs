//! Refusals shed under pressure, counted so that the log still says how many there were,
//! from which client addresses and why: one aggregate row per report interval instead of
//! one row each.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::AuditRecord;
use super::chain::to_micros;
use super::shown::instant;

/// Client addresses named in an aggregate, the busiest first; the rest are only counted.
const TOP_CLIENTS: usize = 10;

/// Reasons named in an aggregate; the rest are counted under `other`.
const TOP_REASONS: usize = 20;

/// Distinct addresses tracked between two reports, so a flood from a million addresses
/// cannot grow the tally without bound; beyond it they are counted only in the total.
const MAX_TRACKED_CLIENTS: usize = 10_000;

/// The `reason` of an aggregate row.
pub(crate) const SHED_REASON: &str = "shed";

/// The refusals of one interval that were not written one by one: the `shed` column of an
/// aggregate row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ShedSummary {
    /// How many refusals were shed.
    pub count: u64,
    /// When the first of them was shed.
    #[serde(serialize_with = "micros")]
    pub since: DateTime<Utc>,
    /// When the last of them was shed.
    #[serde(serialize_with = "micros")]
    pub until: DateTime<Utc>,
    /// The busiest client addresses and how many each sent, most first.
    pub clients: Vec<ShedCount>,
    /// Reasons and how many of each, most first; `other` holds the rest.
    pub reasons: Vec<ShedCount>,
}

/// Always six decimals, as the audit log's other times are shown, in the stored row and in
/// the API alike.
fn micros<S: serde::Serializer>(time: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&instant(*time))
}

/// A client address or a reason, and how many refusals had it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ShedCount {
    /// The address or the reason.
    pub key: String,
    /// How many.
    pub count: u64,
}

/// Refusals shed since the last report.
#[derive(Debug, Default)]
pub(super) struct ShedTally(Mutex<Option<Tally>>);

#[derive(Debug)]
struct Tally {
    count: u64,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    clients: HashMap<IpAddr, u64>,
    reasons: HashMap<String, u64>,
}

impl ShedTally {
    /// Counts one shed refusal.
    pub(super) fn add(&self, record: &AuditRecord) {
        let mut tally = self
            .0
            .lock()
            .expect("never poisoned: no panics under the lock");
        let now = Utc::now();
        let tally = tally.get_or_insert_with(|| Tally {
            count: 0,
            since: now,
            until: now,
            clients: HashMap::new(),
            reasons: HashMap::new(),
        });
        tally.count += 1;
        tally.until = now;
        if let Some(addr) = record.client_addr
            && (tally.clients.len() < MAX_TRACKED_CLIENTS || tally.clients.contains_key(&addr))
        {
            *tally.clients.entry(addr).or_default() += 1;
        }
        *tally.reasons.entry(record.reason.clone()).or_default() += 1;
    }

    /// The aggregate row of everything shed since the last call, if anything was.
    pub(super) fn take_report(&self) -> Option<AuditRecord> {
        let tally = self.0.lock().expect("never poisoned").take()?;
        let summary = ShedSummary {
            count: tally.count,
            since: to_micros(tally.since),
            until: to_micros(tally.until),
            clients: top(
                tally.clients.into_iter().map(|(a, n)| (a.to_string(), n)),
                TOP_CLIENTS,
                None,
            ),
            reasons: top(tally.reasons.into_iter(), TOP_REASONS, Some("other")),
        };
        Some(AuditRecord::shed(summary))
    }

    /// Puts back a report that could not be written, to go into the next one.
    pub(super) fn restore(&self, summary: &ShedSummary) {
        let mut guard = self.0.lock().expect("never poisoned");
        let tally = guard.get_or_insert_with(|| Tally {
            count: 0,
            since: summary.since,
            until: summary.until,
            clients: HashMap::new(),
            reasons: HashMap::new(),
        });
        tally.count += summary.count;
        tally.since = tally.since.min(summary.since);
        tally.until = tally.until.max(summary.until);
        for client in &summary.clients {
            if let Ok(addr) = client.key.parse() {
                *tally.clients.entry(addr).or_default() += client.count;
            }
        }
        for reason in &summary.reasons {
            *tally.reasons.entry(reason.key.clone()).or_default() += reason.count;
        }
    }
}

/// The `n` largest counts, most first (ties by key, so the row is the same however the map
/// iterated); with `rest`, the others summed under that key.
fn top(
    counts: impl Iterator<Item = (String, u64)>,
    n: usize,
    rest: Option<&str>,
) -> Vec<ShedCount> {
    let mut counts: Vec<ShedCount> = counts
        .map(|(key, count)| ShedCount { key, count })
        .collect();
    counts.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    let others: u64 = counts.iter().skip(n).map(|c| c.count).sum();
    counts.truncate(n);
    if let Some(rest) = rest
        && others > 0
    {
        counts.push(ShedCount {
            key: rest.to_owned(),
            count: others,
        });
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(addr: &str, reason: &str) -> AuditRecord {
        let mut record = AuditRecord::start("r", Some(addr.parse().unwrap()), None);
        record.reason = reason.to_owned();
        record
    }

    #[test]
    fn a_report_counts_every_shed_refusal_and_names_the_busiest_clients() {
        let tally = ShedTally::default();
        for i in 0..15 {
            for _ in 0..=i {
                tally.add(&refusal(&format!("192.0.2.{i}"), "invalid_token:missing"));
            }
        }
        tally.add(&refusal("192.0.2.1", "rate_limited"));

        let report = tally.take_report().expect("something was shed");
        let summary = report.shed.as_ref().unwrap();

        assert_eq!(summary.count, 121);
        assert_eq!(summary.clients.len(), TOP_CLIENTS);
        assert_eq!(summary.clients[0].key, "192.0.2.14");
        assert_eq!(summary.clients[0].count, 15);
        assert_eq!(
            summary.reasons,
            [
                ShedCount {
                    key: "invalid_token:missing".into(),
                    count: 120
                },
                ShedCount {
                    key: "rate_limited".into(),
                    count: 1
                },
            ]
        );
        assert_eq!(report.reason, SHED_REASON);
        assert!(tally.take_report().is_none(), "a report empties the tally");
    }

    #[test]
    fn a_restored_report_goes_into_the_next_one() {
        let tally = ShedTally::default();
        tally.add(&refusal("192.0.2.1", "rate_limited"));
        let report = tally.take_report().unwrap();
        tally.add(&refusal("192.0.2.1", "rate_limited"));

        tally.restore(report.shed.as_ref().unwrap());

        let next = tally.take_report().unwrap();
        let summary = next.shed.as_ref().unwrap();
        assert_eq!(summary.count, 2);
        assert_eq!(summary.clients[0].count, 2);
    }

    #[test]
    fn reasons_beyond_the_top_are_summed_as_other() {
        let counts = (0..25).map(|i| (format!("r{i:02}"), 1));
        let top = top(counts, TOP_REASONS, Some("other"));
        assert_eq!(top.len(), TOP_REASONS + 1);
        assert_eq!(
            top.last().unwrap(),
            &ShedCount {
                key: "other".into(),
                count: 5
            }
        );
    }
}
