//! Outgoing call audio for many calls off one shared tick (a timer per call
//! would cost a wake-up per call per packet). The 20 ms packet period is
//! cut into [`SLOTS`] phases of 1 ms and each stream is placed in the
//! least-used phase, so a worker sends 1/20 of its packets each
//! millisecond instead of all of them at once (1 000 calls' packets take
//! ~10 ms of sendto here, which would make the last ones 10 ms late).
//! Sans-IO: the driver asks [`Pacer::poll_timeout`] when to wake, calls
//! [`Pacer::handle_timeout`] with the time it woke, and sends the packets it
//! is handed. Every stream sends a packet every 20 ms, queued audio or
//! G.711 silence when there is none (a silent gap would look like a dead
//! call to some switches), with continuous sequence numbers and timestamps.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::g711::{Law, FRAME_SAMPLES};
use super::rtp::RtpSender;

/// The packet interval.
pub const PTIME: Duration = Duration::from_millis(20);
/// Phases per packet interval.
pub const SLOTS: u32 = 20;
/// The interval between phases.
const PHASE: Duration = Duration::from_millis(1);
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
    slot: usize,
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

/// Width of a lateness bucket.
const BUCKET_MICROS: u64 = 100;
/// Buckets up to one second; later phases land in the last one.
const BUCKETS: usize = 10_001;

/// Lateness since the last [`Pacer::take_lateness`]: how long after its
/// due time each phase that had packets ran, as a histogram of 100 µs
/// buckets (bounded memory however long nobody takes it).
#[derive(Debug, Clone)]
pub struct Lateness {
    buckets: Vec<u64>,
    count: u64,
    sum_micros: u64,
    max_micros: u64,
    /// Packets not sent (their time skipped) because the driver woke too
    /// late to catch up.
    pub skipped: u64,
}

impl Default for Lateness {
    fn default() -> Self {
        Self {
            buckets: vec![0; BUCKETS],
            count: 0,
            sum_micros: 0,
            max_micros: 0,
            skipped: 0,
        }
    }
}

impl Lateness {
    /// Records one event `micros` after its due time (the pacer records
    /// phases; a driver may record each packet it sent instead).
    pub fn record(&mut self, micros: u64) {
        let b = ((micros / BUCKET_MICROS) as usize).min(BUCKETS - 1);
        self.buckets[b] += 1;
        self.count += 1;
        self.sum_micros = self.sum_micros.saturating_add(micros);
        self.max_micros = self.max_micros.max(micros);
    }

    /// Adds another record's counts to this one.
    pub fn merge(&mut self, other: &Lateness) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.sum_micros = self.sum_micros.saturating_add(other.sum_micros);
        self.max_micros = self.max_micros.max(other.max_micros);
        self.skipped += other.skipped;
    }

    /// Phases recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The latest phase, in µs.
    pub fn max_micros(&self) -> u64 {
        self.max_micros
    }

    /// Sum of all recorded lateness, in µs.
    pub fn sum_micros(&self) -> u64 {
        self.sum_micros
    }

    /// Records less than `micros` late, to the 100 µs bucket (exact for
    /// multiples of 100 µs): a Prometheus bucket `le`.
    pub fn count_below_micros(&self, micros: u64) -> u64 {
        let n = ((micros / BUCKET_MICROS) as usize).min(BUCKETS);
        self.buckets[..n].iter().sum()
    }

    /// The `p` quantile (0–1) in µs, to the upper edge of its 100 µs bucket.
    pub fn percentile_micros(&self, p: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((self.count as f64 * p).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return ((i as u64 + 1) * BUCKET_MICROS).min(self.max_micros);
            }
        }
        self.max_micros
    }
}

/// The streams of one worker, paced by one tick.
#[derive(Debug)]
pub struct Pacer<K> {
    /// Due time of phase number `cursor`.
    next: Instant,
    /// Phases run so far (the next one's number).
    cursor: u64,
    streams: HashMap<K, Stream>,
    /// The streams of each phase.
    slots: Vec<Vec<K>>,
    events: VecDeque<PacerEvent<K>>,
    lateness: Lateness,
    buf: Vec<u8>,
    frame: Vec<u8>,
}

impl<K: Copy + Eq + Hash> Pacer<K> {
    /// A pacer whose first phase is due at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            next: now,
            cursor: 0,
            streams: HashMap::new(),
            slots: vec![Vec::new(); SLOTS as usize],
            events: VecDeque::new(),
            lateness: Lateness::default(),
            buf: Vec::with_capacity(12 + FRAME_SAMPLES),
            frame: Vec::with_capacity(FRAME_SAMPLES),
        }
    }

    /// Starts a stream at `now`: packets of payload type `pt` in `law`,
    /// numbered and stamped by `rtp` (whose start values the caller drew at
    /// random), in the least-used phase. It sends silence until audio is
    /// queued.
    pub fn add(&mut self, now: Instant, key: K, rtp: RtpSender, pt: u8, law: Law) {
        self.remove(key);
        if self.streams.is_empty() && now > self.next {
            // Idle until now (the driver need not tick an empty pacer):
            // move the clock on, so the first stream is not handed the
            // idle time as packets to catch up.
            let idle = now - self.next;
            let n = idle.as_nanos().div_ceil(PHASE.as_nanos()) as u64;
            self.cursor += n;
            self.next += phases(n);
        }
        let slot = (0..self.slots.len())
            .min_by_key(|i| self.slots[*i].len())
            .unwrap_or(0);
        self.slots[slot].push(key);
        self.streams.insert(
            key,
            Stream {
                slot,
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
        if let Some(s) = self.streams.remove(&key) {
            self.slots[s.slot].retain(|k| *k != key);
        }
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
            let n = usize::try_from(d.as_millis())
                .unwrap_or(usize::MAX)
                .saturating_mul(8);
            if n > 0 {
                s.queue.push_back(Segment::Silence(n));
                s.drained = false;
            }
        }
    }

    /// Drops what is queued (e.g. the caller pressed 1: start over). No
    /// `Drained` event follows for the dropped audio.
    pub fn clear(&mut self, key: K) {
        if let Some(s) = self.streams.get_mut(&key) {
            s.queue.clear();
            s.drained = true;
        }
    }

    /// When to call [`Pacer::handle_timeout`] next: the next phase with
    /// streams in it (a full period ahead if there are none).
    pub fn poll_timeout(&self) -> Instant {
        (0..u64::from(SLOTS))
            .find(|i| !self.slots[((self.cursor + i) % u64::from(SLOTS)) as usize].is_empty())
            .map_or(self.next + PTIME, |i| self.next + PHASE * i as u32)
    }

    /// Runs the phases due by `now`; `send` gets each packet and the time
    /// it was due.
    pub fn handle_timeout(&mut self, now: Instant, mut send: impl FnMut(K, &[u8], Instant)) {
        if now < self.next {
            return;
        }
        let due = ((now - self.next).as_nanos() / PHASE.as_nanos()) as u64 + 1;
        let skip = due.saturating_sub(u64::from(MAX_CATCH_UP * SLOTS));
        if skip > 0 {
            // Too late to send everything: the oldest phases' time is
            // skipped, counted per stream without walking every phase.
            let slots = u64::from(SLOTS);
            let (full, rest) = (skip / slots, skip % slots);
            let first = self.cursor % slots;
            for (slot, keys) in self.slots.iter().enumerate() {
                let offset = (slot as u64 + slots - first) % slots;
                let times = full + u64::from(offset < rest);
                for k in keys {
                    if let Some(s) = self.streams.get_mut(k) {
                        // Timestamps wrap: only the count modulo 2^32 matters.
                        s.rtp
                            .skip((times.wrapping_mul(FRAME_SAMPLES as u64)) as u32);
                        self.lateness.skipped += times;
                    }
                }
            }
            self.cursor += skip;
            self.next += phases(skip);
        }
        for _ in skip..due {
            let slot = (self.cursor % u64::from(SLOTS)) as usize;
            if !self.slots[slot].is_empty() {
                let late = now - self.next;
                self.lateness
                    .record(late.as_micros().min(u128::from(u64::MAX)) as u64);
                self.phase(slot, &mut send);
            }
            self.cursor += 1;
            self.next += PHASE;
        }
    }

    fn phase(&mut self, slot: usize, send: &mut impl FnMut(K, &[u8], Instant)) {
        for key in &self.slots[slot] {
            let Some(s) = self.streams.get_mut(key) else {
                continue;
            };
            self.frame.clear();
            fill(&mut s.queue, &mut self.frame, s.law);
            self.buf.clear();
            s.rtp
                .audio(&mut self.buf, s.pt, &self.frame, FRAME_SAMPLES as u32);
            send(*key, &self.buf, self.next);
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

/// `n` phases as a duration (without overflowing a `u32` multiplier).
fn phases(n: u64) -> Duration {
    Duration::from_nanos((PHASE.as_nanos() as u64).saturating_mul(n))
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

    #[test]
    fn lateness_buckets_answer_prometheus_style_questions() {
        let mut l = Lateness::default();
        for micros in [50, 150, 950, 1_000, 2_500, 2_000_000] {
            l.record(micros);
        }
        assert_eq!(l.count(), 6);
        assert_eq!(l.sum_micros(), 50 + 150 + 950 + 1_000 + 2_500 + 2_000_000);
        assert_eq!(l.count_below_micros(100), 1);
        assert_eq!(l.count_below_micros(1_000), 3, "1000 µs is not below 1 ms");
        assert_eq!(l.count_below_micros(2_000), 4);
        assert_eq!(l.count_below_micros(5_000), 5);
        // Past a second everything lands in the last bucket.
        assert_eq!(l.count_below_micros(u64::MAX), 6);
        let mut m = Lateness::default();
        m.merge(&l);
        assert_eq!(
            (m.count(), m.sum_micros(), m.max_micros()),
            (6, l.sum_micros(), 2_000_000)
        );
    }
    use crate::media::rtp::RtpPacket;

    fn collect(p: &mut Pacer<u32>, now: Instant) -> Vec<(u32, u16, u32, Vec<u8>)> {
        let mut out = Vec::new();
        p.handle_timeout(now, |k, b, _due| {
            let r = RtpPacket::parse(b).unwrap();
            out.push((k, r.sequence, r.timestamp, r.payload.to_vec()));
        });
        out
    }

    #[test]
    fn every_stream_sends_one_packet_per_period_in_its_own_phase() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        p.add(t0, 1, RtpSender::new(11, 100, 1000), 0, Law::Ulaw);
        p.add(t0, 2, RtpSender::new(22, 7, 5), 8, Law::Alaw);
        let audio: Arc<[u8]> = vec![0x42u8; 200].into();
        p.play(1, audio);
        let first = collect(&mut p, t0);
        assert_eq!(first.len(), 1, "stream 1 in the first phase");
        assert_eq!((first[0].0, first[0].1, first[0].2), (1, 100, 1000));
        assert_eq!(first[0].3, vec![0x42; 160]);
        assert_eq!(p.poll_timeout(), t0 + PHASE, "stream 2's phase");
        let second = collect(&mut p, t0 + PHASE);
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].0, 2);
        assert_eq!(
            second[0].3,
            vec![0xD5; 160],
            "A-law silence before any audio"
        );
        assert_eq!(
            p.poll_timeout(),
            t0 + PTIME,
            "empty phases are not woken for"
        );
        assert!(collect(&mut p, t0 + PTIME / 2).is_empty());
        let third = collect(&mut p, t0 + PTIME);
        assert_eq!(third.len(), 1);
        assert_eq!(
            (third[0].1, third[0].2),
            (101, 1160),
            "seq +1, timestamp +160"
        );
        let mut want = vec![0x42; 40];
        want.extend([0xFF; 120]);
        assert_eq!(third[0].3, want, "the rest, then μ-law silence");
        assert_eq!(p.poll_event(), Some(PacerEvent::Drained(1)));
        assert_eq!(p.poll_event(), None);
    }

    #[test]
    fn streams_spread_evenly_over_the_phases() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        for k in 0..1000u32 {
            p.add(t0, k, RtpSender::new(k, 0, 0), 0, Law::Ulaw);
        }
        let mut per_phase = Vec::new();
        for i in 0..SLOTS {
            per_phase.push(collect(&mut p, t0 + PHASE * i).len());
        }
        assert!(per_phase.iter().all(|n| *n == 50), "{per_phase:?}");
        p.remove(3);
        assert_eq!(p.len(), 999);
        // Phases 20 to 39: one more full period.
        assert_eq!(
            collect(&mut p, t0 + PTIME * 2 - PHASE).len(),
            999,
            "each stream once per period"
        );
    }

    #[test]
    fn pauses_are_silence_and_clear_drops_the_queue() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        p.add(t0, 1, RtpSender::new(1, 0, 0), 0, Law::Ulaw);
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
        p.add(t0, 1, RtpSender::new(1, 0, 0), 0, Law::Ulaw);
        collect(&mut p, t0);
        // 45 ms late for the packet due at 20 ms: those at 20, 40, 60 go now.
        let got = collect(&mut p, t0 + PTIME + Duration::from_millis(45));
        assert_eq!(
            got.iter().map(|x| x.2).collect::<Vec<_>>(),
            [160, 320, 480],
            "continuous timestamps"
        );
        assert_eq!(p.poll_timeout(), t0 + PTIME * 4);
        // A second late: the last 5 periods go at once, the 46 before them
        // are skipped, and the timestamp moves on by the skipped time.
        let got = collect(&mut p, t0 + PTIME * 4 + Duration::from_millis(1010));
        assert_eq!(got.len(), MAX_CATCH_UP as usize);
        assert_eq!(got[0].2, 160 * (4 + 46), "time skipped, not lost");
        let l = p.take_lateness();
        assert_eq!(l.skipped, 46);
        // Phases sent 0, 45, 25, 5, 90, 70, 50, 30, 10 ms late.
        assert_eq!((l.count(), l.max_micros()), (9, 90_000));
        assert_eq!(
            l.percentile_micros(0.5),
            30_100,
            "median, to its 100 µs bucket"
        );
        assert_eq!(l.percentile_micros(0.0), 100);
        let at = p.poll_timeout();
        let next = collect(&mut p, at);
        assert_eq!(next[0].2, 160 * (4 + 46 + 5));
        assert_eq!(next[0].1, 4 + 5, "sequence numbers have no gap");
    }

    #[test]
    fn removed_streams_stop_and_unknown_keys_are_ignored() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        p.add(t0, 1, RtpSender::new(1, 0, 0), 0, Law::Ulaw);
        p.play(9, vec![1u8; 10].into());
        p.remove(1);
        assert!(p.is_empty());
        assert!(collect(&mut p, t0).is_empty());
    }

    #[test]
    fn a_stream_added_after_idle_time_gets_no_backlog() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        // Nothing ticked the empty pacer for 10 s.
        let later = t0 + Duration::from_secs(10);
        p.add(later, 1, RtpSender::new(1, 0, 0), 0, Law::Ulaw);
        let at = p.poll_timeout();
        assert!(
            at >= later && at < later + PTIME,
            "first packet within a period"
        );
        let got = collect(&mut p, at);
        assert_eq!(got.len(), 1, "one packet, not a catch-up burst");
        assert_eq!(p.take_lateness().skipped, 0);
    }

    #[test]
    fn cleared_audio_reports_no_drained() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        p.add(t0, 1, RtpSender::new(1, 0, 0), 0, Law::Ulaw);
        p.play(1, vec![1u8; 800].into());
        collect(&mut p, t0);
        p.clear(1);
        collect(&mut p, t0 + PTIME);
        assert_eq!(p.poll_event(), None, "the audio was dropped, not played");
        p.play(1, vec![1u8; 100].into());
        collect(&mut p, t0 + PTIME * 2);
        assert_eq!(p.poll_event(), Some(PacerEvent::Drained(1)));
    }

    #[test]
    fn an_hour_late_skips_arithmetically_and_keeps_the_clock() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        for k in 0..1000u32 {
            p.add(t0, k, RtpSender::new(k, 0, 0), 0, Law::Ulaw);
        }
        collect(&mut p, t0 + PTIME - PHASE); // one period: every stream once
        let hour = Duration::from_secs(3600);
        let started = std::time::Instant::now();
        let got = collect(&mut p, t0 + PTIME - PHASE + hour);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        // The last 5 periods go out: 5 packets per stream.
        assert_eq!(got.len(), 5 * 1000);
        let l = p.take_lateness();
        assert_eq!(
            l.skipped + 5 * 1000,
            1000 * (3600 * 50),
            "every period accounted for"
        );
        // Stream 0's packets keep real time: the last one sent is an hour on.
        let last0 = got.iter().filter(|x| x.0 == 0).map(|x| x.2).max().unwrap();
        assert_eq!(last0, (160 * 3600 * 50) as u32);
    }
}
