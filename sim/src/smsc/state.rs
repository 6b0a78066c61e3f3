//! Shared simulator state: settings, fault knobs, handset inboxes and the
//! registry of bound sessions (so DLRs and MOs can reach a receiver).

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::mpsc;
use verigate_codecs::smpp::{DataSm, SubmitSm};

/// How message ids are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum IdFormat {
    /// Upper-case hex, e.g. `1A2B3C`.
    Hex,
    /// Ten-digit zero-padded decimal, e.g. `0001715004`.
    Decimal,
}

impl IdFormat {
    /// Renders a numeric id.
    pub fn render(self, n: u64) -> String {
        match self {
            IdFormat::Hex => format!("{n:X}"),
            IdFormat::Decimal => format!("{n:010}"),
        }
    }
}

/// Fault injection knobs, changeable at run time through the control API.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Fraction of submit_sm answered 0x58 ESME_RTHROTTLED.
    pub throttle_ratio: f64,
    /// Throttle every Nth submit_sm of a connection (0: never); deterministic.
    pub throttle_every_n: u64,
    /// Fraction of submit_sm answered 0x45 ESME_RSUBMITFAIL.
    pub reject_ratio: f64,
    /// Send error responses as a bare 16-byte header (no body).
    pub empty_error_bodies: bool,
    /// Drop the TCP connection after every N PDUs received (0: never).
    pub drop_every_n_pdus: u64,
    /// Delay every submit_sm_resp by this many milliseconds.
    pub response_delay_ms: u64,
    /// Send a malformed PDU to the ESME after every N submits (0: never).
    pub malformed_every_n: u64,
    /// Send each DLR before the submit_sm_resp it belongs to.
    pub dlr_before_response: bool,
    /// Do not answer enquire_link.
    pub enquire_link_silence: bool,
    /// Answer a good bind only after this many milliseconds (an SMSC that
    /// is slow to come back after a restart).
    pub bind_delay_ms: u64,
}

/// DLR behaviour.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DlrSettings {
    /// Delay before the receipt, milliseconds.
    pub delay_ms: u64,
    /// Fraction of receipts that say UNDELIV instead of DELIVRD.
    pub undeliverable_ratio: f64,
    /// How the id is quoted in the receipt text.
    pub text_id_format: IdFormat,
    /// Include receipted_message_id and message_state TLVs.
    pub tlvs: bool,
}

/// One message as the handset received it.
#[derive(Debug, Clone, Serialize)]
pub struct InboxMessage {
    /// SMSC message id (of the first part for long messages).
    pub message_id: String,
    /// All part ids.
    pub part_ids: Vec<String>,
    /// Sender.
    pub from: String,
    /// Decoded text (reassembled).
    pub text: String,
    /// data_coding of the message.
    pub data_coding: u8,
    /// Number of parts.
    pub parts: u8,
    /// Receipt state sent to the ESME, once sent.
    pub dlr_state: Option<String>,
    /// Milliseconds since the Unix epoch when received.
    pub received_ms: i64,
}

/// Parts of a long message not yet complete.
#[derive(Debug, Default)]
pub(crate) struct PartialMessage {
    pub(crate) parts: Vec<Option<(String, Vec<u8>)>>,
    pub(crate) data_coding: u8,
}

/// A command to a connection task.
#[derive(Debug)]
pub enum ToConn {
    /// Deliver this deliver_sm (MO or DLR).
    Deliver(SubmitSm),
    /// Deliver this data_sm (an MO sent the SMPP 3.4 data_sm way).
    DeliverData(DataSm),
}

/// A bound session able to receive deliver_sm.
#[derive(Debug, Clone)]
pub(crate) struct Receiver {
    pub(crate) conn: u64,
    pub(crate) system_id: String,
    pub(crate) tx: mpsc::Sender<ToConn>,
}

/// Counters for `GET /stats`.
#[derive(Debug, Default, Serialize)]
pub struct Stats {
    /// Binds accepted.
    pub binds: u64,
    /// Sessions bound right now.
    pub bound_now: u64,
    /// Binds refused.
    pub bind_failures: u64,
    /// submit_sm received.
    pub submits: u64,
    /// Throttle responses sent.
    pub throttled: u64,
    /// Rejections sent.
    pub rejected: u64,
    /// DLRs sent.
    pub dlrs: u64,
    /// MOs sent.
    pub mos: u64,
    /// Malformed PDUs injected (fault).
    pub malformed_sent: u64,
    /// generic_nack received from ESMEs.
    pub generic_nacks_received: u64,
    /// deliver_sm_resp received from ESMEs.
    pub deliver_sm_resps_received: u64,
    /// data_sm_resp received from ESMEs.
    pub data_sm_resps_received: u64,
    /// Malformed PDUs received.
    pub malformed_received: u64,
}

/// Everything the simulator shares between connections and the control API.
#[derive(Debug)]
pub struct SimState {
    /// system_id expected in binds.
    pub system_id: String,
    /// Password expected in binds.
    pub password: String,
    /// submit_sm_resp id format.
    pub id_format: IdFormat,
    /// Fault knobs.
    pub faults: Mutex<Faults>,
    /// DLR knobs.
    pub dlr: Mutex<DlrSettings>,
    pub(crate) next_id: AtomicU64,
    pub(crate) next_conn: AtomicU64,
    pub(crate) receivers: Mutex<Vec<Receiver>>,
    pub(crate) inbox: Mutex<HashMap<String, VecDeque<InboxMessage>>>,
    pub(crate) partial: Mutex<HashMap<(String, String, u16, u8), PartialMessage>>,
    /// Counters.
    pub stats: Mutex<Stats>,
    /// Messages kept per handset.
    pub inbox_cap: usize,
}

impl SimState {
    /// New state.
    pub fn new(
        system_id: String,
        password: String,
        id_format: IdFormat,
        dlr: DlrSettings,
        faults: Faults,
    ) -> Self {
        SimState {
            system_id,
            password,
            id_format,
            faults: Mutex::new(faults),
            dlr: Mutex::new(dlr),
            next_id: AtomicU64::new(0x10_0000),
            next_conn: AtomicU64::new(1),
            receivers: Mutex::new(Vec::new()),
            inbox: Mutex::new(HashMap::new()),
            partial: Mutex::new(HashMap::new()),
            stats: Mutex::new(Stats::default()),
            inbox_cap: 1000,
        }
    }

    /// A fresh numeric message id.
    pub fn new_message_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Records a received message for the handset `to`.
    pub fn store(&self, to: &str, msg: InboxMessage) {
        let mut inbox = self.inbox.lock().expect("inbox lock");
        let q = inbox.entry(normalize_msisdn(to)).or_default();
        if q.len() >= self.inbox_cap {
            q.pop_front();
        }
        q.push_back(msg);
    }

    /// Sets the receipt state of a message by part id.
    pub fn set_dlr_state(&self, to: &str, part_id: &str, state: &str) {
        let mut inbox = self.inbox.lock().expect("inbox lock");
        if let Some(q) = inbox.get_mut(&normalize_msisdn(to)) {
            if let Some(m) = q
                .iter_mut()
                .rev()
                .find(|m| m.part_ids.iter().any(|p| p == part_id))
            {
                m.dlr_state = Some(state.to_string());
            }
        }
    }

    /// Messages received by a handset.
    pub fn inbox_of(&self, msisdn: &str) -> Vec<InboxMessage> {
        let inbox = self.inbox.lock().expect("inbox lock");
        inbox
            .get(&normalize_msisdn(msisdn))
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// A receiver for `system_id`, preferring connection `prefer`.
    pub(crate) fn receiver_for(&self, system_id: &str, prefer: Option<u64>) -> Option<Receiver> {
        let r = self.receivers.lock().expect("receivers lock");
        prefer
            .and_then(|c| r.iter().find(|x| x.conn == c).cloned())
            .or_else(|| r.iter().find(|x| x.system_id == system_id).cloned())
            .or_else(|| r.first().cloned())
    }
}

/// Handset numbers are compared as digits only (`+44 7700` = `447700`).
pub fn normalize_msisdn(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_digit()).collect()
}
