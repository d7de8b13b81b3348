//! Value types that can only hold valid values: parse once at the edge, trust them inside.

mod access;
mod partition;
mod region;
mod registry_host;
mod registry_id;
mod repository;
mod role_arn;
mod session;

pub use access::Access;
pub use partition::Partition;
pub use region::Region;
pub use registry_host::{EndpointKind, RegistryHost};
pub use registry_id::RegistryId;
pub use repository::{
    MAX_REPOSITORY_NAME_LEN, RepositoryPattern, is_repository_name, is_repository_name_text,
};
pub use role_arn::RoleArn;
pub use session::{RoleSessionName, SessionDuration, SourceIdentity};

/// Why a value was refused by one of the domain parsers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub(crate) String);
