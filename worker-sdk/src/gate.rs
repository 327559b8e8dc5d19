//! The callback gate. A worker whose reports the callback service refuses as
//! misconfigured (wrong secret, wrong URL) must not go on claiming jobs it cannot report:
//! it hands the job back, closes the gate (one clear error in the log, readiness false),
//! claims nothing while closed, and opens again once a probe is accepted (a secret rotated
//! on the service first, say).

use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::callback::{ReportError, Reporter};
use crate::connect::sleep_or_stop;

/// First and longest wait between two probes while the gate is closed.
const PROBE_EVERY: (Duration, Duration) = (Duration::from_secs(2), Duration::from_secs(60));

/// Open while the callback service accepts this worker's reports.
pub(crate) struct Gate {
    open: watch::Sender<bool>,
}

impl Gate {
    pub(crate) fn new() -> Self {
        Self {
            open: watch::Sender::new(true),
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        *self.open.borrow()
    }

    /// Readiness for the host application: `true` while the gate is open.
    pub(crate) fn subscribe(&self) -> watch::Receiver<bool> {
        self.open.subscribe()
    }

    /// Closes the gate after `refusal`; logs once per closing.
    pub(crate) fn close(&self, refusal: &ReportError, url: &reqwest::Url) {
        if self.open.send_replace(false) {
            tracing::error!(
                error = %refusal, %url,
                "THE CALLBACK SERVICE REFUSES THIS WORKER'S REPORTS (wrong callback URL or secret?); \
                 jobs are handed back and nothing is claimed until a probe is accepted"
            );
        }
    }

    /// Probes with growing pauses until the service accepts a probe (gate open again,
    /// `false`) or `shutdown` fires (`true`).
    pub(crate) async fn reopen(&self, reporter: &Reporter, shutdown: &CancellationToken) -> bool {
        let mut wait = PROBE_EVERY.0;
        loop {
            if sleep_or_stop(wait, shutdown).await {
                return true;
            }
            match reporter.probe(0).await {
                Ok(()) => {
                    self.open.send_replace(true);
                    tracing::info!(url = %reporter.url(), "the callback service accepts this worker's reports again; claiming");
                    return false;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "probe still refused");
                    wait = (wait * 2).min(PROBE_EVERY.1);
                }
            }
        }
    }
}
