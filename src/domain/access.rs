//! The access level a grant carries, `pull` or `push`, ordered so that push includes pull.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a caller may do with the repositories it is granted.
///
/// The order is inclusion: `Pull < Push`, and push access includes pull, because pushing an
/// image means checking which of its layers the registry already has.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Access {
    /// Read images: `"pull"`.
    #[default]
    Pull,
    /// Read and write images: `"push"`.
    Push,
}

impl Access {
    /// The access level as written in config and requests: `pull` or `push`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Pull => "pull",
            Self::Push => "push",
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_is_the_default_and_the_lesser() {
        assert_eq!(Access::default(), Access::Pull);
        assert!(Access::Pull < Access::Push);
        assert_eq!(Access::Pull.max(Access::Push), Access::Push);
    }

    #[test]
    fn serde_uses_lowercase_names() {
        assert_eq!(serde_json::to_string(&Access::Push).unwrap(), r#""push""#);
        for access in [Access::Pull, Access::Push] {
            let json = serde_json::to_string(&access).unwrap();
            assert_eq!(json, format!("\"{access}\""));
            assert_eq!(serde_json::from_str::<Access>(&json).unwrap(), access);
        }
    }

    #[test]
    fn other_spellings_are_refused() {
        for bad in ["Pull", "PUSH", "write", ""] {
            let error = serde_json::from_str::<Access>(&format!("{bad:?}")).unwrap_err();
            assert!(
                error.to_string().starts_with(&format!(
                    "unknown variant `{bad}`, expected `pull` or `push`"
                )),
                "{error}"
            );
        }
        // serde_json refuses a non-string where it expects a variant name at the value itself.
        for not_a_string in ["1", "null"] {
            let error = serde_json::from_str::<Access>(not_a_string).unwrap_err();
            assert_eq!(error.to_string(), "expected value at line 1 column 1");
        }
    }
}
