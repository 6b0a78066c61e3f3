//! What SMSCs tell us: delivery receipts and mobile-originated messages.

use std::sync::Arc;
use tokio::sync::mpsc;
use verigate_codecs::dlr::Dlr;
use verigate_codecs::smpp::{Body, CommandStatus, MessageIdResp};

/// An inbound event from an SMSC. Each carries a [`DeliveryAck`]: the
/// deliver_sm_resp goes back only when it is used, so a consumer can store
/// the event durably first (dropping it answers with a temporary error and
/// the SMSC redelivers).
#[derive(Debug)]
pub enum SmppEvent {
    /// A delivery receipt.
    Dlr {
        /// SMSC name.
        smsc: Arc<str>,
        /// The parsed receipt.
        dlr: Dlr,
        /// Acknowledge after storing.
        ack: DeliveryAck,
    },
    /// A whole mobile-originated message.
    Mo {
        /// SMSC name.
        smsc: Arc<str>,
        /// Sender address (the network vouches for it).
        from: String,
        /// The sender's type of number (1 international, 2 national, …):
        /// the same digits mean another number in another type.
        from_ton: u8,
        /// Destination (our short code).
        to: String,
        /// Decoded text.
        text: String,
        /// data_coding of the message.
        data_coding: u8,
        /// Acknowledge after storing.
        ack: DeliveryAck,
    },
    /// One part of a long mobile-originated message: stored on its own and
    /// acknowledged at once; the message is put together from the store.
    MoPart {
        /// SMSC name.
        smsc: Arc<str>,
        /// The part.
        part: crate::inbound::decode::Part<()>,
        /// Acknowledge after storing.
        ack: DeliveryAck,
    },
}

impl SmppEvent {
    /// Acknowledges the event positively.
    pub fn accept(self) {
        match self {
            SmppEvent::Dlr { ack, .. }
            | SmppEvent::Mo { ack, .. }
            | SmppEvent::MoPart { ack, .. } => ack.accept(),
        }
    }
}

/// A request from the SMSC still waiting for our response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owed {
    /// Its sequence number.
    pub(crate) sequence: u32,
    /// It was a data_sm (answered with data_sm_resp), not a deliver_sm.
    pub(crate) data_sm: bool,
}

impl Owed {
    /// The response body the request needs.
    pub(crate) fn response(self) -> Body {
        if self.data_sm {
            Body::DataSmResp(MessageIdResp::default())
        } else {
            Body::DeliverSmResp(MessageIdResp::default())
        }
    }
}

/// Answer owed to the SMSC for a deliver_sm or data_sm.
#[derive(Debug)]
pub struct DeliveryAck {
    pub(crate) generation: u64,
    pub(crate) sequences: Vec<Owed>,
    pub(crate) tx: mpsc::UnboundedSender<AckMsg>,
    pub(crate) sent: bool,
}

/// Internal message from an ack to its bind task.
#[derive(Debug)]
pub(crate) struct AckMsg {
    pub(crate) generation: u64,
    pub(crate) sequences: Vec<Owed>,
    pub(crate) status: CommandStatus,
}

impl DeliveryAck {
    fn send(&mut self, status: CommandStatus) {
        if !self.sent {
            self.sent = true;
            let _ = self.tx.send(AckMsg {
                generation: self.generation,
                sequences: std::mem::take(&mut self.sequences),
                status,
            });
        }
    }

    /// The event is safely stored: answer ESME_ROK.
    pub fn accept(mut self) {
        self.send(CommandStatus::ESME_ROK);
    }

    /// Could not take the event now: answer a temporary error so the SMSC
    /// delivers it again later.
    pub fn retry_later(mut self) {
        self.send(CommandStatus::ESME_RX_T_APPN);
    }
}

impl Drop for DeliveryAck {
    fn drop(&mut self) {
        self.send(CommandStatus::ESME_RX_T_APPN);
    }
}
