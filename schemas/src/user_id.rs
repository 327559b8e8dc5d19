//! [`UserId`]: the `sub` of the caller's JWT, which must be a UUID.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The owner of a job; also the first segment of every storage key the job writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct UserId(Uuid);

/// A user id that is not a UUID.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("user id must be a UUID")]
pub struct InvalidUserId;

impl UserId {
    /// The underlying UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl From<Uuid> for UserId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl FromStr for UserId {
    type Err = InvalidUserId;

    /// Accepts only the canonical hyphenated form, so that the id doubles as a path segment
    /// with exactly one spelling.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 36 {
            return Err(InvalidUserId);
        }
        Uuid::parse_str(s).map(Self).map_err(|_| InvalidUserId)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_hyphenated_uuid_and_prints_it_lowercase() {
        let id: UserId = "11111111-1111-1111-1111-11111111AAAA".parse().unwrap();
        assert_eq!(id.to_string(), "11111111-1111-1111-1111-11111111aaaa");
    }

    #[test]
    fn rejects_other_spellings_and_garbage() {
        assert!("11111111111111111111111111111111"
            .parse::<UserId>()
            .is_err());
        assert!("{11111111-1111-1111-1111-111111111111}"
            .parse::<UserId>()
            .is_err());
        assert!("admin".parse::<UserId>().is_err());
        assert!("".parse::<UserId>().is_err());
    }
}
