//! [`Lane`]: priority lanes within a queue.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::QueueError;

/// A priority lane. Consumers always drain `High` before `Normal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lane {
    /// Served first.
    High,
    /// The default.
    #[default]
    Normal,
}

impl Lane {
    /// Both lanes, in the order they are served.
    pub const ALL: [Lane; 2] = [Lane::High, Lane::Normal];

    /// `high` or `normal`.
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::High => "high",
            Lane::Normal => "normal",
        }
    }

    /// The other lane.
    pub fn other(self) -> Lane {
        match self {
            Lane::High => Lane::Normal,
            Lane::Normal => Lane::High,
        }
    }
}

impl FromStr for Lane {
    type Err = QueueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "high" => Ok(Lane::High),
            "normal" => Ok(Lane::Normal),
            other => Err(QueueError::UnknownLane(other.chars().take(32).collect())),
        }
    }
}

impl fmt::Display for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_lanes_and_rejects_others() {
        assert_eq!("high".parse::<Lane>().unwrap(), Lane::High);
        assert_eq!("normal".parse::<Lane>().unwrap(), Lane::Normal);
        assert!(
            matches!("urgent".parse::<Lane>(), Err(QueueError::UnknownLane(l)) if l == "urgent")
        );
        assert!("".parse::<Lane>().is_err());
    }
}
