//! [`StreamSlots`]: how many event streams may be open at once, per user and in all. Open
//! streams share one Redis subscription ([`crate::event_hub`]), but each holds a socket, a
//! task and buffers: without a bound one user (or a reconnect storm) could exhaust the
//! process' memory and file descriptors. Past a bound, a new stream is a 429; a slot is
//! given back when its stream ends, whatever ends it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use gpuq_schemas::UserId;

use crate::ApiError;

/// The open-stream counters of one dispatcher process.
#[derive(Debug)]
pub struct StreamSlots {
    per_user: usize,
    total: usize,
    /// Open streams per user (`None`: the admin token), and in all.
    open: Mutex<(HashMap<Option<UserId>, usize>, usize)>,
}

/// One open stream's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct StreamSlot {
    slots: Arc<StreamSlots>,
    who: Option<UserId>,
}

impl StreamSlots {
    /// At most `per_user` streams per user and `total` in all.
    pub fn new(per_user: usize, total: usize) -> Arc<Self> {
        Arc::new(Self {
            per_user,
            total,
            open: Mutex::default(),
        })
    }

    /// A slot for a stream of `who`, or 429 `too_many_streams`.
    pub fn acquire(self: &Arc<Self>, who: Option<UserId>) -> Result<StreamSlot, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let (per_user, total) = &mut *open;
        let mine = per_user.entry(who).or_default();
        let refused = |message: String| ApiError::TooManyRequests {
            code: "too_many_streams",
            message,
            retry_after: 5,
        };
        if who.is_some() && *mine >= self.per_user {
            return Err(refused(format!(
                "you already follow {mine} event streams; the limit is {}",
                self.per_user
            )));
        }
        if *total >= self.total {
            return Err(refused(format!(
                "this instance serves its limit of {} event streams; retry shortly",
                self.total
            )));
        }
        *mine += 1;
        *total += 1;
        Ok(StreamSlot {
            slots: Arc::clone(self),
            who,
        })
    }

    /// Streams open now.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).1
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        let (per_user, total) = &mut *open;
        *total = total.saturating_sub(1);
        if let Some(n) = per_user.get_mut(&self.who) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per_user.remove(&self.who);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_per_user_and_in_all_and_given_back_on_drop() {
        let slots = StreamSlots::new(2, 3);
        let (a, b) = (
            Some(UserId::from(uuid::Uuid::new_v4())),
            Some(UserId::from(uuid::Uuid::new_v4())),
        );
        let a1 = slots.acquire(a).unwrap();
        let _a2 = slots.acquire(a).unwrap();
        let err = slots.acquire(a).unwrap_err();
        assert_eq!(err.code(), "too_many_streams");
        let _b1 = slots.acquire(b).unwrap();
        assert!(slots.acquire(b).is_err(), "the instance is full");
        assert!(
            slots.acquire(None).is_err(),
            "admins count against the total"
        );
        drop(a1);
        assert_eq!(slots.open(), 2);
        assert!(slots.acquire(b).is_ok());
    }
}
