//! Housekeeping: the sweep that expires SMS nobody could send in time and
//! verifications nobody checked in time, and forgets what no longer needs
//! keeping (rate windows, idempotency keys, rows past retention, the texts
//! of finished SMS).

use crate::clock::{Clock, Millis};
use crate::config::RetentionConfig;
use crate::store::{Retained, Store, StoreResult, TextCut};
use crate::verify::service::VerifyService;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

/// How long an MO (its text and sender) is kept: well past the redelivery
/// window, for operators looking into a complaint.
pub const MO_KEPT: Duration = Duration::from_secs(24 * 3600);
/// How long a login is kept after its token expired (then its token reads
/// `unknown`, and a session never collected is gone with it).
pub const LOGIN_KEPT_AFTER_EXPIRY: Duration = Duration::from_secs(3600);
/// How long a binding whose code was never typed is kept (its code died
/// long before).
pub const PENDING_BINDING_KEPT: Duration = Duration::from_secs(86_400);

/// Where retention cuts `what` at `now`: rows before this go.
pub fn cut(what: Retained, now: Millis, r: &RetentionConfig) -> Millis {
    let ago = |d: Duration| now - d.as_millis() as i64;
    match what {
        Retained::Verifications
        | Retained::Outbox
        | Retained::Calls
        | Retained::Audit
        | Retained::RegistryEvents => ago(r.keep.0),
        Retained::PendingBindings => ago(PENDING_BINDING_KEPT),
        Retained::MoMessages | Retained::MoParts => ago(MO_KEPT),
        Retained::MoLogins => ago(LOGIN_KEPT_AFTER_EXPIRY),
        Retained::Sessions | Retained::MoveOffers => now,
        Retained::RelaySessions => ago(r.relay_keep.0),
    }
}

/// Which SMS texts go at `now`: those past their expiry by `text_grace`
/// whatever their state, and (`finished`) any finished one still holding
/// its text. (A text is blanked as its SMS reaches a final state; the
/// finished sweep is the backstop, run now and then as it reads more.)
pub fn text_cut(now: Millis, r: &RetentionConfig, finished: bool) -> TextCut {
    TextCut {
        final_before: if finished { now + 1 } else { Millis::MIN },
        expired_before: now - r.text_grace.0.as_millis() as i64,
    }
}

/// Blanks every text [`text_cut`] names at `now`, a batch per write.
pub async fn blank_texts(
    store: &dyn Store,
    r: &RetentionConfig,
    now: Millis,
    finished: bool,
) -> StoreResult<u64> {
    let cut = text_cut(now, r, finished);
    let mut total = 0;
    loop {
        let n = store.blank_texts(cut, r.batch).await?;
        total += n;
        if n < u64::from(r.batch) {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

/// One retention pass at `now`: every kind of row, a batch per write
/// (yielding between them so other writes go first), until a batch comes
/// back short. Returns the rows deleted per kind.
pub async fn retention_pass(
    store: &dyn Store,
    r: &RetentionConfig,
    now: Millis,
) -> StoreResult<Vec<(Retained, u64)>> {
    let mut done = Vec::new();
    for what in Retained::ALL {
        let before = cut(what, now, r);
        let mut total = 0;
        loop {
            let n = store.prune_batch(what, before, r.batch).await?;
            total += n;
            if n < u64::from(r.batch) {
                break;
            }
            tokio::task::yield_now().await;
        }
        done.push((what, total));
    }
    Ok(done)
}

/// How often the sweep prunes housekeeping rows.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// What the sweep keeps of housekeeping rows.
pub struct Prune {
    /// Rows and texts (`[retention]`; read each time, as SIGHUP may change it).
    pub retention: Box<dyn Fn() -> RetentionConfig + Send + Sync>,
    /// Rate windows younger than this stay (the longest configured window;
    /// read each time, as SIGHUP may change the limits).
    pub windows_kept: Box<dyn Fn() -> Duration + Send + Sync>,
    /// Idempotency keys are honoured this long.
    pub keys_kept: Duration,
}

impl std::fmt::Debug for Prune {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prune")
            .field("windows_kept", &(self.windows_kept)())
            .field("keys_kept", &self.keys_kept)
            .field("retention", &(self.retention)())
            .finish()
    }
}

/// Marks messages that could not be sent in time as expired and closes
/// verifications past their expiry (with their webhooks), every `every`,
/// and prunes rate windows and idempotency keys that can no longer matter.
pub async fn run_expiry(
    store: Arc<dyn Store>,
    verify: Arc<VerifyService>,
    every: Duration,
    prune: Prune,
    clock: Clock,
    stop: CancellationToken,
) {
    let mut last_prune: Option<tokio::time::Instant> = None;
    loop {
        if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(tokio::time::Instant::now());
            let now = clock.now_ms();
            let ago = |d: Duration| now - d.as_millis() as i64;
            report(
                "old rate windows",
                store.prune_windows(ago((prune.windows_kept)())).await,
            );
            report(
                "old idempotency keys",
                store.forget_idempotency_keys(ago(prune.keys_kept)).await,
            );
            report(
                "the texts of finished SMS",
                blank_texts(&*store, &(prune.retention)(), now, true).await,
            );
            match retention_pass(&*store, &(prune.retention)(), now).await {
                Ok(done) => {
                    for (what, n) in done.into_iter().filter(|(_, n)| *n > 0) {
                        debug!(rows = n, "retention: deleted old {}", what.as_str());
                    }
                }
                Err(e) => warn!(error = %e, "retention pass failed"),
            }
        }
        // Codes and passwords of SMS that never reached a final state go
        // once past their expiry, a batch per write.
        report(
            "the texts of expired SMS",
            blank_texts(&*store, &(prune.retention)(), clock.now_ms(), false).await,
        );
        match verify.expire_due(clock.now_ms()).await {
            Ok(n) if n > 0 => debug!(verifications = n, "expired verifications"),
            Ok(_) => {}
            Err(e) => error!(error = %e, "verification expiry sweep failed"),
        }
        match store.expire_outbox(clock.now_ms()).await {
            Ok(expired) => {
                for m in expired {
                    warn!(message = %m.id, "message expired before it could be sent");
                }
            }
            Err(e) => error!(error = %e, "expiry sweep failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Logs what one housekeeping step did.
fn report(what: &str, done: StoreResult<u64>) {
    match done {
        Ok(n) if n > 0 => debug!(rows = n, "forgot {what}"),
        Ok(_) => {}
        Err(e) => warn!(error = %e, "forgetting {what} failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::Random;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{MessageState, Service, VerificationStatus};
    use crate::verify::code::ServerSecret;
    use crate::verify::service::StartRequest;

    const T0: Millis = 1_800_000_000_000;
    const DAY: Millis = 24 * 3600 * 1000;

    async fn setup() -> (Arc<dyn Store>, Arc<VerifyService>, Service) {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.unwrap());
        let svc = Service {
            code: "acme".into(),
            name: "ACME".into(),
            settings: serde_json::json!({}),
            created_at: T0,
        };
        store.create_service(&svc).await.unwrap();
        let verify = Arc::new(VerifyService::new(
            store.clone(),
            ServerSecret::random(&Random::os()),
            crate::config::VerifyConfig::default(),
            Random::os(),
        ));
        (store, verify, svc)
    }

    async fn start(verify: &VerifyService, svc: &Service, to: &str, at: Millis) -> String {
        let req = StartRequest {
            to: to.into(),
            channel: "sms".into(),
            ..Default::default()
        };
        verify.start(svc, req, at).await.unwrap().verification.id
    }

    #[tokio::test]
    async fn rows_go_after_the_retention_in_batches_and_not_before() {
        let (store, verify, svc) = setup().await;
        let r = RetentionConfig {
            batch: 10,
            ..RetentionConfig::default()
        };
        let mut ids = Vec::new();
        for i in 0..25 {
            let id = start(&verify, &svc, &format!("+4474001{i:05}"), T0).await;
            verify.cancel(&svc, &id, T0 + 1).await.unwrap();
            ids.push(id);
        }
        let open = start(&verify, &svc, "+447400199999", T0).await;
        // A day short of the 30-day retention: everything stays.
        let done = retention_pass(&*store, &r, T0 + 29 * DAY).await.unwrap();
        assert!(done.iter().all(|(_, n)| *n == 0), "{done:?}");
        // Past it: the 25 closed ones go (three batches of at most 10), with
        // their SMS; the pending one stays whatever its age.
        let done = retention_pass(&*store, &r, T0 + 30 * DAY + 2)
            .await
            .unwrap();
        assert_eq!(done[0], (Retained::Verifications, 25));
        for id in &ids {
            assert!(store.get_verification(id).await.unwrap().is_none());
            assert!(store
                .messages_for_verification(id)
                .await
                .unwrap()
                .is_empty());
        }
        assert!(store.get_verification(&open).await.unwrap().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn the_sweep_blanks_codes_and_expires_verifications_on_its_clock() {
        let (store, verify, svc) = setup().await;
        let id = start(&verify, &svc, "+447400100200", T0).await;
        let msg = store.messages_for_verification(&id).await.unwrap()[0].clone();
        assert!(!msg.text.is_empty());
        // The SMS went out, but no receipt ever comes.
        let claimed = store.claim_outbox(T0, 10, 60_000).await.unwrap();
        store
            .mark_submitted(&claimed[0].lease, "smsc", &["m1".into()], T0)
            .await
            .unwrap();
        let stop = CancellationToken::new();
        // The sweep's clock starts at the SMS's expiry plus the grace.
        let r = RetentionConfig::default();
        let clock = Clock::virtual_at(msg.expires_at + r.text_grace.0.as_millis() as i64 + 1);
        let r = Box::new(move || r.clone());
        let sweep = tokio::spawn(run_expiry(
            store.clone(),
            verify.clone(),
            Duration::from_secs(1),
            Prune {
                windows_kept: Box::new(|| Duration::from_secs(600)),
                keys_kept: Duration::from_secs(24 * 3600),
                retention: r,
            },
            clock,
            stop.clone(),
        ));
        let mut blanked = false;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let m = store.get_message(&msg.id).await.unwrap().unwrap();
            let v = store.get_verification(&id).await.unwrap().unwrap();
            if m.text.is_empty() && v.status == VerificationStatus::Expired {
                assert_eq!(m.state, MessageState::Submitted, "no receipt came");
                blanked = true;
                break;
            }
        }
        stop.cancel();
        sweep.await.unwrap();
        assert!(blanked, "the code outlived its SMS's expiry and grace");
    }
}
