//! The durable SMS outbox and delivery receipts.

use super::*;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Delivery state of an outbound message (also its API schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageState {
    /// Stored, waiting for the SMPP sender.
    Queued,
    /// Taken by a sender; submit_sm on the wire.
    Sending,
    /// Accepted by the SMSC (message ids recorded).
    Submitted,
    /// Receipt says delivered.
    Delivered,
    /// Receipt says not delivered.
    Undeliverable,
    /// Rejected by the SMSC.
    Rejected,
    /// Not sent before it expired.
    Expired,
}

impl MessageState {
    /// Storage/API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::Queued => "queued",
            MessageState::Sending => "sending",
            MessageState::Submitted => "submitted",
            MessageState::Delivered => "delivered",
            MessageState::Undeliverable => "undeliverable",
            MessageState::Rejected => "rejected",
            MessageState::Expired => "expired",
        }
    }

    /// True for the states no receipt moves a message out of.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            MessageState::Delivered
                | MessageState::Undeliverable
                | MessageState::Rejected
                | MessageState::Expired
        )
    }

    /// The state after a receipt saying `incoming` reaches a message in
    /// this state: a final state is kept (the first final receipt wins;
    /// later receipts of other parts, or duplicates, do not change it); a
    /// final receipt finishes an unfinished message; a non-final receipt
    /// only moves an unfinished message forward (queued → sending →
    /// submitted), never back to a state that would send it again.
    pub fn after_receipt(self, incoming: MessageState) -> MessageState {
        fn progress(s: MessageState) -> u8 {
            match s {
                MessageState::Queued => 0,
                MessageState::Sending => 1,
                _ => 2,
            }
        }
        if self.is_final() {
            self
        } else if incoming.is_final() || progress(incoming) > progress(self) {
            incoming
        } else {
            self
        }
    }

    /// Parses the storage spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => MessageState::Queued,
            "sending" => MessageState::Sending,
            "submitted" => MessageState::Submitted,
            "delivered" => MessageState::Delivered,
            "undeliverable" => MessageState::Undeliverable,
            "rejected" => MessageState::Rejected,
            "expired" => MessageState::Expired,
            _ => return None,
        })
    }
}

/// A message in the durable outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    /// Opaque id (`msg_…`).
    pub id: String,
    /// Verification it belongs to, if any.
    pub verification_id: Option<String>,
    /// Service code.
    pub service: String,
    /// Destination, E.164 with `+`.
    pub to: String,
    /// Sender address.
    pub from: String,
    /// Text to send.
    pub text: String,
    /// Delivery state.
    pub state: MessageState,
    /// Send attempts so far.
    pub attempts: u32,
    /// Not before this time (backoff).
    pub next_attempt_at: Millis,
    /// Give up after this time.
    pub expires_at: Millis,
    /// SMSC that took it.
    pub smsc: Option<String>,
    /// SMSC message ids (one per part).
    pub message_ids: Vec<String>,
    /// Last error, for operators.
    pub last_error: Option<String>,
    /// When created.
    pub created_at: Millis,
    /// Last change.
    pub updated_at: Millis,
}

/// Outcome of a delivery receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // one per receipt; boxing buys nothing here
pub enum DlrOutcome {
    /// Applied to this message (its state after the update).
    Applied(OutboxMessage),
    /// No message has this id yet (receipt before submit_sm_resp was
    /// recorded): parked, and applied when the id is recorded.
    Parked,
}

/// Number of outbox messages per state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxDepth {
    /// Waiting to be sent.
    pub queued: u64,
    /// Claimed by a sender.
    pub sending: u64,
    /// Accepted by an SMSC, no final receipt yet.
    pub submitted: u64,
}

/// The SMS outbox and delivery receipts.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Claims up to `limit` messages due at `now` (queued with
    /// next_attempt_at ≤ now, or sending whose lease ran out — a sender that
    /// died), marks them sending with a lease until `now + lease_ms`, and
    /// counts the attempt and the claim. Oldest first.
    async fn claim_outbox(
        &self,
        now: Millis,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<Claimed<OutboxMessage>>>;
    /// Extends each lease still held (its message still sending under that
    /// claim) to `until`; says of each, in order, whether it was extended,
    /// finished under that claim, or taken over by a later one.
    async fn extend_outbox(&self, leases: &[Lease], until: Millis) -> StoreResult<Vec<Extension>>;
    /// The SMSC accepted the message: records smsc and ids (with their
    /// correlation keys from `verigate_codecs::dlr::message_id_keys`) and
    /// applies any receipt parked for those ids. Returns the message after.
    /// Fenced: when another claim took the message over, only the ids are
    /// recorded (a receipt of this copy still finds the message) and the
    /// answer is `LeaseLost`.
    async fn mark_submitted(
        &self,
        lease: &Lease,
        smsc: &str,
        message_ids: &[String],
        at: Millis,
    ) -> StoreResult<OutboxMessage>;
    /// A send failed: back to queued at `retry_at`, or to `Rejected` when
    /// `retry_at` is None. Changes only an unfinished message, and only
    /// under the lease's claim (`LeaseLost` when another claim took it).
    async fn mark_failed(
        &self,
        lease: &Lease,
        error: &str,
        retry_at: Option<Millis>,
        at: Millis,
    ) -> StoreResult<()>;
    /// Marks messages still queued or sending past their expiry as Expired and returns them.
    async fn expire_outbox(&self, now: Millis) -> StoreResult<Vec<OutboxMessage>>;
    /// Applies a receipt to the message with any of these correlation keys;
    /// parks it if none is known yet.
    async fn record_dlr(
        &self,
        keys: &[String],
        state: MessageState,
        at: Millis,
    ) -> StoreResult<DlrOutcome>;
    /// A message by id.
    async fn get_message(&self, id: &str) -> StoreResult<Option<OutboxMessage>>;
    /// Messages of a verification, oldest first.
    async fn messages_for_verification(
        &self,
        verification_id: &str,
    ) -> StoreResult<Vec<OutboxMessage>>;
    /// Counts per state.
    async fn outbox_depth(&self) -> StoreResult<OutboxDepth>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_never_reopen_a_final_state() {
        use MessageState::*;
        let all = [
            Queued,
            Sending,
            Submitted,
            Delivered,
            Undeliverable,
            Rejected,
            Expired,
        ];
        for current in all {
            for incoming in all {
                let next = current.after_receipt(incoming);
                if current.is_final() {
                    assert_eq!(next, current, "{current:?} + {incoming:?}");
                } else if incoming.is_final() {
                    assert_eq!(next, incoming, "{current:?} + {incoming:?}");
                } else {
                    assert!(!next.is_final(), "{current:?} + {incoming:?}");
                }
            }
        }
        assert_eq!(
            Submitted.after_receipt(Queued),
            Submitted,
            "a receipt never requeues"
        );
        assert_eq!(
            Queued.after_receipt(Submitted),
            Submitted,
            "an accepted receipt moves forward"
        );
    }
}
