//! Outgoing call audio for many calls off one shared 20 ms tick (a timer
//! per call would cost a wake-up per call per packet). Sans-IO: the driver
//! asks [`Pacer::poll_timeout`] when to wake, calls
//! [`Pacer::handle_timeout`] with the time it woke, and sends the packets it
//! is handed. Every stream sends a packet every tick, queued audio or G.711
//! silence when there is none (a silent gap would look like a dead call to
//! some switches), with continuous sequence numbers and timestamps.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::g711::{Law, FRAME_SAMPLES};
use super::rtp::RtpSender;

/// The packet interval.
pub const PTIME: Duration = Duration::from_millis(20);
/// Ticks a late wake-up catches up by sending at once; beyond that the
/// missed time is skipped (the timestamps jump, as after packet loss),
/// rather than bursting seconds of audio into the network.
pub const MAX_CATCH_UP: u32 = 5;

/// What a stream plays, in order.
#[derive(Debug, Clone)]
enum Segment {
    /// Audio bytes in the stream's law, from an offset.
    Audio(Arc<[u8]>, usize),
    /// This many bytes of silence.
    Silence(usize),
}

#[derive(Debug)]
struct Stream {
    rtp: RtpSender,
    pt: u8,
    law: Law,
    queue: VecDeque<Segment>,
    /// Whether the queue ran dry and the event was reported.
    drained: bool,
}

/// Something the call logic acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacerEvent<K> {
    /// All audio queued for this stream has been sent.
    Drained(K),
}

/// Lateness figures since the last [`Pacer::take_lateness`]: how long
/// after its due time each tick ran.
#[derive(Debug, Clone, Default)]
pub struct Lateness {
    /// One entry per wake-up that ran ticks: how late it was, in µs.
    pub micros: Vec<u32>,
    /// Ticks skipped because the driver woke too late to catch up.
    pub skipped: u64,
}

/// The streams of one worker, paced by one tick.
#[derive(Debug)]
pub struct Pacer<K> {
    next: Instant,
    streams: HashMap<K, Stream>,
    events: VecDeque<PacerEvent<K>>,
    lateness: Lateness,
    buf: Vec<u8>,
    frame: Vec<u8>,
}

impl<K: Copy + Eq + Hash> Pacer<K> {
    /// A pacer whose first tick is at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            next: now,
            streams: HashMap::new(),
            events: VecDeque::new(),
            lateness: Lateness::default(),
            buf: Vec::with_capacity(12 + FRAME_SAMPLES),
            frame: Vec::with_capacity(FRAME_SAMPLES),
        }
    }

    /// Starts a stream: packets of payload type `pt` in `law`, numbered and
    /// stamped by `rtp` (whose start values the caller drew at random).
    /// It sends silence until audio is queued.
    pub fn add(&mut self, key: K, rtp: RtpSender, pt: u8, law: Law) {
        self.streams.insert(
            key,
            Stream {
                rtp,
                pt,
                law,
                queue: VecDeque::new(),
                drained: true,
            },
        );
    }

    /// Stops a stream (the call ended).
    pub fn remove(&mut self, key: K) {
        self.streams.remove(&key);
    }

    /// Streams running.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// True if no stream runs.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Queues audio (bytes in the stream's law) after what is queued.
    pub fn play(&mut self, key: K, audio: Arc<[u8]>) {
        if let Some(s) = self.streams.get_mut(&key) {
            if !audio.is_empty() {
                s.queue.push_back(Segment::Audio(audio, 0));
                s.drained = false;
            }
        }
    }

    /// Queues a pause.
    pub fn pause(&mut self, key: K, d: Duration) {
        if let Some(s) = self.streams.get_mut(&key) {
            let n = (d.as_millis() as usize) * 8;
            if n > 0 {
                s.queue.push_back(Segment::Silence(n));
                s.drained = false;
            }
        }
    }

    /// Drops what is queued (e.g. the caller pressed 1: start over).
    pub fn clear(&mut self, key: K) {
        if let Some(s) = self.streams.get_mut(&key) {
            s.queue.clear();
        }
    }

    /// When to call [`Pacer::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Instant {
        self.next
    }

    /// Runs the ticks due by `now`; `send` gets each stream's packets.
    pub fn handle_timeout(&mut self, now: Instant, mut send: impl FnMut(K, &[u8])) {
        if now < self.next {
            return;
        }
        let late = now - self.next;
        let due = (late.as_micros() / PTIME.as_micros()) as u32 + 1;
        let run = due.min(MAX_CATCH_UP);
        let skip = due - run;
        self.lateness
            .micros
            .push(late.as_micros().min(u128::from(u32::MAX)) as u32);
        self.lateness.skipped += u64::from(skip);
        for _ in 0..run {
            self.tick(&mut send);
        }
        if skip > 0 {
            for s in self.streams.values_mut() {
                s.rtp.skip(skip * FRAME_SAMPLES as u32);
            }
        }
        self.next += PTIME * due;
    }

    fn tick(&mut self, send: &mut impl FnMut(K, &[u8])) {
        for (key, s) in self.streams.iter_mut() {
            self.frame.clear();
            fill(&mut s.queue, &mut self.frame, s.law);
            self.buf.clear();
            s.rtp
                .audio(&mut self.buf, s.pt, &self.frame, FRAME_SAMPLES as u32);
            send(*key, &self.buf);
            if s.queue.is_empty() && !s.drained {
                s.drained = true;
                self.events.push_back(PacerEvent::Drained(*key));
            }
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<PacerEvent<K>> {
        self.events.pop_front()
    }

    /// Lateness since the last call.
    pub fn take_lateness(&mut self) -> Lateness {
        std::mem::take(&mut self.lateness)
    }
}

/// Fills one frame from the queue, padding with silence.
fn fill(queue: &mut VecDeque<Segment>, frame: &mut Vec<u8>, law: Law) {
    while frame.len() < FRAME_SAMPLES {
        let want = FRAME_SAMPLES - frame.len();
        match queue.front_mut() {
            None => frame.resize(FRAME_SAMPLES, law.silence()),
            Some(Segment::Audio(bytes, at)) => {
                let n = want.min(bytes.len() - *at);
                frame.extend_from_slice(&bytes[*at..*at + n]);
                *at += n;
                if *at == bytes.len() {
                    queue.pop_front();
                }
            }
            Some(Segment::Silence(left)) => {
                let n = want.min(*left);
                frame.resize(frame.len() + n, law.silence());
                *left -= n;
                if *left == 0 {
                    queue.pop_front();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::RtpPacket;

    fn collect(p: &mut Pacer<u32>, now: Instant) -> Vec<(u32, u16, u32, Vec<u8>)> {
        let mut out = Vec::new();
        p.handle_timeout(now, |k, b| {
            let r = RtpPacket::parse(b).unwrap();
            out.push((k, r.sequence, r.timestamp, r.payload.to_vec()));
        });
        out
    }

    #[test]
    fn every_stream_sends_one_packet_per_tick_audio_then_silence() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        p.add(1, RtpSender::new(11, 100, 1000), 0, Law::Ulaw);
        p.add(2, RtpSender::new(22, 7, 5), 8, Law::Alaw);
        let audio: Arc<[u8]> = vec![0x42u8; 200].into();
        p.play(1, audio);
        let first = collect(&mut p, t0);
        assert_eq!(first.len(), 2, "both streams, one packet each");
        let one = first.iter().find(|x| x.0 == 1).unwrap();
        assert_eq!((one.1, one.2), (100, 1000));
        assert_eq!(one.3, vec![0x42; 160]);
        let two = first.iter().find(|x| x.0 == 2).unwrap();
        assert_eq!(two.3, vec![0xD5; 160], "A-law silence before any audio");
        assert_eq!(p.poll_timeout(), t0 + PTIME);
        // Nothing before the next tick.
        assert!(collect(&mut p, t0 + PTIME / 2).is_empty());
        let second = collect(&mut p, t0 + PTIME);
        let one = second.iter().find(|x| x.0 == 1).unwrap();
        assert_eq!((one.1, one.2), (101, 1160), "seq +1, timestamp +160");
        let mut want = vec![0x42; 40];
        want.extend([0xFF; 120]);
        assert_eq!(one.3, want, "the rest, then μ-law silence");
        assert_eq!(p.poll_event(), Some(PacerEvent::Drained(1)));
        assert_eq!(p.poll_event(), None);
    }

    #[test]
    fn pauses_are_silence_and_clear_drops_the_queue() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        p.add(1, RtpSender::new(1, 0, 0), 0, Law::Ulaw);
        p.pause(1, Duration::from_millis(30));
        p.play(1, vec![1u8; 160].into());
        let a = collect(&mut p, t0);
        assert_eq!(a[0].3, vec![0xFF; 160]);
        let b = collect(&mut p, t0 + PTIME);
        assert_eq!(&b[0].3[..80], &[0xFF; 80][..]);
        assert_eq!(&b[0].3[80..], &[1u8; 80][..]);
        p.clear(1);
        let c = collect(&mut p, t0 + PTIME * 2);
        assert_eq!(c[0].3, vec![0xFF; 160]);
    }

    #[test]
    fn a_late_wake_catches_up_a_little_and_skips_the_rest() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        p.add(1, RtpSender::new(1, 0, 0), 0, Law::Ulaw);
        collect(&mut p, t0);
        // 45 ms late for the tick at 20 ms: ticks at 20, 40, 60 are due.
        let got = collect(&mut p, t0 + PTIME + Duration::from_millis(45));
        assert_eq!(got.len(), 3);
        assert_eq!(
            got.iter().map(|x| x.2).collect::<Vec<_>>(),
            [160, 320, 480],
            "continuous timestamps"
        );
        assert_eq!(p.poll_timeout(), t0 + PTIME * 4);
        // A second late: 5 ticks sent at once, the other 46 skipped, and
        // the timestamp moves on by the skipped time.
        let got = collect(&mut p, t0 + PTIME * 4 + Duration::from_millis(1010));
        assert_eq!(got.len(), MAX_CATCH_UP as usize);
        let l = p.take_lateness();
        assert_eq!(l.skipped, 46);
        assert_eq!(l.micros, [0, 45_000, 1_010_000], "per wake-up");
        let at = p.poll_timeout();
        let next = collect(&mut p, at);
        assert_eq!(next[0].2, 160 * (4 + 51), "time skipped, not lost");
        assert_eq!(next[0].1, 4 + 5, "sequence numbers have no gap");
    }

    #[test]
    fn removed_streams_stop_and_unknown_keys_are_ignored() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        p.add(1, RtpSender::new(1, 0, 0), 0, Law::Ulaw);
        p.play(9, vec![1u8; 10].into());
        p.remove(1);
        assert!(p.is_empty());
        assert!(collect(&mut p, t0).is_empty());
    }
}
