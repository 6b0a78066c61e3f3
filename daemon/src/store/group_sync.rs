//! Group commit for SQLite in WAL mode: transactions commit without an
//! fsync each (`synchronous=NORMAL`), then wait here until one shared
//! fsync of the WAL file covers them. Many concurrent commits cost one
//! disk flush, and none is acknowledged before it is on disk.
//!
//! Why this is as durable as `synchronous=FULL`: a commit appends its
//! frames to the WAL before it returns; a ticket is taken after that, and
//! the flusher reads the ticket counter before it starts its fsync, so every
//! ticket it reports was committed before the flush began. fsync works on
//! the file, not the descriptor, so flushing through our own descriptor
//! covers frames SQLite wrote through its own. Frames that a checkpoint has
//! already moved into the database file are covered by SQLite itself, which
//! in NORMAL mode syncs the WAL before each checkpoint and the database
//! after it, and syncs the WAL header before the WAL is reused.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use tokio::sync::watch;

/// What the flusher has made durable: the highest ticket covered, or the
/// error of a failed flush. A failure is permanent: after a failed fsync
/// the kernel may have dropped the dirty WAL pages, and SQLite's recovery
/// stops at the first missing frame, so no later commit can be promised
/// either (PostgreSQL treats a failed fsync the same way). The operator
/// restarts the daemon.
#[derive(Debug, Clone, Default)]
struct Flushed {
    upto: u64,
    failed: Option<String>,
}

/// Shared fsync of one database's WAL file.
#[derive(Debug)]
pub struct GroupSync {
    wal: PathBuf,
    issued: AtomicU64,
    wake: Mutex<bool>,
    cond: Condvar,
    /// Closed when the flusher thread ends, so no waiter hangs on it.
    flushed: watch::Receiver<Flushed>,
    flushes: AtomicU64,
}

impl GroupSync {
    /// Starts the flusher thread for the WAL of the database at `db`.
    pub fn start(db: &std::path::Path) -> Arc<Self> {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        let (tx, rx) = watch::channel(Flushed::default());
        let gs = Arc::new(GroupSync {
            wal: PathBuf::from(wal),
            issued: AtomicU64::new(0),
            wake: Mutex::new(false),
            cond: Condvar::new(),
            flushed: rx,
            flushes: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&gs);
        std::thread::Builder::new()
            .name("verigate-wal-sync".into())
            .spawn(move || {
                // Ends when the store is dropped; dropping `tx` then wakes
                // any waiter with an error instead of leaving it hanging.
                while let Some(gs) = weak.upgrade() {
                    gs.flush_round(&tx);
                }
            })
            .expect("spawn WAL sync thread");
        gs
    }

    /// The WAL file this flushes.
    pub fn wal_path(&self) -> &std::path::Path {
        &self.wal
    }

    /// Waits for work (briefly, so a dropped store ends the thread), then
    /// flushes everything committed so far.
    fn flush_round(&self, tx: &watch::Sender<Flushed>) {
        {
            let mut pending = self.wake.lock().expect("wake lock");
            if !*pending {
                pending = self
                    .cond
                    .wait_timeout(pending, std::time::Duration::from_millis(200))
                    .expect("wake lock")
                    .0;
            }
            if !*pending {
                return;
            }
            *pending = false;
        }
        let target = self.issued.load(Ordering::SeqCst);
        let done = tx.borrow().clone();
        if target <= done.upto {
            return;
        }
        // Once poisoned, every later waiter fails without another fsync.
        let result = match done.failed {
            Some(e) => Err(e),
            None => self.fsync(),
        };
        self.flushes.fetch_add(1, Ordering::Relaxed);
        tx.send_modify(|f| {
            if let Err(e) = result {
                f.failed = Some(e);
            }
            f.upto = target;
        });
    }

    fn fsync(&self) -> Result<(), String> {
        match std::fs::OpenOptions::new().write(true).open(&self.wal) {
            Ok(f) => f
                .sync_data()
                .map_err(|e| format!("cannot flush {} to disk: {e}", self.wal.display())),
            // No WAL file: nothing has been committed through one since the
            // last checkpoint that removed it, which SQLite synced.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("cannot open {}: {e}", self.wal.display())),
        }
    }

    /// Returns once everything committed before this call is on disk.
    pub async fn wait(&self) -> Result<(), String> {
        let ticket = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        {
            *self.wake.lock().expect("wake lock") = true;
            self.cond.notify_one();
        }
        let mut rx = self.flushed.clone();
        let f = rx
            .wait_for(|f| f.upto >= ticket)
            .await
            .map_err(|_| "the WAL sync thread stopped".to_string())?
            .clone();
        match f.failed {
            Some(e) => Err(format!(
                "{e}; later writes cannot be made durable, restart verigate"
            )),
            None => Ok(()),
        }
    }

    /// Why writes can no longer be made durable, if a flush failed.
    pub fn failure(&self) -> Option<String> {
        self.flushed.borrow().failed.clone()
    }

    /// Flushes done so far (each covers every commit waiting at its start).
    #[cfg(test)]
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_waiters_share_flushes() {
        let dir = std::env::temp_dir().join(format!("vg-gs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("t.db");
        std::fs::write(dir.join("t.db-wal"), b"frames").unwrap();
        let gs = GroupSync::start(&db);
        let waits: Vec<_> = (0..200)
            .map(|_| {
                let gs = gs.clone();
                tokio::spawn(async move { gs.wait().await })
            })
            .collect();
        for w in waits {
            w.await.unwrap().unwrap();
        }
        assert!(gs.flushes() >= 1);
        assert!(
            gs.flushes() < 200,
            "{} flushes for 200 waiters",
            gs.flushes()
        );
        // A later wait needs a later flush.
        let before = gs.flushes();
        gs.wait().await.unwrap();
        assert_eq!(gs.flushes(), before + 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_failed_flush_fails_its_waiters() {
        // A directory where the WAL file should be: opening it for writing fails.
        let dir = std::env::temp_dir().join(format!("vg-gs-fail-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("t.db-wal")).unwrap();
        let gs = GroupSync::start(&dir.join("t.db"));
        let e = gs.wait().await.unwrap_err();
        assert!(e.contains("t.db-wal"), "{e}");
        // Permanent: the fault going away does not make later writes durable.
        std::fs::remove_dir(dir.join("t.db-wal")).unwrap();
        let e = gs.wait().await.unwrap_err();
        assert!(e.contains("restart verigate"), "{e}");
        assert!(gs.failure().is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
