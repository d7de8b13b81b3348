//! Stored entries resolved against the running config: an entry is bound to its issuer's
//! `iss`, which a rename does not change, and a field the config cannot resolve (an issuer
//! or rule it no longer has) is left out of the match, so that the entry denies more, never
//! less.

use super::{DenyEntry, DenyList, DenySource, EntrySpec, Names, StoredEntry};

impl StoredEntry {
    /// What it matches under the config whose names are `names`, as an [`EntrySpec`], and which of its fields that config cannot resolve (an issuer or rule it no
    /// longer has): those are left out of the match, so that the entry denies more.
    pub(crate) fn matcher(&self, names: &Names) -> (EntrySpec, Vec<&'static str>) {
        let issuer = match &self.iss {
            Some(iss) => names.issuer_with_iss(iss),
            None => names
                .issuers
                .contains_key(&self.issuer)
                .then(|| self.issuer.clone()),
        };
        let rule = self.rule.clone().filter(|rule| names.rules.contains(rule));
        let mut unresolved = Vec::new();
        if issuer.is_none() {
            unresolved.push("issuer");
        }
        if self.rule.is_some() && rule.is_none() {
            unresolved.push("rule");
        }
        let matcher = EntrySpec {
            issuer,
            subject: self.subject.as_ref().map(|s| s.0.clone()),
            rule,
            claims: self.claims.0.clone(),
            reason: Some(self.reason.clone()),
        };
        (matcher, unresolved)
    }
}

/// The stored entries in force on this replica, compiled against its config.
#[derive(Debug, Default)]
pub(crate) struct StoredDeny {
    rows: Vec<StoredEntry>,
    /// The entries that compile, in `rows`' order.
    pub list: DenyList,
}

impl StoredDeny {
    /// Compiles `rows` against the config whose names are `names`. An entry with a field
    /// that config cannot resolve is applied by its other fields, with a warning naming it;
    /// one that no longer compiles (a pattern a newer version refuses) is left out, with a
    /// warning, rather than keeping all the others out.
    pub(crate) fn compile(rows: Vec<StoredEntry>, names: &Names) -> Self {
        let entries = rows
            .iter()
            .filter_map(|row| {
                let (matcher, unresolved) = row.matcher(names);
                if !unresolved.is_empty() {
                    tracing::warn!(id = row.id, unresolved = %unresolved.join(", "), "a stored deny entry names what the config no longer has; it is applied by its other fields");
                }
                DenyEntry::compile(&matcher, DenySource::Stored(row.id), row.expires_at)
                    .inspect_err(|error| {
                        tracing::warn!(id = row.id, %error, "a stored deny entry does not compile; it is ignored");
                    })
                    .ok()
            })
            .collect();
        Self {
            rows,
            list: DenyList::new(entries),
        }
    }

    /// The rows it was compiled from.
    pub(crate) fn rows(&self) -> &[StoredEntry] {
        &self.rows
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::Utc;
    use sqlx::types::Json;

    use super::*;

    fn row(issuer: &str, iss: Option<&str>, rule: Option<&str>) -> StoredEntry {
        StoredEntry {
            id: 1,
            issuer: issuer.to_owned(),
            iss: iss.map(str::to_owned),
            subject: Some(Json(serde_json::from_str(r#""alice""#).unwrap())),
            rule: rule.map(str::to_owned),
            claims: Json(BTreeMap::new()),
            reason: "r".to_owned(),
            expires_at: None,
            added_at: Utc::now(),
            added_by_issuer: "ci".to_owned(),
            added_by_subject: "admin".to_owned(),
            request_id: "req".to_owned(),
            removed_at: None,
            removed_by_issuer: None,
            removed_by_subject: None,
        }
    }

    fn names(issuers: &[(&str, &str)], rules: &[&str]) -> Names {
        Names {
            issuers: issuers
                .iter()
                .map(|(name, iss)| ((*name).to_owned(), (*iss).to_owned()))
                .collect(),
            rules: rules.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    const ISS: &str = "https://ci.example.com";

    #[test]
    fn an_entry_follows_its_issuers_iss_through_a_rename() {
        let renamed = names(&[("build", ISS)], &["push"]);

        let (matcher, unresolved) = row("ci", Some(ISS), Some("push")).matcher(&renamed);

        assert_eq!(matcher.issuer.as_deref(), Some("build"));
        assert_eq!(matcher.rule.as_deref(), Some("push"));
        assert!(unresolved.is_empty());
    }

    #[test]
    fn what_the_config_no_longer_has_is_left_out_so_that_the_entry_denies_more() {
        let config = names(&[("ci", ISS)], &["pull"]);

        let (gone, gone_unresolved) =
            row("old", Some("https://gone.example.com"), Some("push")).matcher(&config);
        let (by_name, by_name_unresolved) = row("ci", None, None).matcher(&config);
        let (renamed, renamed_unresolved) = row("build", None, None).matcher(&config);

        assert_eq!((gone.issuer, gone.rule), (None, None));
        assert_eq!(gone_unresolved, ["issuer", "rule"]);
        assert!(
            gone.subject.is_some(),
            "what still resolves still narrows it"
        );
        // Stored before `iss` was: by the name, while the config has it.
        assert_eq!(by_name.issuer.as_deref(), Some("ci"));
        assert!(by_name_unresolved.is_empty());
        assert_eq!(renamed.issuer, None);
        assert_eq!(renamed_unresolved, ["issuer"]);
    }
}
