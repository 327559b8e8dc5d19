//! [`JobStatus`]: the life of a job, and which changes are allowed.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where a job is in its life. Stored in `jobs.status` as the lowercase name (feature
/// `sqlx`: binds and decodes as that text; feature `utoipa`: an OpenAPI enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Waiting in Redis (first time, or again after a retryable failure).
    Queued,
    /// A worker holds it.
    Processing,
    /// Finished with outputs recorded. Terminal.
    Completed,
    /// Finished without outputs, attempts exhausted or a permanent error. Terminal.
    Failed,
    /// Cancelled by its owner or an admin. Terminal.
    Cancelled,
}

impl JobStatus {
    /// Every status, in life order.
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Queued,
        JobStatus::Processing,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    /// True for the states a job never leaves.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// Whether a job may go from `self` to `to`.
    ///
    /// Terminal states never change. `processing → queued` is a retry or a redelivery
    /// after a lost lease; `processing → processing` is a redelivery to another worker
    /// (the worker id changes). `queued → completed` is allowed because a fast worker's
    /// `completed` callback may overtake its own `processing` callback.
    pub fn can_transition(self, to: JobStatus) -> bool {
        use JobStatus::*;
        match (self, to) {
            (Completed | Failed | Cancelled, _) => false,
            (Queued, Queued) => false,
            (Queued, _) => true,
            (Processing, _) => true,
        }
    }

    /// The lowercase name, as stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status name that is not one of the five.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown job status {0:?}; expected queued, processing, completed, failed or cancelled")]
pub struct UnknownStatus(pub String);

impl FromStr for JobStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.chars().take(32).collect()))
    }
}

/// `jobs.status` is `text` with a CHECK of the five names: a status binds and decodes as
/// its name, and an unknown name in a row is a decode error, never a silent default.
#[cfg(feature = "sqlx")]
mod postgres {
    use sqlx::encode::IsNull;
    use sqlx::error::BoxDynError;
    use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef};
    use sqlx::{Decode, Encode, Postgres, Type};

    use super::JobStatus;

    impl Type<Postgres> for JobStatus {
        fn type_info() -> PgTypeInfo {
            <&str as Type<Postgres>>::type_info()
        }

        fn compatible(ty: &PgTypeInfo) -> bool {
            <&str as Type<Postgres>>::compatible(ty)
        }
    }

    impl Encode<'_, Postgres> for JobStatus {
        fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
            <&str as Encode<Postgres>>::encode(self.as_str(), buf)
        }
    }

    impl<'r> Decode<'r, Postgres> for JobStatus {
        fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
            Ok(<&str as Decode<Postgres>>::decode(value)?.parse()?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::JobStatus::{self, *};

    /// The full table, written out so that a change to the rules is a visible diff.
    const TABLE: [(JobStatus, [bool; 5]); 5] = [
        //             queued processing completed failed cancelled
        (Queued, [false, true, true, true, true]),
        (Processing, [true, true, true, true, true]),
        (Completed, [false, false, false, false, false]),
        (Failed, [false, false, false, false, false]),
        (Cancelled, [false, false, false, false, false]),
    ];

    #[test]
    fn every_pair_follows_the_table() {
        for (from, row) in TABLE {
            for (to, allowed) in JobStatus::ALL.into_iter().zip(row) {
                assert_eq!(from.can_transition(to), allowed, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn terminal_states_never_go_back() {
        for from in JobStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in JobStatus::ALL {
                assert!(!from.can_transition(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for s in JobStatus::ALL {
            assert_eq!(s.as_str().parse::<JobStatus>().unwrap(), s);
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert!("done".parse::<JobStatus>().is_err());
    }
}
