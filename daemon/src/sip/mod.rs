//! Calls: the call-placing trait the call services use, its SIP
//! implementation on rsipstack ([`engine`]), trunk admission ([`gate`]),
//! call audio ([`media`]) and what happens on a call ([`script`], sans-IO).

pub mod engine;
pub mod gate;
pub mod media;
pub mod script;

#[cfg(test)]
mod tests;

use media::MediaEvent;
use script::Ended;
use std::time::Duration;
use tokio::sync::mpsc;
use verigate_codecs::media::g711::Law;
use verigate_prompts::Part;

/// A call to place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSpec {
    /// Callee, E.164.
    pub to: String,
    /// Caller number shown (a flash call's pool number); None: the trunk's.
    pub caller: Option<String>,
}

/// What a placed call reports, in order; `Ended` is last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    /// 180, or 183 without SDP.
    Ringing,
    /// 183 with SDP.
    EarlyMedia,
    /// 200 OK; audio goes out in this law.
    Answered(Law),
    /// From the media.
    Media(MediaEvent),
    /// Over.
    Ended(Ended),
}

/// What the call's owner asks of it.
#[derive(Debug, Clone)]
pub enum Command {
    /// Queue audio (clips in the law `Answered` named, and pauses).
    Play(Vec<Part>),
    /// Queue silence.
    Pause(Duration),
    /// Drop queued audio.
    Clear,
    /// CANCEL before answer, BYE after.
    End,
}

/// A call in progress.
#[derive(Debug)]
pub struct PlacedCall {
    /// Its events.
    pub events: mpsc::UnboundedReceiver<CallEvent>,
    /// Its commands (dropping the sender ends the call).
    pub commands: mpsc::UnboundedSender<Command>,
    /// The trunk it went out on.
    pub trunk: String,
    /// Its SIP Call-ID.
    pub call_id: String,
}

/// Why a call was not placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    /// No trunk routes the number (the operator's configuration).
    #[error("no SIP trunk routes {0}")]
    NoRoute(String),
    /// Every trunk that routes it is at its rate or call limit, paused
    /// after a 503, or down; retry later.
    #[error("every trunk for the number is busy")]
    Busy {
        /// When the earliest one frees up, if known.
        retry_in: Option<Duration>,
    },
    /// A trunk setting stops the call (the operator's configuration).
    #[error("{0}")]
    Config(String),
    /// This machine failed (sockets).
    #[error("{0}")]
    Local(String),
}

/// Places calls. The SIP engine implements it; tests can script one.
#[async_trait::async_trait]
pub trait CallPlacer: Send + Sync + std::fmt::Debug {
    /// Starts a call; it runs until `Ended`.
    async fn place(&self, spec: CallSpec) -> Result<PlacedCall, PlaceError>;
}
