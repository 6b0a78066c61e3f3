//! Call audio. Sending runs on media worker threads, each pacing all its
//! calls off one shared tick ([`Pacer`]) and sleeping with the OS timer
//! (measured: tokio's millisecond timer made the p99 send lateness 2–4 ms,
//! a plain thread 0.7 ms at 1 000 calls; BENCHMARKS.md). Receiving runs as
//! one tokio task per call on a clone of the same socket, so RTP goes out
//! from the port it comes in on (symmetric RTP), and the far end's address
//! is learnt from its first packet (a NAT in between rewrites it).

use crate::random::Random;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rand::Rng;
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;
use verigate_codecs::media::dtmf::{DtmfReceiver, TelephoneEvent};
use verigate_codecs::media::g711::Law;
use verigate_codecs::media::pacer::{Lateness, Pacer, PacerEvent};
use verigate_codecs::media::rtp::{is_rtcp, RtpPacket, RtpSender};
use verigate_prompts::Part;

/// What the media side tells a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaEvent {
    /// Everything queued has been sent.
    Drained,
    /// A key press ended (RFC 4733, de-duplicated).
    Dtmf(char),
}

enum Cmd {
    Add {
        key: u64,
        rtp: RtpSender,
        socket: UdpSocket,
        remote: SocketAddr,
        pt: u8,
        law: Law,
        events: UnboundedSender<MediaEvent>,
    },
    Remote(u64, SocketAddr),
    Play(u64, Vec<Part>),
    Pause(u64, Duration),
    Clear(u64),
    Remove(u64),
}

struct Out {
    socket: UdpSocket,
    remote: SocketAddr,
    events: UnboundedSender<MediaEvent>,
}

/// Media worker threads; streams are spread over them.
#[derive(Debug, Clone)]
pub struct Media {
    workers: Arc<Vec<Sender<Cmd>>>,
    next_key: Arc<AtomicU64>,
    lateness: Arc<Mutex<Lateness>>,
    rng: Random,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cmd")
    }
}

impl Media {
    /// Starts `n` worker threads (they end when every `Media` clone is
    /// dropped); streams' SSRC, sequence and timestamp come from `rng`.
    pub fn start(n: usize, rng: Random) -> std::io::Result<Self> {
        let lateness = Arc::new(Mutex::new(Lateness::default()));
        let mut workers = Vec::new();
        for i in 0..n.max(1) {
            let (tx, rx) = crossbeam_channel::unbounded();
            let l = lateness.clone();
            std::thread::Builder::new()
                .name(format!("verigate-media-{i}"))
                .spawn(move || worker(rx, l))?;
            workers.push(tx);
        }
        Ok(Self {
            workers: Arc::new(workers),
            next_key: Arc::new(AtomicU64::new(1)),
            lateness,
            rng,
        })
    }

    /// Send lateness of every packet since start (each packet from its
    /// due time to its `sendto` returning), and the packets skipped; the
    /// workers add their figures once a second.
    pub fn lateness(&self) -> Lateness {
        self.lateness.lock().expect("lateness lock").clone()
    }

    /// Starts a call's stream on `socket` towards `remote` (payload type
    /// `pt` of `law`, telephone-events on `te_pt`), with random SSRC,
    /// sequence and timestamp. Events go to `events`; the receive task
    /// ends with `stop`.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        &self,
        socket: UdpSocket,
        remote: SocketAddr,
        pt: u8,
        law: Law,
        te_pt: Option<u8>,
        events: UnboundedSender<MediaEvent>,
        stop: CancellationToken,
    ) -> std::io::Result<Stream> {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let worker = self.workers[(key as usize) % self.workers.len()].clone();
        let rx_socket = socket.try_clone()?;
        rx_socket.set_nonblocking(true)?;
        socket.set_nonblocking(true)?;
        let rx_socket = tokio::net::UdpSocket::from_std(rx_socket)?;
        let mut r = self.rng.rng();
        let _ = worker.send(Cmd::Add {
            key,
            rtp: RtpSender::new(r.gen(), r.gen(), r.gen()),
            socket,
            remote,
            pt,
            law,
            events: events.clone(),
        });
        tokio::spawn(receive(
            rx_socket,
            remote,
            pt,
            te_pt,
            key,
            worker.clone(),
            events,
            stop,
        ));
        Ok(Stream { key, worker })
    }
}

/// One call's stream; dropping it stops the sending.
#[derive(Debug)]
pub struct Stream {
    key: u64,
    worker: Sender<Cmd>,
}

impl Stream {
    /// Queues audio: shared clips (in the stream's law) and pauses.
    pub fn play(&self, parts: Vec<Part>) {
        let _ = self.worker.send(Cmd::Play(self.key, parts));
    }

    /// Queues silence.
    pub fn pause(&self, d: Duration) {
        let _ = self.worker.send(Cmd::Pause(self.key, d));
    }

    /// Drops queued audio.
    pub fn clear(&self) {
        let _ = self.worker.send(Cmd::Clear(self.key));
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.worker.send(Cmd::Remove(self.key));
    }
}

fn worker(rx: Receiver<Cmd>, lateness: Arc<Mutex<Lateness>>) {
    let mut pacer: Pacer<u64> = Pacer::new(Instant::now());
    let mut outs: HashMap<u64, Out> = HashMap::new();
    let mut last_report = Instant::now();
    let mut sent = Lateness::default();
    let report = |sent: &mut Lateness, pacer: &mut Pacer<u64>| {
        // The pacer's own figures are per phase; ours are per packet.
        sent.skipped += pacer.take_lateness().skipped;
        if let Ok(mut total) = lateness.lock() {
            total.merge(sent);
        }
        *sent = Lateness::default();
    };
    loop {
        let cmd = if pacer.is_empty() {
            // Idle: hand in the last calls' figures before waiting.
            if sent.count() > 0 {
                report(&mut sent, &mut pacer);
            }
            match rx.recv() {
                Ok(c) => Some(c),
                Err(_) => return,
            }
        } else {
            match rx.recv_deadline(pacer.poll_timeout()) {
                Ok(c) => Some(c),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        };
        if let Some(c) = cmd {
            apply(c, &mut pacer, &mut outs);
            // Take every command waiting before the next tick.
            while let Ok(c) = rx.try_recv() {
                apply(c, &mut pacer, &mut outs);
            }
        }
        let now = Instant::now();
        pacer.handle_timeout(now, |k, pkt, due| {
            if let Some(o) = outs.get(&k) {
                // A full socket buffer drops the packet, as the network would.
                let _ = o.socket.send_to(pkt, o.remote);
                let late = Instant::now().saturating_duration_since(due);
                sent.record(late.as_micros().min(u128::from(u64::MAX)) as u64);
            }
        });
        while let Some(PacerEvent::Drained(k)) = pacer.poll_event() {
            if let Some(o) = outs.get(&k) {
                let _ = o.events.send(MediaEvent::Drained);
            }
        }
        if now.duration_since(last_report) >= Duration::from_secs(1) {
            last_report = now;
            report(&mut sent, &mut pacer);
        }
    }
}

fn apply(c: Cmd, pacer: &mut Pacer<u64>, outs: &mut HashMap<u64, Out>) {
    match c {
        Cmd::Add {
            key,
            rtp,
            socket,
            remote,
            pt,
            law,
            events,
        } => {
            pacer.add(Instant::now(), key, rtp, pt, law);
            outs.insert(
                key,
                Out {
                    socket,
                    remote,
                    events,
                },
            );
        }
        Cmd::Remote(key, addr) => {
            if let Some(o) = outs.get_mut(&key) {
                o.remote = addr;
            }
        }
        Cmd::Play(key, parts) => {
            for part in parts {
                match part {
                    Part::Clip(audio) => pacer.play(key, audio),
                    Part::Silence(ms) => pacer.pause(key, Duration::from_millis(u64::from(ms))),
                }
            }
        }
        Cmd::Pause(key, d) => pacer.pause(key, d),
        Cmd::Clear(key) => pacer.clear(key),
        Cmd::Remove(key) => {
            pacer.remove(key);
            outs.remove(&key);
        }
    }
}

/// How long without a telephone-event packet before an event whose end
/// packets were all lost counts as ended.
const DTMF_FLUSH: Duration = Duration::from_millis(300);

/// Whether a packet from `from` with payload type `pt` is this call's
/// media: a negotiated payload type, from the IP the answer's SDP named
/// (any port, so symmetric RTP can follow a NAT's port) until the first
/// such packet latches the stream, then from that address only. Anyone
/// else spraying RTP at the port can neither redirect the audio (the code)
/// nor press keys.
fn is_ours(
    from: SocketAddr,
    offered: SocketAddr,
    latched: Option<SocketAddr>,
    pt: u8,
    audio_pt: u8,
    te_pt: Option<u8>,
) -> bool {
    (pt == audio_pt || Some(pt) == te_pt)
        && match latched {
            Some(l) => from == l,
            None => from.ip() == offered.ip(),
        }
}

#[allow(clippy::too_many_arguments)]
async fn receive(
    socket: tokio::net::UdpSocket,
    offered: SocketAddr,
    audio_pt: u8,
    te_pt: Option<u8>,
    key: u64,
    worker: Sender<Cmd>,
    events: UnboundedSender<MediaEvent>,
    stop: CancellationToken,
) {
    let mut buf = [0u8; 2048];
    let mut dtmf = DtmfReceiver::new();
    let mut latched: Option<SocketAddr> = None;
    // When an event in progress counts as ended if no packet of it comes.
    let mut flush_at: Option<tokio::time::Instant> = None;
    loop {
        let flush = async {
            match flush_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let got = tokio::select! {
            _ = stop.cancelled() => break,
            r = socket.recv_from(&mut buf) => r,
            _ = flush => {
                if let Some(k) = dtmf.flush() {
                    let _ = events.send(MediaEvent::Dtmf(k));
                }
                flush_at = None;
                continue;
            }
        };
        let Ok((n, from)) = got else { continue };
        let pkt = &buf[..n];
        if is_rtcp(pkt) {
            continue;
        }
        let Ok(p) = RtpPacket::parse(pkt) else {
            continue;
        };
        if !is_ours(from, offered, latched, p.payload_type, audio_pt, te_pt) {
            continue;
        }
        if latched.is_none() {
            // Symmetric RTP: send where the far end's media comes from.
            latched = Some(from);
            tracing::debug!(%from, %offered, pt = p.payload_type, "first RTP packet");
            if from != offered {
                let _ = worker.send(Cmd::Remote(key, from));
            }
        }
        if Some(p.payload_type) == te_pt {
            if let Ok(ev) = TelephoneEvent::parse(p.payload) {
                flush_at = (!ev.end).then(|| tokio::time::Instant::now() + DTMF_FLUSH);
                tracing::debug!(
                    event = ev.event,
                    end = ev.end,
                    ts = p.timestamp,
                    "telephone-event"
                );
                for k in dtmf.on_packet(p.timestamp, ev) {
                    let _ = events.send(MediaEvent::Dtmf(k));
                }
            }
        }
    }
    if let Some(k) = dtmf.flush() {
        let _ = events.send(MediaEvent::Dtmf(k));
    }
}

#[cfg(test)]
mod tests {
    use super::is_ours;
    use std::net::SocketAddr;

    #[test]
    fn only_the_far_ends_media_is_taken() {
        let offered: SocketAddr = "192.0.2.10:40000".parse().unwrap();
        let nat: SocketAddr = "192.0.2.10:51234".parse().unwrap();
        let stranger: SocketAddr = "198.51.100.7:40000".parse().unwrap();
        // Before latching: the SDP's IP on any port, negotiated types only.
        assert!(is_ours(offered, offered, None, 8, 8, Some(101)));
        assert!(is_ours(nat, offered, None, 101, 8, Some(101)));
        assert!(
            !is_ours(stranger, offered, None, 8, 8, Some(101)),
            "another host"
        );
        assert!(
            !is_ours(offered, offered, None, 0, 8, Some(101)),
            "a type not agreed"
        );
        assert!(
            !is_ours(offered, offered, None, 101, 8, None),
            "no telephone-event agreed"
        );
        // After latching: that address only, even from the SDP's IP.
        assert!(is_ours(nat, offered, Some(nat), 8, 8, Some(101)));
        assert!(!is_ours(offered, offered, Some(nat), 8, 8, Some(101)));
        assert!(!is_ours(stranger, offered, Some(nat), 101, 8, Some(101)));
    }
}
