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
#[derive(Debug, Clone, thiserror::Error)]
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
    /// The trunk has no caller number and the call brings none (the
    /// operator's configuration).
    #[error("sip_trunk {trunk}: caller_id is not set, and voice calls need a caller number")]
    NoCallerId {
        /// The trunk.
        trunk: String,
    },
    /// No RTP socket could be opened (this machine).
    #[error("cannot open an RTP socket: {0}")]
    RtpSocket(#[source] std::sync::Arc<std::io::Error>),
    /// The SIP stack would not build the INVITE (a trunk setting it cannot
    /// express, or a bug).
    #[error("cannot build the INVITE: {0}")]
    Invite(#[source] std::sync::Arc<rsipstack::Error>),
}

/// Places calls. The SIP engine implements it; tests can script one.
#[async_trait::async_trait]
pub trait CallPlacer: Send + Sync + std::fmt::Debug {
    /// Starts a call; it runs until `Ended`.
    async fn place(&self, spec: CallSpec) -> Result<PlacedCall, PlaceError>;
}
