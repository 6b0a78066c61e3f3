//! Leases on the rows of the durable queues (outbox, calls, webhook jobs):
//! a claim hands a job out with a [`Lease`], and the holder's completion,
//! failure, requeue or extension applies only while its lease is the job's
//! latest claim. A holder that stalled past its lease, whose job another
//! claim took over, is refused with [`super::StoreError::LeaseLost`].

use super::Millis;

/// One claim's hold on one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The job's id.
    pub id: String,
    /// The claim's number (the fence): the job's claims are counted, and a
    /// later claim's number is higher.
    pub token: i64,
    /// Until when the job is held (another claim may take it after this).
    pub until: Millis,
}

impl Lease {
    /// The "lease" of a job that was never claimed (tools and tests that
    /// act on a queued job directly): fenced out as soon as anyone claims it.
    pub fn unclaimed(id: &str) -> Self {
        Lease {
            id: id.to_string(),
            token: 0,
            until: 0,
        }
    }
}

/// What an extension found of one lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extension {
    /// Still the job's latest claim and being worked on: extended.
    Held,
    /// Finished under this claim (the holder's own completion can land
    /// just before its extension) or no longer stored: nothing to extend,
    /// nothing lost.
    Finished,
    /// A later claim took the job over: the holder must drop it.
    TakenOver,
}

/// A job handed out by a claim, with the claim's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed<T> {
    /// The job as the claim left it.
    pub job: T,
    /// The hold on it.
    pub lease: Lease,
}

impl<T> std::ops::Deref for Claimed<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.job
    }
}
