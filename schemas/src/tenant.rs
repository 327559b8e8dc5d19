//! [`Tenant`]: whose fair share of a queue's GPU time a job counts against.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::UserId;

/// A tenant: the user by default, or an organisation named by a JWT claim. Its name is part
/// of a Redis key and of the queue's `|`-separated job meta, so it is 1 to 128 characters
/// of `[A-Za-z0-9._:@-]`.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
pub struct Tenant(String);

/// A tenant name that is empty, too long, or has a character outside `[A-Za-z0-9._:@-]`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a tenant is 1 to 128 characters of A-Z, a-z, 0-9 and . _ : @ -")]
pub struct InvalidTenant;

impl Tenant {
    /// The longest tenant name.
    pub const MAX_LEN: usize = 128;

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<UserId> for Tenant {
    fn from(user: UserId) -> Self {
        Self(user.to_string())
    }
}

impl FromStr for Tenant {
    type Err = InvalidTenant;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || "._:@-".contains(c);
        if s.is_empty() || s.len() > Self::MAX_LEN || !s.chars().all(allowed) {
            return Err(InvalidTenant);
        }
        Ok(Self(s.to_owned()))
    }
}

impl TryFrom<String> for Tenant {
    type Error = InvalidTenant;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Tenant> for String {
    fn from(t: Tenant) -> Self {
        t.0
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_id_an_org_slug_and_an_email_are_tenants() {
        for ok in [
            "0193a5b2-1234-7abc-8def-0123456789ab",
            "acme-inc",
            "org:42",
            "a@b.c",
        ] {
            assert_eq!(ok.parse::<Tenant>().unwrap().as_str(), ok);
        }
    }

    #[test]
    fn separators_spaces_braces_and_overlong_names_are_refused() {
        for bad in ["", "a|b", "a b", "{q}", "é", &"x".repeat(129)] {
            assert_eq!(bad.parse::<Tenant>(), Err(InvalidTenant), "{bad:?}");
        }
    }
}
