//! Credits (ADR 0014): what a job costs, and the tenant accounts and ledger in PostgreSQL.
//!
//! The money moves in SQL, in the transactions that change the jobs: the hold in
//! `gpuq_record_jobs` (enqueue) or [`hold`] (requeue of a dead job), the settlement or
//! release in the `jobs_close_hold` trigger of whatever transition ends the job. This
//! module prices jobs and reads and adjusts accounts.

pub mod check;
mod ledger;
mod pricing;
pub mod usage;

pub use ledger::{
    account, adjust, entries, hold, hold_again, Account, Adjusted, Adjustment, Entry,
    KnownAccounts, MAX_ADJUSTMENT, MAX_ENTRIES,
};
pub use pricing::{CreditSettings, Price, Rate};
