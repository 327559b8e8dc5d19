//! [`QueueName`]: a Redis-safe queue name such as `sdxl_queue`.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The name of one queue. Lowercase ASCII letters, digits, `_` and `-`, 1 to 64 bytes: it is
/// embedded in a Redis hash tag (`{sdxl_queue}`), so braces, colons and spaces are refused.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
pub struct QueueName(String);

/// Why a string is not a queue name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidQueueName {
    /// The name is empty.
    #[error("queue name must not be empty")]
    Empty,
    /// The name is longer than 64 bytes.
    #[error("queue name must be at most 64 bytes")]
    TooLong,
    /// The name has a character outside `[a-z0-9_-]`.
    #[error("queue name may contain only a-z, 0-9, '_' and '-'")]
    BadCharacter,
}

impl QueueName {
    /// Validates `name`.
    pub fn parse(name: &str) -> Result<Self, InvalidQueueName> {
        if name.is_empty() {
            return Err(InvalidQueueName::Empty);
        }
        if name.len() > 64 {
            return Err(InvalidQueueName::TooLong);
        }
        let ok = name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !ok {
            return Err(InvalidQueueName::BadCharacter);
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for QueueName {
    type Err = InvalidQueueName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for QueueName {
    type Error = InvalidQueueName;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<QueueName> for String {
    fn from(q: QueueName) -> Self {
        q.0
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_catalog_queues() {
        assert_eq!(
            QueueName::parse("sdxl_queue").unwrap().as_str(),
            "sdxl_queue"
        );
        assert!(QueueName::parse("wan-queue-2").is_ok());
    }

    #[test]
    fn rejects_empty_long_and_tag_breaking_names() {
        assert_eq!(QueueName::parse(""), Err(InvalidQueueName::Empty));
        assert_eq!(
            QueueName::parse(&"a".repeat(65)),
            Err(InvalidQueueName::TooLong)
        );
        for bad in ["a}b", "{a}", "a:b", "a b", "Upper", "é"] {
            assert_eq!(
                QueueName::parse(bad),
                Err(InvalidQueueName::BadCharacter),
                "{bad}"
            );
        }
    }
}
