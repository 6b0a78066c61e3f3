//! `[retention]`: how long rows are kept, and when SMS texts are blanked.

use super::Span;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[retention]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Closed verifications (with their SMS, calls and keys), gateway
    /// calls, MO replies and audit events are deleted this long after their
    /// last change.
    pub keep: Span,
    /// An SMS's text (a code, a password) is blanked at its final state, or
    /// this long after its expiry when no final state (receipt) comes.
    pub text_grace: Span,
    /// Rows deleted per write, so the writer serves requests in between.
    pub batch: u32,
    /// The relay's sessions and payments (who paid whom, with which SIM)
    /// are deleted this long after the session expired: the carrier's
    /// record of what it vouched for and relayed.
    pub relay_keep: Span,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            keep: Span(Duration::from_secs(30 * 24 * 3600)),
            text_grace: Span(Duration::from_secs(600)),
            batch: 500,
            relay_keep: Span(Duration::from_secs(400 * 24 * 3600)),
        }
    }
}

/// Problems of `[retention]` (see [`super::Config::problems`]).
pub fn problems(c: &super::Config, p: &mut Vec<String>) {
    let r = &c.retention;
    let day = Duration::from_secs(24 * 3600);
    super::calls::span_between(p, "retention.keep", r.keep, day, 3650 * day);
    super::calls::span_between(p, "retention.relay_keep", r.relay_keep, day, 3650 * day);
    // A gateway call's row is what makes its (SN, TN, VN) single use.
    for g in &c.voice_gateway {
        if g.replay_window.0 > r.keep.0 {
            p.push(format!(
                "retention.keep = \"{}\": shorter than voice_gateway {}'s replay_window (\"{}\"), whose calls it must keep",
                r.keep, g.sn, g.replay_window
            ));
        }
    }
    if r.text_grace.0 > day {
        p.push(format!(
            "retention.text_grace = \"{}\": must be at most 1d",
            r.text_grace
        ));
    }
    if !(10..=10_000).contains(&r.batch) {
        p.push(format!(
            "retention.batch = {}: must be between 10 and 10000",
            r.batch
        ));
    }
}
