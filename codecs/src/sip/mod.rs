//! SIP pieces verigate computes itself (the SIP stack is rsipstack, behind
//! the daemon's call-placing trait; see `docs/sip-rsipstack.md`).

pub mod digest;
