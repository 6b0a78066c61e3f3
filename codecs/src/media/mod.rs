//! Call media: G.711 audio, RTP packets and streams, RFC 4733 DTMF, and the
//! pacer that sends many calls' audio off one 20 ms tick.

pub mod dtmf;
pub mod g711;
pub mod pacer;
pub mod rtp;
