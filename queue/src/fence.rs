//! The fence: which delivery of a job a report is about. Every claim leases a job under
//! its attempt number and a random token the claimer made for that claim; a report counts
//! only while both still match the job's claim in Redis, so a stale or replayed report
//! (an earlier attempt, another worker, a claim that already failed) changes nothing.

use std::fmt;

use gpuq_schemas::JobId;

use crate::scripts::SCRIPTS;
use crate::{Queue, Result};

/// A delivery's fence: its attempt number and its claim's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The delivery attempt, from 1.
    pub attempt: u32,
    /// The claim's token (`[0-9a-f]{32}` from gpuq's claimers).
    pub token: String,
}

impl Fence {
    /// A fresh random claim token: 128 bits, as lowercase hex.
    pub fn new_token() -> String {
        format!("{:032x}", rand::random::<u128>())
    }
}

impl fmt::Display for Fence {
    /// `<attempt>:<token>`, the form `fail_job.lua` compares.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.attempt, self.token)
    }
}

/// Who holds an in-flight job, under which fence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    /// The holder's consumer name.
    pub consumer: String,
    /// The claim's fence (an empty token for a claim made without one).
    pub fence: Fence,
    /// When the claim was made, Unix ms (Redis' clock): the job's start when its worker
    /// never reported `processing`.
    pub since_ms: Option<u64>,
}

impl Holding {
    /// Whether a report from `worker` under `fence` is about this claim: same worker, same
    /// attempt, same token. A claim made without a token (a worker of an earlier release,
    /// during a rolling upgrade) is matched by a report without one.
    pub fn is(&self, worker: &str, fence: &Fence) -> bool {
        self.consumer == worker && self.fence == *fence
    }
}

impl Queue {
    /// The current claim of `job`, or `None` when it is not in flight (waiting, delayed,
    /// dead, finished or unknown). One round trip.
    pub async fn holding(&self, job: JobId) -> Result<Option<Holding>> {
        // A script, so both reads see the same moment (`read_claim.lua`).
        let meta: Option<String> = SCRIPTS
            .read_claim
            .key(self.keys.meta())
            .key(self.keys.leases())
            .arg(job.to_string())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(meta.as_deref().and_then(parse_meta))
    }
}

/// `attempt|lane|consumer|since|token|tenant` (token and tenant absent in meta written by
/// earlier releases).
fn parse_meta(meta: &str) -> Option<Holding> {
    let mut fields = meta.split('|');
    let attempt = fields.next()?.parse().ok()?;
    let _lane = fields.next()?;
    let consumer = fields.next()?.to_owned();
    let since_ms = fields.next()?.parse().ok();
    let token = fields.next().unwrap_or_default().to_owned();
    (!consumer.is_empty()).then_some(Holding {
        consumer,
        fence: Fence { attempt, token },
        since_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_with_and_without_a_token_parses() {
        let h = parse_meta("3|high|w-1|1700000000000|abc").unwrap();
        assert_eq!(h.consumer, "w-1");
        assert_eq!(h.fence.to_string(), "3:abc");
        let old = parse_meta("2|normal|w-2|1700000000000").unwrap();
        assert_eq!(old.fence.token, "");
        assert!(parse_meta("2|normal||1700000000000|").is_none());
        let tenanted = parse_meta("4|normal|w-3|1700000000000|abc|acme").unwrap();
        assert_eq!(tenanted.fence.to_string(), "4:abc");
    }

    #[test]
    fn a_claim_without_a_token_matches_only_reports_without_one() {
        let h = parse_meta("1|normal|w|1").unwrap();
        let fence = |attempt, token: &str| Fence {
            attempt,
            token: token.to_owned(),
        };
        assert!(h.is("w", &fence(1, "")));
        assert!(!h.is("w", &fence(1, "abc")));
        assert!(!h.is("w", &fence(2, "")));
        assert!(!h.is("v", &fence(1, "")));
        let tokened = parse_meta("1|normal|w|1|abc").unwrap();
        assert!(!tokened.is("w", &fence(1, "")));
        assert!(tokened.is("w", &fence(1, "abc")));
    }

    #[test]
    fn tokens_are_32_hex_digits_and_differ() {
        let (a, b) = (Fence::new_token(), Fence::new_token());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
