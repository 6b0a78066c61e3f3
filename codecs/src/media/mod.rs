//! Call media: G.711 audio, RTP packets and streams, RFC 4733 DTMF.

pub mod dtmf;
pub mod g711;
pub mod rtp;
