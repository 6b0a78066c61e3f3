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
//! Frames that a checkpoint has copied into the database file stay in the
//! WAL until the WAL is reused, and SQLite (in NORMAL mode) syncs the WAL
//! before each checkpoint, syncs the database file once a checkpoint has
//! copied the whole WAL, and syncs the new WAL header before reusing it.
//!
//! A failed fsync is found however it surfaces: through our descriptor,
//! which stays open for the store's lifetime (Linux reports a lost write to
//! every descriptor opened before it), through the checkpointer's I/O error,
//! or as a WAL file removed or replaced under us.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel as chan;

use super::engine::{Pending, StallClock};
use crate::store::StoreError;

/// What the flusher shares with the store. A failure is permanent: after a
/// failed fsync the kernel may have dropped the dirty WAL pages, and
/// SQLite's recovery stops at the first missing frame, so no later commit
/// can be promised either (PostgreSQL treats a failed fsync the same way).
/// The operator restarts the daemon.
#[derive(Debug, Default)]
pub struct SyncState {
    failed: Mutex<Option<WalFailure>>,
    flushes: AtomicU64,
    /// Set while an fsync runs (readiness reports one that hangs).
    pub flushing: StallClock,
}

/// Why the WAL can no longer be made durable (the operator's disk or
/// someone else touching our files).
#[derive(Debug, Clone, thiserror::Error)]
pub enum WalFailure {
    /// fsync failed.
    #[error("cannot flush {} to disk: {source}", .path.display())]
    Flush {
        /// The WAL.
        path: PathBuf,
        /// What the kernel said.
        source: Arc<std::io::Error>,
    },
    /// The path now names another file.
    #[error("{} was replaced by another file while verigate had it open", .path.display())]
    Replaced {
        /// The WAL.
        path: PathBuf,
    },
    /// The path names nothing.
    #[error("{} is gone while verigate had it open: {source}", .path.display())]
    Gone {
        /// The WAL.
        path: PathBuf,
        /// What the kernel said.
        source: Arc<std::io::Error>,
    },
    /// SQLite's checkpoint hit an I/O error (its fsync may be the one the
    /// kernel reported a lost write to).
    #[error("WAL checkpoint failed: {0}")]
    Checkpoint(Arc<rusqlite::Error>),
}

impl SyncState {
    /// Why writes can no longer be made durable, if a flush failed.
    pub fn failure(&self) -> Option<WalFailure> {
        self.failed.lock().expect("sync state").clone()
    }

    /// Makes the failure permanent (the first one is kept).
    pub fn poison(&self, why: WalFailure) {
        self.failed.lock().expect("sync state").get_or_insert(why);
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

/// The WAL as the flusher holds it: one descriptor for the store's
/// lifetime. Linux reports a writeback error to every descriptor opened
/// before it happened, even if another descriptor (SQLite's, syncing for a
/// checkpoint) has seen it already; a descriptor opened afresh would miss it.
struct Wal {
    path: PathBuf,
    file: File,
    ino: (u64, u64),
}

impl Wal {
    fn open(path: PathBuf) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new().write(true).open(&path)?;
        let m = file.metadata()?;
        Ok(Self {
            path,
            file,
            ino: (m.dev(), m.ino()),
        })
    }

    /// fsync, then check the path still names the file SQLite writes: while
    /// the store has connections open SQLite neither removes nor replaces
    /// its WAL, so a missing or different file means someone else did, and
    /// commits since went to a file recovery will not read.
    fn sync(&self) -> Result<(), WalFailure> {
        let path = self.path.clone();
        self.file.sync_data().map_err(|e| WalFailure::Flush {
            path: path.clone(),
            source: Arc::new(e),
        })?;
        match std::fs::metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) == self.ino => Ok(()),
            Ok(_) => Err(WalFailure::Replaced { path }),
            Err(e) => Err(WalFailure::Gone {
                path,
                source: Arc::new(e),
            }),
        }
    }
}

impl WalSync {
    /// Starts the flusher for the WAL of the database at `db` (the WAL must
    /// exist: the store opens it in WAL mode first).
    pub fn start(db: &Path, state: Arc<SyncState>) -> std::io::Result<(Self, JoinHandle<()>)> {
        let mut path = db.as_os_str().to_owned();
        path.push("-wal");
        let wal = Wal::open(PathBuf::from(path))?;
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
            let e = StoreError::Unavailable("the WAL flusher stopped; restart verigate".into());
            for p in done {
                p.finish(Err(e.clone()));
            }
        }
    }
}

/// One fsync of the WAL, or the standing failure. The lock is not held
/// during the fsync, so readiness can report a flush that hangs.
fn flush(wal: &Wal, state: &SyncState) -> Result<(), StoreError> {
    if state.failure().is_none() {
        let _busy = state.flushing.start();
        if let Err(e) = wal.sync() {
            state.poison(e);
        }
    }
    // Counted before anyone is answered: a test checks each answer follows a flush.
    state.flushes.fetch_add(1, Ordering::SeqCst);
    match state.failure() {
        Some(e) => Err(StoreError::Database {
            context: "writes cannot be made durable any more; restart verigate".into(),
            source: Some(Arc::new(e)),
        }),
        None => Ok(()),
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
        let tmp = TempDir::new("walsync-fail");
        let wal = tmp.0.join("t.db-wal");
        std::fs::write(&wal, b"frames").unwrap();
        let state = Arc::new(SyncState::default());
        let (sync, _thread) = WalSync::start(&tmp.0.join("t.db"), state.clone()).unwrap();
        // Someone removes the WAL under us: commits since are not where
        // recovery looks.
        std::fs::remove_file(&wal).unwrap();
        let (p, rx) = reply(Ok(()));
        sync.after_flush(vec![p]);
        let e = rx.await.unwrap().unwrap_err().to_string();
        assert!(
            e.contains("t.db-wal is gone") && e.contains("restart verigate"),
            "{e}"
        );
        // Permanent: the fault going away does not make later writes durable.
        std::fs::write(&wal, b"frames").unwrap();
        let (p, rx) = reply(Ok(()));
        sync.after_flush(vec![p]);
        let e = rx.await.unwrap().unwrap_err().to_string();
        assert!(e.contains("restart verigate"), "{e}");
        assert!(state.failure().is_some());
    }

    #[test]
    fn a_replaced_wal_is_a_failure() {
        let tmp = TempDir::new("walsync-replaced");
        let path = tmp.0.join("t.db-wal");
        std::fs::write(&path, b"frames").unwrap();
        let wal = Wal::open(path.clone()).unwrap();
        wal.sync().expect("the file we opened");
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"other").unwrap();
        let e = wal.sync().unwrap_err();
        assert!(matches!(e, WalFailure::Replaced { .. }), "{e}");
        assert!(e.to_string().contains("replaced"), "{e}");
    }
}
