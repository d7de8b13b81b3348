//! The kill switch: callers refused after their token is verified and before any rule may
//! grant them anything, by `[[deny]]` in the config and by the stored deny list that deny
//! list admins change through `/v1/admin/deny`. This module owns all of it: the entry as
//! written, from either source ([`EntrySpec`], [`AddRequest`]), the compiled lists
//! ([`DenyList`]), the stored list in Postgres with its poller ([`DenyStore`]), and how
//! recently that list must have been read to be trusted ([`DenyLists::denial`]).
//! *It imports neither app, routes nor config: the config calls its parser, and the poller
//! is handed the store and a way to install what it reads.*

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::auth::Caller;
use crate::credentials::CredentialSource;
use crate::policy::InvalidPattern;

mod admission;
mod entry;
mod matcher;
mod resolve;
mod store;

pub(crate) use admission::Admission;
pub(crate) use entry::{AddRequest, CheckedEntry, EntrySpec};
pub(crate) use matcher::{DenyEntry, DenyList, DenySource};
pub(crate) use resolve::StoredDeny;
pub(crate) use store::{DenyStore, NewEntry, Remover, StoredEntry, spawn_poller};

/// The names deny entries may refer to: the running config's issuers and rules.
#[derive(Debug, Default)]
pub(crate) struct Names {
    /// Issuers' configured names, each with the `iss` of its tokens.
    pub issuers: BTreeMap<String, String>,
    /// Rules' names.
    pub rules: Vec<String>,
}

impl Names {
    /// The configured name of the issuer whose tokens carry `iss`.
    pub(crate) fn issuer_with_iss(&self, iss: &str) -> Option<String> {
        self.issuers
            .iter()
            .find(|(_, i)| *i == iss)
            .map(|(name, _)| name.clone())
    }
}

/// The stored deny list is not to be trusted: this replica has not read it yet, or not
/// within `[admin] deny_max_staleness_secs`, so an entry added since may be missing from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StaleDenyList {
    /// How long ago it was last read; `None`: never.
    pub age: Option<Duration>,
    /// `[admin] deny_max_staleness_secs`.
    pub bound: Duration,
}

impl std::fmt::Display for StaleDenyList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.age {
            None => f.write_str("the stored deny list has not been read yet"),
            Some(age) => write!(
                f,
                "the stored deny list was last read {} s ago, more than deny_max_staleness_secs ({} s)",
                age.as_secs(),
                self.bound.as_secs()
            ),
        }
    }
}

impl std::error::Error for StaleDenyList {}

/// Both deny lists as one snapshot of the config holds them: the config's `[[deny]]`, and
/// the stored entries in force, compiled against the same config's names, with the time
/// they were last read whole. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct DenyLists {
    config: Arc<DenyList>,
    stored: Arc<StoredDeny>,
    /// When the stored list was last read whole; `None` until it has been.
    stored_read_at: Option<Instant>,
    max_staleness: Duration,
    /// The configured issuers' and rules' names, which entries may name.
    pub names: Arc<Names>,
}

impl DenyLists {
    /// The config's entries compiled, under a config with these `names`; the stored list
    /// starts unread (a reload carries the one in force over: [`DenyLists::carry_stored`]).
    pub(crate) fn new(
        entries: &[EntrySpec],
        names: Names,
        max_staleness: Duration,
    ) -> Result<Self, InvalidPattern> {
        Ok(Self {
            config: Arc::new(DenyList::compile(entries)?),
            stored: Arc::default(),
            stored_read_at: None,
            max_staleness,
            names: Arc::new(names),
        })
    }

    /// The deny entry that refuses `caller`, whose first matching rule is `rule`, if any:
    /// the config's first, then the stored ones. A stored list too old to trust decides
    /// nothing but that the caller cannot be cleared.
    pub(crate) fn denial(
        &self,
        caller: &Caller,
        rule: Option<&str>,
    ) -> Result<Option<&DenyEntry>, StaleDenyList> {
        if let Some(entry) = self.config.first_denial(caller, rule) {
            return Ok(Some(entry));
        }
        self.stored_age()?;
        Ok(self.stored.list.first_denial(caller, rule))
    }

    /// How long ago the stored deny list was read, when that is recent enough to trust it.
    pub(crate) fn stored_age(&self) -> Result<Duration, StaleDenyList> {
        let age = self.stored_read_at.map(|at| at.elapsed());
        match age {
            Some(age) if age <= self.max_staleness => Ok(age),
            _ => Err(StaleDenyList {
                age,
                bound: self.max_staleness,
            }),
        }
    }

    /// When the stored list was last read whole, if it has been.
    pub(crate) fn stored_read_at(&self) -> Option<Instant> {
        self.stored_read_at
    }

    /// Whether the stored entry `id` is in force (it might not compile).
    pub(crate) fn stored_in_force(&self, id: i64) -> bool {
        self.stored
            .list
            .sources()
            .any(|s| s == DenySource::Stored(id))
    }

    /// These lists (of a reloaded config) with the stored entries in force in `running`,
    /// compiled against these lists' names: what a reload installs.
    pub(crate) fn carry_stored(self, running: &Self) -> Self {
        Self {
            stored: Arc::new(StoredDeny::compile(
                running.stored.rows().to_vec(),
                &self.names,
            )),
            stored_read_at: running.stored_read_at,
            ..self
        }
    }

    /// These lists with `rows` as the stored entries, read whole at `read_at` if they are a
    /// read; and whether the entries changed (they are compiled again only then).
    pub(crate) fn with_stored(
        &self,
        rows: &[StoredEntry],
        read_at: Option<Instant>,
    ) -> (Self, bool) {
        let changed = !self
            .stored
            .rows()
            .iter()
            .map(|r| r.id)
            .eq(rows.iter().map(|r| r.id));
        let stored = if changed {
            Arc::new(StoredDeny::compile(rows.to_vec(), &self.names))
        } else {
            Arc::clone(&self.stored)
        };
        let lists = Self {
            stored,
            stored_read_at: read_at.or(self.stored_read_at),
            ..self.clone()
        };
        (lists, changed)
    }

    /// Drops the cached credentials that either list reaches; returns how many.
    pub(crate) fn forget_reached(&self, credentials: &CredentialSource) -> usize {
        credentials.forget_owned_by(|owner| self.config.covers(owner))
            + self.forget_reached_by_stored(credentials)
    }

    /// Drops the cached credentials that the stored list reaches; returns how many.
    pub(crate) fn forget_reached_by_stored(&self, credentials: &CredentialSource) -> usize {
        credentials.forget_owned_by(|owner| self.stored.list.covers(owner))
    }
}
