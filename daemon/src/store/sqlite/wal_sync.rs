//! Group commit for SQLite in WAL mode: the writer commits without an fsync
//! (`synchronous=NORMAL`) and hands the committed operations here; one
//! fsync of the WAL file then covers every operation handed over before it
//! started, and only then are their callers answered. Many transactions
//! cost one disk flush, and no write is acknowledged before it is on disk.
//! The writer goes on with the next transaction while the flush runs.
//!
//! Why this is as durable as `synchronous=FULL`: a commit has appended its
//! frames to the WAL before it returns, and operations are handed over after
//! their commit, so the flush that answers them started after their frames
//! were written. fsync works on the file, not the descriptor, so flushing
//! through our own descriptor covers frames SQLite wrote through its own.
//! Frames that a checkpoint has already moved into the database file are
//! covered by SQLite itself, which in NORMAL mode syncs the WAL before each
//! checkpoint and the database after it, and syncs the WAL header before the
//! WAL is reused.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel as chan;

use super::engine::Pending;
use crate::store::StoreError;

/// What the flusher shares with the store. A failure is permanent: after a
/// failed fsync the kernel may have dropped the dirty WAL pages, and
/// SQLite's recovery stops at the first missing frame, so no later commit
/// can be promised either (PostgreSQL treats a failed fsync the same way).
/// The operator restarts the daemon.
#[derive(Debug, Default)]
pub struct SyncState {
    failed: Mutex<Option<String>>,
    flushes: AtomicU64,
}

impl SyncState {
    /// Why writes can no longer be made durable, if a flush failed.
    pub fn failure(&self) -> Option<String> {
        self.failed.lock().expect("sync state").clone()
    }

    /// Flushes done so far (each covers every operation handed over before it).
    #[cfg(test)]
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::SeqCst)
    }
}

/// The writer's handle on the flusher thread (it ends when this is dropped,
/// after answering everything handed over).
#[derive(Debug)]
pub struct WalSync {
    tx: chan::Sender<Vec<Box<dyn Pending>>>,
}

impl WalSync {
    /// Starts the flusher for the WAL of the database at `db`.
    pub fn start(db: &Path, state: Arc<SyncState>) -> std::io::Result<(Self, JoinHandle<()>)> {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        let (tx, rx) = chan::unbounded::<Vec<Box<dyn Pending>>>();
        let thread = std::thread::Builder::new()
            .name("verigate-wal-sync".into())
            .spawn(move || {
                while let Ok(mut batch) = rx.recv() {
                    for more in rx.try_iter() {
                        batch.extend(more);
                    }
                    let outcome = flush(&wal, &state);
                    for p in batch {
                        p.finish(outcome.clone());
                    }
                }
            })?;
        Ok((Self { tx }, thread))
    }

    /// Answers `done` (committed operations) after the next flush.
    pub fn after_flush(&self, done: Vec<Box<dyn Pending>>) {
        if let Err(chan::SendError(done)) = self.tx.send(done) {
            // The flusher is gone (it cannot end while we hold `tx`, unless
            // it panicked): say so rather than promise durability.
            let e = StoreError::Database("the WAL flusher stopped; restart verigate".into());
            for p in done {
                p.finish(Err(e.clone()));
            }
        }
    }
}

/// One fsync of the WAL, or the standing failure.
fn flush(wal: &Path, state: &SyncState) -> Result<(), StoreError> {
    let mut failed = state.failed.lock().expect("sync state");
    if failed.is_none() {
        if let Err(e) = fsync(wal) {
            *failed = Some(e);
        }
    }
    // Counted before anyone is answered: a test checks each answer follows a flush.
    state.flushes.fetch_add(1, Ordering::SeqCst);
    match &*failed {
        Some(e) => Err(StoreError::Database(format!(
            "{e}; later writes cannot be made durable, restart verigate"
        ))),
        None => Ok(()),
    }
}

fn fsync(wal: &Path) -> Result<(), String> {
    match std::fs::OpenOptions::new().write(true).open(wal) {
        Ok(f) => f
            .sync_data()
            .map_err(|e| format!("cannot flush {} to disk: {e}", wal.display())),
        // No WAL file: nothing has been committed through one since the
        // last checkpoint that removed it, which SQLite synced.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot open {}: {e}", wal.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::engine::reply;
    use crate::store::sqlite::tests::TempDir;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn operations_handed_over_together_share_flushes() {
        let tmp = TempDir::new("walsync-share");
        let dir = &tmp.0;
        let db = dir.join("t.db");
        std::fs::write(dir.join("t.db-wal"), b"frames").unwrap();
        let state = Arc::new(SyncState::default());
        let (sync, thread) = WalSync::start(&db, state.clone()).unwrap();
        let mut answers = Vec::new();
        for _ in 0..200 {
            let (p, rx) = reply(Ok(()));
            sync.after_flush(vec![p]);
            answers.push(rx);
        }
        for a in answers {
            a.await.unwrap().unwrap();
        }
        let n = state.flushes();
        assert!((1..200).contains(&n), "{n} flushes for 200 operations");
        // A later operation needs a later flush.
        let (p, rx) = reply(Ok(()));
        sync.after_flush(vec![p]);
        rx.await.unwrap().unwrap();
        assert_eq!(state.flushes(), n + 1);
        drop(sync);
        thread.join().unwrap();
    }

    #[tokio::test]
    async fn a_failed_flush_fails_its_operations_and_every_later_one() {
        // A directory where the WAL file should be: opening it for writing fails.
        let tmp = TempDir::new("walsync-fail");
        let dir = &tmp.0;
        std::fs::create_dir_all(dir.join("t.db-wal")).unwrap();
        let state = Arc::new(SyncState::default());
        let (sync, _thread) = WalSync::start(&dir.join("t.db"), state.clone()).unwrap();
        let (p, rx) = reply(Ok(()));
        sync.after_flush(vec![p]);
        let e = rx.await.unwrap().unwrap_err().to_string();
        assert!(
            e.contains("t.db-wal") && e.contains("restart verigate"),
            "{e}"
        );
        // Permanent: the fault going away does not make later writes durable.
        std::fs::remove_dir(dir.join("t.db-wal")).unwrap();
        let (p, rx) = reply(Ok(()));
        sync.after_flush(vec![p]);
        let e = rx.await.unwrap().unwrap_err().to_string();
        assert!(e.contains("restart verigate"), "{e}");
        assert!(state.failure().is_some());
    }
}
