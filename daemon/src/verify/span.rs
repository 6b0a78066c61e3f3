//! The tracing span of a verification operation: which service, which
//! verification and channel, and how it came out. Log lines inside it
//! (limits, sends, webhooks) carry these fields.

use super::service::VerifyError;
use crate::store::Verification;
use tracing::field::Empty;
use tracing::Instrument;
use tracing::Span;

/// A span for `op` (start, check, cancel) by `service`; the rest is
/// recorded as it becomes known.
pub fn verification(op: &'static str, service: &str, id: Option<&str>) -> Span {
    let span = tracing::info_span!(
        "verification",
        op,
        service,
        id = Empty,
        channel = Empty,
        outcome = Empty,
        error = Empty,
    );
    if let Some(id) = id {
        span.record("id", id);
    }
    span
}

/// Runs `op` inside `span` and records its outcome (`verification` picks
/// the verification out of a success).
pub async fn traced<T>(
    span: Span,
    op: impl std::future::Future<Output = Result<T, VerifyError>>,
    verification: impl Fn(&T) -> &Verification,
) -> Result<T, VerifyError> {
    let r = op.instrument(span.clone()).await;
    outcome(&span, r.as_ref().map(verification));
    r
}

/// Records what the operation came to: the verification's id, channel and
/// status, or the error.
pub fn outcome(span: &Span, r: Result<&Verification, &VerifyError>) {
    match r {
        Ok(v) => {
            span.record("id", v.id.as_str());
            span.record("channel", v.channel.as_str());
            span.record("outcome", v.status.as_str());
        }
        Err(e) => {
            span.record("outcome", "refused");
            span.record("error", tracing::field::display(e));
        }
    }
}
