//! What the simulated switch knows: each handset's behaviour and the calls
//! it received.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;

/// How a handset treats a call.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Behaviour {
    /// `answer` (ring, answer, listen), `ring` (ring until cancelled),
    /// `busy` (486), `unreachable` (480), `early_media` (183 with SDP,
    /// then answer), `ring_183` (183 without SDP, then as `ring`),
    /// `reject` (603), `overloaded` (503 with Retry-After: `retry_after_s`).
    #[serde(default = "answer")]
    pub mode: String,
    /// Retry-After of `overloaded`, seconds.
    #[serde(default = "one")]
    pub retry_after_s: u32,
    /// Ring this long before answering (answer, early_media), ms.
    #[serde(default = "default_ring_ms")]
    pub ring_ms: u64,
    /// Keys to press after answering, each `key_after_ms` apart; e.g. "1".
    #[serde(default)]
    pub keys: String,
    /// When to press the first key, ms after answer.
    #[serde(default = "default_key_after")]
    pub key_after_ms: u64,
    /// Hang up (BYE) this long after answer (0: wait for the caller's BYE), ms.
    #[serde(default)]
    pub hangup_after_ms: u64,
    /// Preferred law: `pcmu` or `pcma` (the offer's other one if absent).
    #[serde(default)]
    pub law: Option<String>,
}

fn answer() -> String {
    "answer".into()
}
fn one() -> u32 {
    1
}
fn default_ring_ms() -> u64 {
    300
}
fn default_key_after() -> u64 {
    2000
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            mode: answer(),
            retry_after_s: one(),
            ring_ms: default_ring_ms(),
            keys: String::new(),
            key_after_ms: default_key_after(),
            hangup_after_ms: 0,
            law: None,
        }
    }
}

/// The modes a behaviour can have.
pub const MODES: &[&str] = &[
    "answer",
    "ring",
    "busy",
    "unreachable",
    "early_media",
    "ring_183",
    "reject",
    "overloaded",
];

/// One call a handset received.
#[derive(Debug, Clone, Serialize, Default)]
pub struct CallRecord {
    /// SIP Call-ID.
    pub call_id: String,
    /// The caller number in From (the caller ID a phone shows).
    pub caller: String,
    /// P-Asserted-Identity, if sent.
    pub pai: Option<String>,
    /// How it went: `ringing`, `answered`, `canceled`, `busy`, `unreachable`,
    /// `rejected`, `overloaded`, `challenged`, `ended`.
    pub outcome: String,
    /// The final status we sent, if any.
    pub status: Option<u16>,
    /// Whether the INVITE carried valid credentials (when the switch asks).
    pub authenticated: bool,
    /// Prompts recognised in the audio, in order.
    pub prompts: Vec<String>,
    /// Digits heard after "your code is" (first reading).
    pub heard: String,
    /// How many times "your code is" was heard.
    pub readings: usize,
    /// The codec the call used.
    pub codec: Option<String>,
    /// RTP packets received.
    pub packets: u64,
    /// Keys pressed.
    pub keys_sent: String,
    /// Who hung up: `caller` or `handset`.
    pub hung_up_by: Option<String>,
    /// When the INVITE came (Unix ms).
    pub at: i64,
}

/// The switch's state.
#[derive(Debug, Default)]
pub struct SwitchState {
    behaviours: Mutex<HashMap<String, Behaviour>>,
    default: Mutex<Behaviour>,
    calls: Mutex<HashMap<String, Vec<CallRecord>>>,
    /// Digest credentials every INVITE must carry, if set.
    pub credentials: Option<(String, String)>,
    /// Nonces we issued.
    pub nonces: Mutex<Vec<String>>,
}

/// Digits of a number, for keys (`+44 7400…` and `447400…` are one handset).
pub fn number_key(n: &str) -> String {
    n.chars().filter(char::is_ascii_digit).collect()
}

impl SwitchState {
    /// A switch that challenges for `credentials`, if given.
    pub fn new(credentials: Option<(String, String)>) -> Self {
        Self {
            credentials,
            ..Default::default()
        }
    }

    /// The behaviour of `number`.
    pub fn behaviour(&self, number: &str) -> Behaviour {
        self.behaviours
            .lock()
            .expect("lock")
            .get(&number_key(number))
            .cloned()
            .unwrap_or_else(|| self.default.lock().expect("lock").clone())
    }

    /// Sets a handset's behaviour.
    pub fn set_behaviour(&self, number: &str, b: Behaviour) {
        self.behaviours
            .lock()
            .expect("lock")
            .insert(number_key(number), b);
    }

    /// Sets the behaviour of handsets without their own.
    pub fn set_default(&self, b: Behaviour) {
        *self.default.lock().expect("lock") = b;
    }

    /// Adds a call; returns its index.
    pub fn add_call(&self, number: &str, r: CallRecord) -> usize {
        let mut calls = self.calls.lock().expect("lock");
        let v = calls.entry(number_key(number)).or_default();
        v.push(r);
        v.len() - 1
    }

    /// Changes a recorded call.
    pub fn update_call(&self, number: &str, i: usize, f: impl FnOnce(&mut CallRecord)) {
        if let Some(r) = self
            .calls
            .lock()
            .expect("lock")
            .get_mut(&number_key(number))
            .and_then(|v| v.get_mut(i))
        {
            f(r);
        }
    }

    /// Calls a handset received, oldest first.
    pub fn calls_of(&self, number: &str) -> Vec<CallRecord> {
        self.calls
            .lock()
            .expect("lock")
            .get(&number_key(number))
            .cloned()
            .unwrap_or_default()
    }

    /// Calls received in all, and how many are up (answered, not ended).
    pub fn stats(&self) -> (usize, usize) {
        let calls = self.calls.lock().expect("lock");
        let all = calls.values().map(Vec::len).sum();
        let up = calls
            .values()
            .flatten()
            .filter(|c| c.outcome == "answered")
            .count();
        (all, up)
    }
}
