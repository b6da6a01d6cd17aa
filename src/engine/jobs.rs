//! How many jobs a notebook's worker has been given and not finished, so that a submitter can
//! tell, atomically, that the queue is idle and take the fast path of issue 8 item 12: accept
//! an execution directly as `running` on the live kernel in one fsync'd commit instead of
//! accepting it `pending` and marking it `running` in a second one.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Jobs sent to a worker and not yet finished (queued plus the one in hand).
#[derive(Debug, Default)]
pub struct JobCount(AtomicUsize);

impl JobCount {
    /// Counts `n` jobs about to be sent.
    pub fn add(&self, n: usize) {
        self.0.fetch_add(n, Ordering::SeqCst);
    }

    /// Takes the idle queue: true (and one job counted) only when no job is queued or in
    /// hand. Exactly one of several racing submitters gets it; the others queue behind it.
    pub fn claim_idle(&self) -> bool {
        self.0
            .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Uncounts one job (finished, or never sent after [`JobCount::add`]/[`JobCount::claim_idle`]).
    pub fn done(&self) {
        // Never below zero, even if a job is uncounted twice by mistake.
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    /// Jobs counted now.
    #[cfg(test)]
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    /// A guard that uncounts one job when dropped: held while the worker handles a job, so a
    /// panic that unwinds out of the job (caught by the supervisor) uncounts it too.
    pub fn in_hand(&self) -> InHand<'_> {
        InHand(self)
    }
}

/// See [`JobCount::in_hand`].
pub struct InHand<'a>(&'a JobCount);

impl Drop for InHand<'_> {
    fn drop(&mut self) {
        self.0.done();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_claim_of_an_idle_queue_wins_and_jobs_in_hand_are_uncounted_on_drop() {
        let c = JobCount::default();
        assert!(c.claim_idle());
        assert!(!c.claim_idle(), "a second submitter must queue");
        c.add(2);
        assert_eq!(c.get(), 3);
        for _ in 0..3 {
            drop(c.in_hand());
        }
        assert_eq!(c.get(), 0);
        c.done();
        assert_eq!(c.get(), 0, "never below zero");
        assert!(c.claim_idle());
    }

    #[test]
    fn a_panicking_job_is_uncounted() {
        let c = std::sync::Arc::new(JobCount::default());
        c.add(1);
        let c2 = c.clone();
        let r = std::thread::spawn(move || {
            let _g = c2.in_hand();
            panic!("job panicked");
        })
        .join();
        assert!(r.is_err());
        assert_eq!(c.get(), 0);
    }
}
