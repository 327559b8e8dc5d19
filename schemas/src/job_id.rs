//! [`JobId`]: the identifier of one generation job, a UUID (version 7 when we mint it).

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Identifies one job across HTTP, Redis and PostgreSQL.
///
/// New ids are UUIDv7: time-ordered, so the queue can tell how long a job has waited from
/// its id alone, and B-tree inserts in PostgreSQL stay append-mostly.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct JobId(Uuid);

/// A string that is not a UUID.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("job id must be a UUID, got {0:?}")]
pub struct InvalidJobId(pub String);

impl JobId {
    /// Mints a new time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// Milliseconds since the Unix epoch at which a v7 id was minted; `None` for other versions.
    pub fn created_at_ms(&self) -> Option<u64> {
        let (secs, nanos) = self.0.get_timestamp()?.to_unix();
        Some(secs * 1000 + u64::from(nanos) / 1_000_000)
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Uuid> for JobId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl FromStr for JobId {
    type Err = InvalidJobId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| InvalidJobId(s.chars().take(64).collect()))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_v7_and_carry_their_time() {
        let id = JobId::new();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let at = id.created_at_ms().unwrap();
        assert!(now.abs_diff(at) < 5_000);
    }

    #[test]
    fn parses_and_prints_hyphenated() {
        let s = "0192f0c4-1111-7abc-8def-000000000001";
        assert_eq!(s.parse::<JobId>().unwrap().to_string(), s);
    }

    #[test]
    fn rejects_non_uuid() {
        assert!("".parse::<JobId>().is_err());
        assert!("not-a-uuid".parse::<JobId>().is_err());
        assert!("../../etc/passwd".parse::<JobId>().is_err());
    }

    #[test]
    fn v4_ids_have_no_time() {
        assert_eq!(JobId::from(Uuid::new_v4()).created_at_ms(), None);
    }
}
