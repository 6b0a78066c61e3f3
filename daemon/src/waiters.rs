//! Long polls waiting in this process for a record to change, by key: a
//! change wakes only the polls of its own key, and a poll's entry goes with
//! its last poll however the poll ends. Shared by MO login polls and the
//! relay's answers.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The polls waiting now, by key.
#[derive(Debug, Default)]
pub struct Waiters {
    waiting: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Waiters {
    /// Wakes the polls waiting for `key` (none: nothing to do).
    pub fn wake(&self, key: &str) {
        if let Some(n) = self.lock().get(key) {
            n.notify_waiters();
        }
    }

    /// Polls waiting now (test hook: the map must not leak).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no poll waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `look` until `done` says its answer is final or `wait` has
    /// passed, looking again when [`Waiters::wake`] is called for `key` or
    /// every `recheck` (another instance may make the change). `look` gets
    /// the time passed since the poll began.
    pub async fn poll<T, E, F, Fut>(
        &self,
        key: &str,
        wait: Duration,
        recheck: Duration,
        mut look: F,
        done: impl Fn(&T) -> bool,
    ) -> Result<T, E>
    where
        F: FnMut(Duration) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let start = Instant::now();
        let deadline = start + wait;
        let notify = self.lock().entry(key.to_string()).or_default().clone();
        // Also when the poll is dropped unfinished (the client went away):
        // the entry must not outlive its last poll.
        let leave = Leave {
            waiters: self,
            key,
            notify: Some(notify),
        };
        let notify = leave.notify.as_ref().expect("held until the poll ends");
        loop {
            // Registered before the look, so a change in between wakes us.
            let woken = notify.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let answer = look(start.elapsed()).await?;
            if done(&answer) || Instant::now() >= deadline {
                return Ok(answer);
            }
            let again = (Instant::now() + recheck).min(deadline);
            tokio::select! {
                _ = &mut woken => {}
                _ = tokio::time::sleep_until(again) => {}
            }
        }
    }
}

/// A poll leaving the map, however it ends.
struct Leave<'a> {
    waiters: &'a Waiters,
    key: &'a str,
    /// Taken in `drop`, so it is let go of under the lock.
    notify: Option<Arc<Notify>>,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        // The last poll of a key takes its entry away (count and drop under
        // the lock, so two polls ending together agree who is last): the
        // map holds one reference, this poll another.
        let mut waiting = self.waiters.lock();
        let notify = self.notify.take();
        let last = notify.as_ref().is_some_and(|n| Arc::strong_count(n) == 2);
        drop(notify);
        if last {
            waiting.remove(self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn a_wake_answers_a_poll_at_once_and_the_entry_goes_with_it() {
        let w = Arc::new(Waiters::default());
        let value = Arc::new(AtomicU32::new(0));
        let (w2, v2) = (w.clone(), value.clone());
        let poll = tokio::spawn(async move {
            let started = Instant::now();
            let got = w2
                .poll(
                    "k",
                    Duration::from_secs(30),
                    Duration::from_secs(10),
                    |_| {
                        let v = v2.clone();
                        async move { Ok::<_, ()>(v.load(Ordering::SeqCst)) }
                    },
                    |v| *v == 1,
                )
                .await;
            (got, started.elapsed())
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(w.len(), 1);
        w.wake("other");
        value.store(1, Ordering::SeqCst);
        w.wake("k");
        let (got, took) = poll.await.unwrap();
        assert_eq!(got, Ok(1));
        assert!(
            took < Duration::from_secs(1),
            "woken, not rechecked: {took:?}"
        );
        assert!(w.is_empty(), "the entry went with its last poll");
    }

    #[tokio::test(start_paused = true)]
    async fn a_poll_ends_at_its_wait_with_the_last_answer() {
        let w = Waiters::default();
        let looks = AtomicU32::new(0);
        let got = w
            .poll(
                "k",
                Duration::from_secs(5),
                Duration::from_secs(1),
                |_| {
                    looks.fetch_add(1, Ordering::SeqCst);
                    async { Ok::<_, ()>(7) }
                },
                |_| false,
            )
            .await;
        assert_eq!(got, Ok(7));
        assert_eq!(
            looks.load(Ordering::SeqCst),
            6,
            "every second and at the end"
        );
        assert!(w.is_empty());
    }
}
