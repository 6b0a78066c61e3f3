//! The outbox's SMPP gateway: routes a message to an SMSC, submits its
//! parts, and turns the submit_sm_resps into a [`Sent`].

use super::{Sent, SmsGateway};
use crate::smpp::{NoRoute, Router, SubmitError, Submitted};
use crate::store::OutboxMessage;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tracing::debug;
use verigate_codecs::smpp::{Address, SubmitSm};

/// How often a submit waiting on a link checks that the link is still up.
const LINK_CHECK: Duration = Duration::from_millis(250);

/// The SMSCs of a [`Router`] as an SMS gateway.
#[derive(Debug)]
pub struct SmppGateway {
    router: Arc<Router>,
    /// How long a submit may wait for a link that is down before the
    /// message is handed back (another instance may have a link).
    link_wait: Duration,
}

impl SmppGateway {
    /// Sends through `router`, handing a message back after `link_wait`
    /// without a link.
    pub fn new(router: Arc<Router>, link_wait: Duration) -> Self {
        SmppGateway { router, link_wait }
    }
}

#[async_trait]
impl SmsGateway for SmppGateway {
    fn capacity(&self) -> usize {
        // No more than the bound links can have on the wire (twice their
        // windows): a message must not wait in memory behind a full window.
        self.router
            .smscs()
            .iter()
            .map(|c| c.submit_bound_count() * c.config().session.window * 2)
            .sum()
    }

    async fn send(&self, msg: &OutboxMessage) -> Sent {
        let client = match self.router.route(&msg.to) {
            Ok(c) => c,
            Err(NoRoute::Unrouted) => return Sent::Rejected(NoRoute::Unrouted.to_string()),
            // An operator took the link out: wait for it (or another route).
            Err(NoRoute::Disabled) => {
                return Sent::Retry {
                    error: NoRoute::Disabled.to_string(),
                    now: false,
                }
            }
        };
        let template = SubmitSm {
            source: Address::sender(&msg.from),
            dest: Address::international(&msg.to),
            registered_delivery: 1,
            ..Default::default()
        };
        // While the link is down, give the message back (dropping the
        // submit makes the bind discard its unsent copy) rather than hold
        // it while another instance could send it.
        let submit = client.submit_text(&template, &msg.text);
        tokio::pin!(submit);
        let mut down_since: Option<tokio::time::Instant> = None;
        let outcome = loop {
            tokio::select! {
                o = &mut submit => break o,
                _ = tokio::time::sleep(LINK_CHECK) => {
                    if client.submit_bound_count() > 0 {
                        down_since = None;
                    } else if !client.is_enabled()
                        || down_since.get_or_insert_with(tokio::time::Instant::now).elapsed() >= self.link_wait
                    {
                        // Disabled: at once, so another route can take it.
                        return Sent::Retry { error: "SMSC link down; requeued".into(), now: true };
                    }
                }
            }
        };
        match outcome {
            Err(e) => Sent::Retry {
                error: e.to_string(),
                now: false,
            },
            Ok(parts) => verdict(client.name(), parts),
        }
    }
}

/// What the submit_sm_resps of a message's parts amount to.
fn verdict(smsc: &str, parts: Vec<Result<Submitted, SubmitError>>) -> Sent {
    let mut ids = Vec::new();
    let mut failure: Option<SubmitError> = None;
    for p in parts {
        match p {
            Ok(s) => ids.push(s.message_id),
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    match failure {
        None => Sent::Submitted {
            smsc: smsc.to_string(),
            ids,
        },
        Some(SubmitError::Rejected(st)) if !st.is_temporary() => {
            Sent::Rejected(format!("rejected by SMSC: {st}"))
        }
        // Some parts were taken: resending would duplicate them.
        Some(_) if !ids.is_empty() => Sent::Submitted {
            smsc: smsc.to_string(),
            ids,
        },
        // Disabled meanwhile: nothing went out; another route may take it now.
        Some(SubmitError::Disabled) => Sent::Retry {
            error: SubmitError::Disabled.to_string(),
            now: true,
        },
        // Temporary or unknown outcome (timeout, connection lost): retry. A
        // lost response may mean the SMSC took it, so the handset might get
        // the code twice — better than never.
        Some(e) => {
            debug!(error = %e, "send failed; will retry");
            Sent::Retry {
                error: e.to_string(),
                now: false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use verigate_codecs::smpp::CommandStatus;

    fn ok(id: &str) -> Result<Submitted, SubmitError> {
        Ok(Submitted {
            message_id: id.into(),
            smsc: "a".into(),
        })
    }

    #[test]
    fn part_results_decide_the_verdict() {
        assert_eq!(
            verdict("a", vec![ok("1"), ok("2")]),
            Sent::Submitted {
                smsc: "a".into(),
                ids: vec!["1".into(), "2".into()]
            }
        );
        // A final refusal of any part rejects the message.
        assert!(matches!(
            verdict(
                "a",
                vec![ok("1"), Err(SubmitError::Rejected(CommandStatus(0x0B)))]
            ),
            Sent::Rejected(_)
        ));
        // A temporary failure after a part was taken: no resend.
        assert!(matches!(
            verdict("a", vec![ok("1"), Err(SubmitError::Timeout)]),
            Sent::Submitted { .. }
        ));
        assert!(matches!(
            verdict("a", vec![Err(SubmitError::Rejected(CommandStatus(0x58)))]),
            Sent::Retry { now: false, .. }
        ));
        assert!(matches!(
            verdict("a", vec![Err(SubmitError::Disabled)]),
            Sent::Retry { now: true, .. }
        ));
    }
}
