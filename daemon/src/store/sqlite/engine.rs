//! The threads behind the SQLite store. SQLite calls block, and a thread hop
//! per statement (what an async driver does) costs more than the statement
//! itself, so whole store operations run as closures on threads that own
//! their connections:
//! - one writer, which runs every write queued meanwhile in one `BEGIN
//!   IMMEDIATE` transaction, each in its own savepoint (a failing operation
//!   undoes only its own changes), and commits them together;
//! - a few readers (WAL: reads run beside the writer and see every commit
//!   made before they start);
//! - the WAL flusher ([`super::wal_sync`]), which answers durable writes
//!   after one shared fsync while the writer goes on;
//! - the checkpointer, which copies the WAL into the database file on its
//!   own connection (passive: it never blocks the writer), so the writer
//!   does not stop for checkpoints.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel as chan;
use rusqlite::Connection;
use tokio::sync::oneshot;

use super::wal_sync::{SyncState, WalFailure, WalSync};
use crate::store::{StoreError, StoreResult};

/// At most this many writes share one transaction.
const MAX_BATCH: usize = 512;
/// How often the checkpointer copies the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// A write still queued after this is refused unrun (the writer is stuck or
/// far behind): the caller gets a clear error instead of waiting on.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(10);
/// A transaction or flush running this long is reported by readiness.
const STALL_REPORT: Duration = Duration::from_secs(10);

/// When the current piece of blocking work (a transaction, an fsync)
/// started, so readiness can report one that hangs.
#[derive(Debug, Default)]
pub(crate) struct StallClock(std::sync::atomic::AtomicU64);

/// Clears its [`StallClock`] when dropped.
pub(crate) struct Busy<'a>(&'a StallClock);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0 .0.store(0, Ordering::SeqCst);
    }
}

fn epoch_ms() -> u64 {
    crate::clock::unix_ms().max(1) as u64
}

impl StallClock {
    /// Marks work as running until the guard drops.
    pub fn start(&self) -> Busy<'_> {
        self.0.store(epoch_ms().max(1), Ordering::SeqCst);
        Busy(self)
    }

    /// How long the running work has taken, if it has run at least `limit`.
    pub fn stalled(&self, limit: Duration) -> Option<Duration> {
        match self.0.load(Ordering::SeqCst) {
            0 => None,
            since => {
                let took = Duration::from_millis(epoch_ms().saturating_sub(since));
                (took >= limit).then_some(took)
            }
        }
    }
}

/// A finished operation waiting for the fate of its transaction.
pub(crate) trait Pending: Send {
    /// Answers the caller: its own result, or `commit`'s error if its
    /// transaction did not become durable.
    fn finish(self: Box<Self>, commit: Result<(), StoreError>);
}

struct Reply<T> {
    result: StoreResult<T>,
    tx: oneshot::Sender<StoreResult<T>>,
}

impl<T: Send> Pending for Reply<T> {
    fn finish(self: Box<Self>, commit: Result<(), StoreError>) {
        let out = match (self.result, commit) {
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
            (Ok(v), Ok(())) => Ok(v),
        };
        // The caller may have gone (a dropped request); the work stands.
        let _ = self.tx.send(out);
    }
}

/// A pending answer holding `result`, and where it will arrive.
#[cfg(test)]
pub(crate) fn reply<T: Send + 'static>(
    result: StoreResult<T>,
) -> (Box<dyn Pending>, oneshot::Receiver<StoreResult<T>>) {
    let (tx, rx) = oneshot::channel();
    (Box::new(Reply { result, tx }), rx)
}

/// An operation: runs on a connection (or is told why it cannot) and says
/// whether it succeeded, with its pending answer.
type Op = Box<dyn FnOnce(Result<&Connection, StoreError>) -> (bool, Box<dyn Pending>) + Send>;

fn op<T: Send + 'static>(
    f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
) -> (Op, oneshot::Receiver<StoreResult<T>>) {
    let (tx, rx) = oneshot::channel();
    let op: Op = Box::new(move |conn| {
        let result = conn.and_then(|c| {
            catch_unwind(AssertUnwindSafe(|| f(c))).unwrap_or_else(|_| {
                Err(StoreError::Bug(
                    "a store operation panicked; its changes were rolled back".into(),
                ))
            })
        });
        (
            result.is_ok(),
            Box::new(Reply { result, tx }) as Box<dyn Pending>,
        )
    });
    (op, rx)
}

struct WriteJob {
    /// Answer only once on disk (else at commit).
    durable: bool,
    op: Op,
    queued: Instant,
}

/// The running threads of one store.
pub(crate) struct Engine {
    writer: RwLock<Option<chan::Sender<WriteJob>>>,
    /// None: reads go to the writer (an in-memory database has one connection).
    readers: RwLock<Option<chan::Sender<Op>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Dropped at close, which ends the checkpointer.
    checkpoints: Mutex<Option<chan::Sender<()>>>,
    /// Shared with the WAL flusher (None: nothing to flush).
    sync: Option<Arc<SyncState>>,
    /// The writer's health, shared with its thread.
    health: Arc<WriterHealth>,
}

/// What readiness needs to know about the writer thread.
#[derive(Debug, Default)]
struct WriterHealth {
    /// Set when the thread ends (normally only at close).
    gone: AtomicBool,
    /// Why it stopped early, if it did.
    broken: Mutex<Option<String>>,
    /// Set while a transaction runs.
    writing: StallClock,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("group_commit", &self.sync.is_some())
            .finish_non_exhaustive()
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the store is closed or its writer thread stopped".into())
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> StoreResult<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| StoreError::database(format!("cannot start the {name} thread"), e))
}

impl Engine {
    /// Starts the threads: `writer` writes; `readers` (may be empty) read;
    /// with `wal` (the database file and a connection to checkpoint it),
    /// durable writes wait for a flush of its WAL.
    pub fn start(
        writer: Connection,
        readers: Vec<Connection>,
        wal: Option<(&std::path::Path, Connection)>,
    ) -> StoreResult<Self> {
        let mut threads = Vec::new();
        let mut checkpoints = None;
        let (sync, state) = match wal {
            Some((db, checkpointer)) => {
                let state = Arc::new(SyncState::default());
                let (sync, t) = WalSync::start(db, state.clone())
                    .map_err(|e| StoreError::database("cannot start the WAL flusher", e))?;
                threads.push(t);
                let (tx, rx) = chan::bounded::<()>(0);
                let st = state.clone();
                threads.push(spawn("verigate-db-checkpoint", move || {
                    run_checkpointer(&checkpointer, &rx, &st)
                })?);
                checkpoints = Some(tx);
                (Some(sync), Some(state))
            }
            None => (None, None),
        };
        let (wtx, wrx) = chan::unbounded::<WriteJob>();
        let health = Arc::new(WriterHealth::default());
        let h = health.clone();
        threads.push(spawn("verigate-db-writer", move || {
            // Marks the writer gone however the thread ends (a panic too).
            struct Gone(Arc<WriterHealth>);
            impl Drop for Gone {
                fn drop(&mut self) {
                    self.0.gone.store(true, Ordering::SeqCst);
                }
            }
            let _gone = Gone(h.clone());
            if let Err(why) = run_writer(&writer, &wrx, sync.as_ref(), &h.writing) {
                tracing::error!(error = %why, "the store's writer stopped");
                *h.broken.lock().expect("health lock") = Some(why.to_string());
            }
        })?);
        let rtx = if readers.is_empty() {
            None
        } else {
            let (rtx, rrx) = chan::unbounded::<Op>();
            for conn in readers {
                let rrx = rrx.clone();
                threads.push(spawn("verigate-db-reader", move || {
                    for op in rrx.iter() {
                        let (_, answer) = op(Ok(&conn));
                        answer.finish(Ok(()));
                    }
                })?);
            }
            Some(rtx)
        };
        Ok(Self {
            writer: RwLock::new(Some(wtx)),
            readers: RwLock::new(rtx),
            threads: Mutex::new(threads),
            checkpoints: Mutex::new(checkpoints),
            sync: state,
            health,
        })
    }

    /// Runs `f` in the writer's next transaction; answers once it is
    /// committed and, if `durable`, on disk.
    pub async fn write<T: Send + 'static>(
        &self,
        durable: bool,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (op, rx) = op(f);
        self.send_write(WriteJob {
            durable,
            op,
            queued: Instant::now(),
        })?;
        rx.await.map_err(|_| stopped())?
    }

    /// Runs `f` on a reader connection.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (op, rx) = op(f);
        let sent = match &*self.readers.read().expect("readers lock") {
            Some(tx) => tx.send(op).map_err(|_| stopped()),
            None => self.send_write(WriteJob {
                durable: false,
                op,
                queued: Instant::now(),
            }),
        };
        sent?;
        rx.await.map_err(|_| stopped())?
    }

    fn send_write(&self, job: WriteJob) -> StoreResult<()> {
        match &*self.writer.read().expect("writer lock") {
            Some(tx) => tx.send(job).map_err(|_| stopped()),
            None => Err(stopped()),
        }
    }

    /// Why writes can no longer be made durable (or made at all, or not
    /// soon), if so.
    pub fn problem(&self) -> Option<String> {
        if let Some(e) = self.sync.as_ref().and_then(|s| s.failure()) {
            return Some(format!(
                "{e}; later writes cannot be made durable, restart verigate"
            ));
        }
        if let Some(why) = self.health.broken.lock().expect("health lock").clone() {
            return Some(format!(
                "the store's writer stopped: {why}; restart verigate"
            ));
        }
        let open = self.writer.read().expect("writer lock").is_some();
        if open && self.health.gone.load(Ordering::SeqCst) {
            return Some("the store's writer thread stopped; restart verigate".into());
        }
        if let Some(t) = self.health.writing.stalled(STALL_REPORT) {
            return Some(format!(
                "a database transaction has been running for {} s (disk or lock stuck?)",
                t.as_secs()
            ));
        }
        if let Some(t) = self
            .sync
            .as_ref()
            .and_then(|s| s.flushing.stalled(STALL_REPORT))
        {
            return Some(format!(
                "a flush of the write-ahead log has been running for {} s (disk stuck?)",
                t.as_secs()
            ));
        }
        None
    }

    /// The flusher's counters (tests).
    #[cfg(test)]
    pub fn sync_state(&self) -> Option<&Arc<SyncState>> {
        self.sync.as_ref()
    }

    /// Stops taking work, lets queued work finish and waits for the threads
    /// (the last connection to close checkpoints the WAL).
    pub async fn close(&self) {
        self.writer.write().expect("writer lock").take();
        self.readers.write().expect("readers lock").take();
        self.checkpoints.lock().expect("checkpoints lock").take();
        let threads = std::mem::take(&mut *self.threads.lock().expect("threads lock"));
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

/// Copies the WAL into the database every [`CHECKPOINT_EVERY`] until the
/// engine closes. Passive: it copies what no reader still needs and never
/// waits for a lock, so the writer goes on meanwhile; once everything is
/// copied, the writer starts the WAL over from its beginning. An I/O error
/// poisons the store like a failed flush: SQLite's fsync before the copy
/// may be the one the kernel reported a lost write to.
fn run_checkpointer(conn: &Connection, stop: &chan::Receiver<()>, sync: &SyncState) {
    while let Err(chan::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            Ok(()) => {}
            Err(e @ rusqlite::Error::SqliteFailure(f, _))
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::SystemIoFailure | rusqlite::ErrorCode::DiskFull
                ) =>
            {
                let why = WalFailure::Checkpoint(Arc::new(e));
                tracing::error!(error = %why, "the store can no longer make writes durable");
                sync.poison(why);
            }
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed; the writer will checkpoint instead");
            }
        }
    }
}

/// The writer loop: takes what is queued, runs it as one transaction,
/// commits, hands durable answers to the flusher. Ends when every sender is
/// gone, or (with the reason) when the connection is left inside a
/// transaction it cannot roll back; what is queued then fails.
fn run_writer(
    conn: &Connection,
    rx: &chan::Receiver<WriteJob>,
    sync: Option<&WalSync>,
    writing: &StallClock,
) -> Result<(), StuckInTransaction> {
    let mut queue: VecDeque<WriteJob> = VecDeque::new();
    while let Ok(first) = rx.recv() {
        queue.push_back(first);
        queue.extend(rx.try_iter().take(MAX_BATCH - 1));
        while !queue.is_empty() {
            let _busy = writing.start();
            run_transaction(conn, &mut queue, sync);
            if !conn.is_autocommit() {
                let e = StoreError::Unavailable(format!("{StuckInTransaction}; restart verigate"));
                for job in queue.drain(..).chain(rx.try_iter()) {
                    let (_, answer) = (job.op)(Err(e.clone()));
                    answer.finish(Ok(()));
                }
                return Err(StuckInTransaction);
            }
        }
    }
    Ok(())
}

/// Why the writer stopped: SQLite would not roll a failed transaction back.
#[derive(Debug, thiserror::Error)]
#[error("the connection is stuck inside a transaction that would not roll back")]
struct StuckInTransaction;

/// Runs jobs from the front of `queue` in one transaction. Normally all of
/// them; if SQLite itself rolls the transaction back (a full disk, an I/O
/// error), the jobs run so far fail and the rest wait for the next one.
/// Jobs queued longer than [`QUEUE_TIMEOUT`] are refused unrun.
fn run_transaction(conn: &Connection, queue: &mut VecDeque<WriteJob>, sync: Option<&WalSync>) {
    let mut stale = 0;
    while queue
        .front()
        .is_some_and(|j| j.queued.elapsed() >= QUEUE_TIMEOUT)
    {
        let job = queue.pop_front().expect("front");
        let (_, answer) = (job.op)(Err(StoreError::Unavailable(format!(
            "the store is overloaded: this write waited more than {} s for the database and was not made",
            QUEUE_TIMEOUT.as_secs()
        ))));
        answer.finish(Ok(()));
        stale += 1;
    }
    if stale > 0 {
        tracing::warn!(
            refused = stale,
            "writes waited too long for the database; refused"
        );
    }
    if queue.is_empty() {
        return;
    }
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let e = StoreError::database("cannot start a write transaction", e);
        for job in queue.drain(..) {
            let (_, answer) = (job.op)(Err(e.clone()));
            answer.finish(Ok(()));
        }
        return;
    }
    let mut durable: Vec<Box<dyn Pending>> = Vec::with_capacity(queue.len());
    let mut at_commit: Vec<Box<dyn Pending>> = Vec::new();
    let mut lost: Option<StoreError> = None;
    while let Some(job) = queue.pop_front() {
        let (ok, answer) = match savepoint(conn, "SAVEPOINT op") {
            Ok(()) => (job.op)(Ok(conn)),
            Err(e) => (job.op)(Err(e)),
        };
        if ok {
            if let Err(e) = savepoint(conn, "RELEASE op") {
                lost.get_or_insert(e);
            }
        } else if savepoint(conn, "ROLLBACK TO op")
            .and_then(|()| savepoint(conn, "RELEASE op"))
            .is_err()
        {
            lost.get_or_insert(StoreError::database_failed(
                "SQLite rolled the write transaction back",
            ));
        }
        if job.durable {
            durable.push(answer);
        } else {
            at_commit.push(answer);
        }
        if lost.is_some() || conn.is_autocommit() {
            break;
        }
    }
    let commit = match lost {
        Some(e) => Err(e),
        None if conn.is_autocommit() => Err(StoreError::database_failed(
            "SQLite rolled the write transaction back",
        )),
        None => conn
            .execute_batch("COMMIT")
            .map_err(|e| StoreError::database("commit failed", e)),
    };
    if let Err(e) = commit {
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for answer in durable.into_iter().chain(at_commit) {
            answer.finish(Err(e.clone()));
        }
        return;
    }
    for answer in at_commit {
        answer.finish(Ok(()));
    }
    match sync {
        Some(sync) if !durable.is_empty() => sync.after_flush(durable),
        _ => {
            for answer in durable {
                answer.finish(Ok(()));
            }
        }
    }
}

fn savepoint(conn: &Connection, sql: &str) -> StoreResult<()> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute([]))
        .map(|_| ())
        .map_err(|e| StoreError::database(sql, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY)")
            .unwrap();
        Engine::start(c, Vec::new(), None).unwrap()
    }

    fn insert(k: i64) -> impl FnOnce(&Connection) -> StoreResult<()> + Send + 'static {
        move |c| {
            c.execute("INSERT INTO t (k) VALUES (?1)", [k])?;
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failing_write_undoes_only_itself_in_a_shared_transaction() {
        let e = Arc::new(engine());
        // Queued together, so most share transactions; every third repeats a key.
        let tasks: Vec<_> = (0..300)
            .map(|i| {
                let e = e.clone();
                let k = if i % 3 == 2 { i - 1 } else { i };
                tokio::spawn(async move { e.write(true, insert(k)).await })
            })
            .collect();
        let mut failed = 0;
        for t in tasks {
            if t.await.unwrap().is_err() {
                failed += 1;
            }
        }
        assert_eq!(failed, 100, "exactly the repeated keys fail");
        let n: i64 = e
            .write(false, |c| {
                Ok(c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))?)
            })
            .await
            .unwrap();
        assert_eq!(n, 200, "every other write was kept");
    }

    #[tokio::test]
    async fn a_panicking_operation_is_an_error_and_the_writer_goes_on() {
        let e = engine();
        let out: StoreResult<()> = e
            .write(true, |c| {
                c.execute("INSERT INTO t (k) VALUES (1)", [])?;
                panic!("bug")
            })
            .await;
        assert!(out.unwrap_err().to_string().contains("panicked"));
        e.write(true, insert(2)).await.unwrap();
        let n: i64 = e
            .read(|c| Ok(c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(n, 1, "the panicking operation's insert was rolled back");
        assert_eq!(e.problem(), None);
    }

    #[tokio::test]
    async fn a_write_queued_too_long_is_refused_unrun() {
        let e = engine();
        let (op, rx) = op(insert(1));
        e.send_write(WriteJob {
            durable: true,
            op,
            queued: Instant::now() - QUEUE_TIMEOUT,
        })
        .unwrap();
        let err = rx.await.unwrap().unwrap_err().to_string();
        assert!(
            err.contains("overloaded") && err.contains("not made"),
            "{err}"
        );
        let n: i64 = e
            .read(|c| Ok(c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(n, 0, "the refused write did not run");
        e.write(true, insert(1)).await.expect("fresh writes go on");
    }

    #[test]
    fn long_running_work_is_reported_as_stalled() {
        let clock = StallClock::default();
        assert_eq!(clock.stalled(Duration::ZERO), None, "idle");
        let busy = clock.start();
        assert!(clock.stalled(Duration::ZERO).is_some());
        assert_eq!(clock.stalled(STALL_REPORT), None, "just started");
        clock
            .0
            .store(epoch_ms() - 11_000, std::sync::atomic::Ordering::SeqCst);
        let t = clock.stalled(STALL_REPORT).expect("stalled");
        assert!(t >= Duration::from_secs(11));
        drop(busy);
        assert_eq!(clock.stalled(Duration::ZERO), None, "done");
    }

    #[tokio::test]
    async fn after_close_operations_fail_instead_of_hanging() {
        let e = engine();
        e.write(true, insert(1)).await.unwrap();
        e.close().await;
        let err = e.write(true, insert(2)).await.unwrap_err();
        assert!(err.to_string().contains("closed"), "{err}");
        let err = e.read(|_| Ok(())).await.unwrap_err();
        assert!(err.to_string().contains("closed"), "{err}");
    }
}
