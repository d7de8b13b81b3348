//! An IAM role ARN, parsed into partition, account and role; any other ARN is refused.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{InvalidValue, RegistryId};

/// The ARN of an IAM role, `arn:<partition>:iam::<account>:role/<path/><name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RoleArn {
    arn: String,
    account: RegistryId,
}

const PARTITIONS: [&str; 3] = ["aws", "aws-cn", "aws-us-gov"];

impl RoleArn {
    /// The full ARN.
    pub fn as_str(&self) -> &str {
        &self.arn
    }

    /// The ARN's partition: `aws`, `aws-cn` or `aws-us-gov`.
    pub fn partition(&self) -> &str {
        self.arn.split(':').nth(1).unwrap_or_default()
    }

    /// The account that owns the role; also the ID of that account's ECR registry.
    pub fn account(&self) -> &RegistryId {
        &self.account
    }
}

impl TryFrom<String> for RoleArn {
    type Error = InvalidValue;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        let invalid = |why: &str| {
            InvalidValue(format!(
                "{value:?} is not an IAM role ARN ({why}); expected arn:aws:iam::123456789012:role/NAME"
            ))
        };
        let parts: Vec<&str> = value.splitn(6, ':').collect();
        let [arn, partition, service, region, account, resource] = parts[..] else {
            return Err(invalid("wrong number of fields"));
        };
        if arn != "arn" || service != "iam" || !region.is_empty() {
            return Err(invalid("not an IAM ARN"));
        }
        if !PARTITIONS.contains(&partition) {
            return Err(invalid("unknown partition"));
        }
        let account = RegistryId::try_from(account.to_owned())
            .map_err(|_| invalid("account must be twelve digits"))?;
        let Some(path_and_name) = resource.strip_prefix("role/") else {
            return Err(invalid("not a role"));
        };
        let name = path_and_name.rsplit('/').next().unwrap_or_default();
        let allowed = |c: char| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c);
        if name.is_empty()
            || name.len() > 64
            || !path_and_name.chars().all(|c| allowed(c) || c == '/')
        {
            return Err(invalid("role name must be 1 to 64 of [A-Za-z0-9+=,.@_-]"));
        }
        Ok(Self {
            account,
            arn: value,
        })
    }
}

impl From<RoleArn> for String {
    fn from(arn: RoleArn) -> Self {
        arn.arn
    }
}

impl fmt::Display for RoleArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_role_arns_with_and_without_path() {
        let arn = RoleArn::try_from("arn:aws:iam::123456789012:role/ecr-ci".to_owned()).unwrap();
        assert_eq!(arn.account().as_str(), "123456789012");
        let arn =
            RoleArn::try_from("arn:aws-cn:iam::210987654321:role/ci/ecr-push".to_owned()).unwrap();
        assert_eq!(arn.account().as_str(), "210987654321");
    }

    #[test]
    fn refuses_other_arns() {
        let name = "role name must be 1 to 64 of [A-Za-z0-9+=,.@_-]";
        for (bad, why) in [
            ("arn:aws:iam::123456789012:user/bob", "not a role"),
            ("arn:aws:s3:::bucket", "not an IAM ARN"),
            (
                "arn:aws:iam:us-east-1:123456789012:role/x",
                "not an IAM ARN",
            ),
            ("arn:aws:iam::12345:role/x", "account must be twelve digits"),
            ("arn:evil:iam::123456789012:role/x", "unknown partition"),
            ("arn:aws:iam::123456789012:role/", name),
            ("arn:aws:iam::123456789012:role/has space", name),
            ("role/x", "wrong number of fields"),
        ] {
            assert_eq!(
                RoleArn::try_from(bad.to_owned()).unwrap_err().to_string(),
                format!(
                    "{bad:?} is not an IAM role ARN ({why}); expected \
                     arn:aws:iam::123456789012:role/NAME"
                )
            );
        }
    }
}
