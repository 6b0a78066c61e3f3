//! Housekeeping: the sweep that expires SMS nobody could send in time and
//! forgets what no longer needs keeping (rate windows, idempotency keys,
//! old MOs, logins and sessions, the texts of finished SMS).

use crate::clock::Clock;
use crate::store::{Store, StoreResult};
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
/// How long an SMS's text (a code, a password) is kept after its final state.
pub const TEXT_KEPT: Duration = Duration::from_secs(3600);

/// What the sweep forgets at `now`.
pub fn forget(now: crate::store::Millis) -> crate::store::Forget {
    let ago = |d: Duration| now - d.as_millis() as i64;
    crate::store::Forget {
        mos_before: ago(MO_KEPT),
        logins_expired_before: ago(LOGIN_KEPT_AFTER_EXPIRY),
        sessions_expired_before: now,
    }
}

/// How often the sweep prunes housekeeping rows.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// What the sweep keeps of housekeeping rows.
pub struct Prune {
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
                "old MOs, logins and sessions",
                store.forget(&forget(now)).await,
            );
            report(
                "the texts of finished SMS",
                store.forget_texts(ago(TEXT_KEPT)).await,
            );
        }
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
