//! A simulated handset's audio: it sends G.711 silence (and RFC 4733 key
//! presses) back every 20 ms, collects what the caller sent, and at the
//! end "listens": matches the audio against the prompt sets to tell which
//! digits were read.

use rand::Rng;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use verigate_codecs::media::dtmf::{event_of, TelephoneEvent};
use verigate_codecs::media::g711::{Law, FRAME_SAMPLES};
use verigate_codecs::media::rtp::{RtpPacket, RtpSender};
use verigate_prompts::{digits_heard, recognise, EncodedPrompts, Prompt, PromptSet};

/// Every bundled locale in both laws.
#[derive(Debug)]
pub struct Ears {
    sets: Vec<(String, EncodedPrompts)>,
}

impl Ears {
    /// Loads the bundled prompts (`en`, `zh`).
    pub fn load() -> Result<Self, verigate_prompts::PromptError> {
        let dir = verigate_prompts::bundled_dir();
        let mut sets = Vec::new();
        for l in ["en", "zh"] {
            let set = PromptSet::load(&dir, l)?;
            for law in [Law::Ulaw, Law::Alaw] {
                sets.push((l.to_string(), set.encode(law)));
            }
        }
        Ok(Self { sets })
    }

    /// The prompts heard in `audio` (of `law`): the locale that explains
    /// most of it.
    pub fn hear(&self, law: Law, audio: &[u8]) -> Vec<Prompt> {
        self.sets
            .iter()
            .filter(|(_, p)| p.law() == law)
            .map(|(_, p)| recognise(p, audio))
            .max_by_key(Vec::len)
            .unwrap_or_default()
    }
}

/// What the handset got.
#[derive(Debug, Default)]
pub struct Heard {
    /// Prompt names, in order.
    pub prompts: Vec<String>,
    /// Digits of the first reading.
    pub digits: String,
    /// Times "your code is" was heard.
    pub readings: usize,
    /// RTP packets received.
    pub packets: u64,
    /// Keys pressed.
    pub keys_sent: String,
}

/// Sends and receives until `stop`; presses `keys` starting `key_after`
/// after the start, one every `key_after`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    socket: UdpSocket,
    mut remote: SocketAddr,
    law: Law,
    pt: u8,
    te_pt: Option<u8>,
    keys: String,
    key_after: Duration,
    ears: &Ears,
    stop: CancellationToken,
) -> Heard {
    let mut rtp = {
        let mut rng = rand::thread_rng();
        RtpSender::new(rng.gen(), rng.gen(), rng.gen())
    };
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = tokio::time::Instant::now();
    let mut audio = Vec::new();
    let mut packets = 0u64;
    let mut latched = false;
    let mut buf = [0u8; 2048];
    let mut out = Vec::with_capacity(12 + FRAME_SAMPLES);
    let silence = [law.silence(); FRAME_SAMPLES];
    let mut pending: Vec<char> = keys.chars().collect();
    pending.reverse();
    let mut keys_sent = String::new();
    // A key press in progress: (event, packets sent so far, start timestamp).
    let mut pressing: Option<(u8, u16, u32)> = None;
    let mut next_key_at = start + key_after;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            r = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                if !latched {
                    latched = true;
                    remote = from;
                }
                if let Ok(p) = RtpPacket::parse(&buf[..n]) {
                    packets += 1;
                    if p.payload_type == pt {
                        audio.extend_from_slice(p.payload);
                    }
                }
            }
            _ = tick.tick() => {
                out.clear();
                match (pressing, te_pt) {
                    (Some((ev, sent, ts)), Some(te)) => {
                        // 100 ms of tone, then the end packet three times.
                        let end = sent >= 5;
                        let e = TelephoneEvent { event: ev, end, volume: 10, duration: (sent + 1).min(6) * FRAME_SAMPLES as u16 };
                        rtp.event(&mut out, sent == 0, te, ts, &e.encode());
                        let _ = socket.send_to(&out, remote).await;
                        if end {
                            for _ in 0..2 {
                                out.clear();
                                rtp.event(&mut out, false, te, ts, &e.encode());
                                let _ = socket.send_to(&out, remote).await;
                            }
                            rtp.skip(6 * FRAME_SAMPLES as u32);
                            pressing = None;
                        } else {
                            pressing = Some((ev, sent + 1, ts));
                        }
                    }
                    _ => {
                        rtp.audio(&mut out, pt, &silence, FRAME_SAMPLES as u32);
                        let _ = socket.send_to(&out, remote).await;
                        if pressing.is_none() && tokio::time::Instant::now() >= next_key_at {
                            if let Some(k) = pending.pop() {
                                if let (Some(ev), Some(_)) = (event_of(k), te_pt) {
                                    keys_sent.push(k);
                                    pressing = Some((ev, 0, rtp.timestamp()));
                                }
                                next_key_at += key_after;
                            }
                        }
                    }
                }
            }
        }
    }
    let prompts = ears.hear(law, &audio);
    Heard {
        digits: digits_heard(&prompts),
        readings: prompts.iter().filter(|p| **p == Prompt::CodeIs).count(),
        prompts: prompts.iter().map(|p| format!("{p:?}")).collect(),
        packets,
        keys_sent,
    }
}
