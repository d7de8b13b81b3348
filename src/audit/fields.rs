//! The macro that turns the audit row's field table (the `AuditRecord` definition in
//! [`super::record`]) into everything that lists the fields: the struct itself, its NUL
//! escaping, its insert columns, its canonical encoding under the chain's MAC and the API's
//! `IssuanceRecord`. How each field's type is escaped, stored, hashed and shown lives with
//! each concern ([`super::record::EscapeNul`], [`super::columns::Column`],
//! [`super::chain::Canon`], [`super::shown::Shown`]); this file only walks the table and
//! must not spell out any field.

/// Defines the audit record from its field table, in column and hash order.
///
/// Each field is `name: Type`, optionally followed by
/// - `=> hashed_if_present(b'x')` for a field added after the first version of the chain:
///   encoded only when present, after its tag byte, so that rows written before it keep
///   their hashes (a field without it is always encoded, which changes every stored row's
///   hash: every field added from now on needs a tag of its own);
/// - `=> shown(f)` when the API shows it through `f` instead of its type's [`Shown`]
///   (`f` takes the field's value and returns what [`Shown`] would have, in another form).
///
/// The first field is the arrival time, which the API shows before `recordedAt`.
///
/// [`Shown`]: super::shown::Shown
macro_rules! audit_record {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[$attr:meta])*
                $vis:vis $field:ident: $ty:ty
                $(=> hashed_if_present($tag:literal))?
                $(=> shown($shown:path))?
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $($(#[$attr])* $vis $field: $ty,)*
        }

        impl $name {
            /// Replaces every NUL character in the record's text with U+2400 (`␀`):
            /// Postgres can keep NUL in neither `text` nor `jsonb`, and one such value (a
            /// signed claim may hold anything) would fail every record of its batch. Applied
            /// once, where the record becomes a row ([`super::chain::ChainedRow::new`]), so
            /// the row hashes as stored.
            pub(super) fn escape_nul(&mut self) {
                $($crate::audit::record::EscapeNul::escape_nul(&mut self.$field);)*
            }

            /// Appends every field, in table order, to the canonical encoding.
            pub(super) fn encode(&self, c: &mut $crate::audit::chain::Canonical) {
                $($crate::audit::fields::audit_record!(@hash c, &self.$field $(, $tag)?);)*
            }
        }

        /// The tags of the fields hashed only when present.
        #[cfg(test)]
        pub(super) const HASH_TAGS: &[u8] = &[$($($tag,)?)*];

        /// A batch's record columns: one array per field, borrowing from its rows.
        #[derive(Default)]
        pub(super) struct RecordColumns<'a> {
            $($field: Vec<<$ty as $crate::audit::columns::Column>::Value<'a>>,)*
        }

        impl<'a> RecordColumns<'a> {
            /// Each record column's name, and the cast its `UNNEST`ed value needs (empty for
            /// none), in the order [`RecordColumns::bind_all`] binds them.
            pub(super) const NAMES: &'static [(&'static str, &'static str)] = &[
                $((stringify!($field), <$ty as $crate::audit::columns::Column>::CAST),)*
            ];

            /// Adds one record's values.
            pub(super) fn push(&mut self, record: &'a $name) {
                $(self.$field.push($crate::audit::columns::Column::value(&record.$field));)*
            }

            /// Binds one array per column, in the order of [`RecordColumns::NAMES`].
            pub(super) fn bind_all(
                self,
                query: ::sqlx::query::Query<'a, ::sqlx::Postgres, ::sqlx::postgres::PgArguments>,
            ) -> ::sqlx::query::Query<'a, ::sqlx::Postgres, ::sqlx::postgres::PgArguments> {
                query $(.bind(self.$field))*
            }
        }

        $crate::audit::fields::audit_record!(@shown $($field: $ty $(=> $shown)?),*);
    };

    (@hash $c:ident, $value:expr) => {
        $crate::audit::chain::Canon::encode($value, $c)
    };
    (@hash $c:ident, $value:expr, $tag:literal) => {
        if let Some(value) = $value {
            $c.tag($tag);
            $crate::audit::chain::Canon::encode(value, $c);
        }
    };

    (@show $value:expr) => {
        $crate::audit::shown::Shown::shown($value)
    };
    (@show $value:expr => $shown:path) => {
        $shown($value)
    };

    (
        @shown $first:ident: $first_ty:ty $(=> $first_shown:path)?,
        $($field:ident: $ty:ty $(=> $shown:path)?),*
    ) => {
        /// One audit row as the API shows it: every field under its camel-case name, the
        /// arrival time before the time it was recorded.
        #[derive(Debug, ::serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        pub(crate) struct IssuanceRecord {
            pub(crate) id: i64,
            pub(crate) $first: <$first_ty as $crate::audit::shown::Shown>::Shown,
            pub(crate) recorded_at: String,
            $(pub(crate) $field: <$ty as $crate::audit::shown::Shown>::Shown,)*
        }

        impl From<$crate::audit::chain::ChainedRow> for IssuanceRecord {
            fn from(row: $crate::audit::chain::ChainedRow) -> Self {
                let record = row.record;
                Self {
                    id: row.id,
                    $first: $crate::audit::fields::audit_record!(@show record.$first $(=> $first_shown)?),
                    recorded_at: $crate::audit::shown::instant(row.recorded_at),
                    $($field: $crate::audit::fields::audit_record!(@show record.$field $(=> $shown)?),)*
                }
            }
        }
    };
}

pub(super) use audit_record;
