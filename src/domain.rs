//! Value types that can only hold valid values: parse once at the edge, trust them inside.

mod access;
mod cache_mode;
mod kubernetes;
mod one_line;
mod partition;
mod region;
mod registry_host;
mod registry_id;
mod repository;
mod role_arn;
mod search_text;
mod session;
mod whole_seconds;

pub(crate) use access::Access;
pub(crate) use cache_mode::CacheMode;
pub(crate) use kubernetes::{Namespace, SecretName};
pub(crate) use one_line::one_line;
pub(crate) use partition::Partition;
pub(crate) use region::Region;
pub(crate) use registry_host::RegistryHost;
pub(crate) use registry_id::RegistryId;
pub(crate) use repository::{MAX_REPOSITORY_NAME_LEN, RepositoryPattern, is_repository_name_text};
pub(crate) use role_arn::RoleArn;
pub(crate) use search_text::SearchText;
pub(crate) use session::{RoleSessionName, SessionDuration, SourceIdentity};
pub(crate) use whole_seconds::WholeSeconds;

/// Why a value was refused by one of the domain parsers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub(crate) String);
