//! [`ConsumerName`]: the unique name of one worker process instance.

use std::fmt;

use crate::QueueError;

/// Names the holder of a lease. Unique per process instance (host, pid and a random
/// suffix), so a restarted worker never mistakes its predecessor's leases for its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConsumerName(String);

impl ConsumerName {
    /// Validates a name: 1 to 128 bytes of `[A-Za-z0-9._:-]` (`|` is the meta separator).
    pub fn parse(name: &str) -> Result<Self, QueueError> {
        let ok = !name.is_empty()
            && name.len() <= 128
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(QueueError::InvalidConsumer(name.chars().take(64).collect()))
        }
    }

    /// `<prefix>-<host>-<pid>-<random>`; `prefix` is sanitized.
    pub fn unique(prefix: &str) -> Self {
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '-'
                    }
                })
                .take(40)
                .collect()
        };
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "host".into());
        let suffix: u32 = rand::random();
        Self(format!(
            "{}-{}-{}-{suffix:08x}",
            clean(prefix),
            clean(host.trim()),
            std::process::id()
        ))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConsumerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_are_valid_and_distinct() {
        let a = ConsumerName::unique("sdxl worker");
        let b = ConsumerName::unique("sdxl worker");
        assert_ne!(a, b);
        assert!(ConsumerName::parse(a.as_str()).is_ok(), "{a}");
    }

    #[test]
    fn rejects_separator_and_empty() {
        assert!(ConsumerName::parse("").is_err());
        assert!(ConsumerName::parse("a|b").is_err());
        assert!(ConsumerName::parse(&"x".repeat(129)).is_err());
    }
}
