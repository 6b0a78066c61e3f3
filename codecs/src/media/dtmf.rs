//! DTMF as RTP telephone-events (RFC 4733): the 4-byte event payload, and a
//! receiver that turns a stream of event packets into key presses, once
//! each, at the end of the event.

use thiserror::Error;

/// Why an event payload is malformed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DtmfError {
    /// Payload shorter than one 4-byte event.
    #[error("telephone-event payload of {0} bytes, need at least 4")]
    TooShort(usize),
}

/// One telephone-event block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code: 0–9 digits, 10 `*`, 11 `#`, 12–15 `A`–`D`.
    pub event: u8,
    /// End of the event (sent three times).
    pub end: bool,
    /// Volume, 0 to -63 dBm0 (as 0–63).
    pub volume: u8,
    /// Duration so far, in timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parses the first event of a payload (more follow only with RFC 2198
    /// redundancy, which we do not negotiate).
    pub fn parse(payload: &[u8]) -> Result<Self, DtmfError> {
        if payload.len() < 4 {
            return Err(DtmfError::TooShort(payload.len()));
        }
        Ok(Self {
            event: payload[0],
            end: payload[1] & 0x80 != 0,
            volume: payload[1] & 0x3F,
            duration: u16::from_be_bytes([payload[2], payload[3]]),
        })
    }

    /// The 4-byte payload.
    pub fn encode(&self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (u8::from(self.end) << 7) | (self.volume & 0x3F),
            d[0],
            d[1],
        ]
    }

    /// The key, for DTMF events.
    pub fn key(&self) -> Option<char> {
        key_of(self.event)
    }
}

/// The key of a DTMF event code.
pub fn key_of(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + event - 12)),
        _ => None,
    }
}

/// The event code of a key.
pub fn event_of(key: char) -> Option<u8> {
    match key {
        '0'..='9' => Some(key as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(key as u8 - b'A' + 12),
        _ => None,
    }
}

/// Turns telephone-event packets into key presses. An event is known by the
/// RTP timestamp all its packets share; it counts once, when its first end
/// packet arrives (the end is sent three times). If every end packet is
/// lost, the event counts when the next event starts, or at [`flush`]
/// (the call's driver calls it when no event packet came for a while, and
/// at hang-up). A press longer than 8 s comes as segments (RFC 4733
/// §2.5.1.3: the next one stamped where the last ended) and counts once.
///
/// [`flush`]: DtmfReceiver::flush
#[derive(Debug, Default, Clone)]
pub struct DtmfReceiver {
    /// The event in progress (timestamp, key, duration so far), not yet reported.
    open: Option<(u32, char, u16)>,
    /// Timestamps of the last events reported, so repeats are ignored.
    done: [Option<u32>; 4],
    next: usize,
}

impl DtmfReceiver {
    /// A receiver with no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one event packet (its RTP timestamp and payload); returns the
    /// keys this completes, oldest first (at most two: an event whose end
    /// was lost, and this one).
    pub fn on_packet(&mut self, timestamp: u32, ev: TelephoneEvent) -> Vec<char> {
        let mut keys = Vec::new();
        if self.done.contains(&Some(timestamp)) {
            return keys;
        }
        let Some(key) = ev.key() else {
            return keys;
        };
        if let Some((ts, k, dur)) = self.open {
            if ts != timestamp {
                let gap = timestamp.wrapping_sub(ts.wrapping_add(u32::from(dur)));
                // Within 100 ms of where the open segment ended.
                if k == key && (gap <= 800 || gap >= u32::MAX - 800) && dur >= 0xFF00 {
                    // The next segment of a long press, not a new press.
                    self.finish(ts);
                } else {
                    // A new event began: the previous one ended unseen.
                    self.finish(ts);
                    keys.push(k);
                }
            }
        }
        if ev.end {
            self.finish(timestamp);
            keys.push(key);
        } else {
            self.open = Some((timestamp, key, ev.duration));
        }
        keys
    }

    /// Reports the event in progress as ended (its end packets were lost,
    /// or the call is over), if there is one.
    pub fn flush(&mut self) -> Option<char> {
        let (ts, k, _) = self.open?;
        self.finish(ts);
        Some(k)
    }

    fn finish(&mut self, timestamp: u32) {
        if self.open.is_some_and(|(ts, _, _)| ts == timestamp) {
            self.open = None;
        }
        self.done[self.next] = Some(timestamp);
        self.next = (self.next + 1) % self.done.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: u8, end: bool, duration: u16) -> TelephoneEvent {
        TelephoneEvent {
            event,
            end,
            volume: 10,
            duration,
        }
    }

    #[test]
    fn payloads_round_trip_and_short_ones_are_refused() {
        let e = ev(11, true, 1600);
        assert_eq!(e.encode(), [11, 0x8A, 0x06, 0x40]);
        assert_eq!(TelephoneEvent::parse(&e.encode()), Ok(e));
        assert_eq!(TelephoneEvent::parse(&[1, 2]), Err(DtmfError::TooShort(2)));
    }

    #[test]
    fn keys_and_codes_map_both_ways() {
        for (k, c) in [
            ('0', 0),
            ('9', 9),
            ('*', 10),
            ('#', 11),
            ('A', 12),
            ('D', 15),
        ] {
            assert_eq!(key_of(c), Some(k));
            assert_eq!(event_of(k), Some(c));
        }
        assert_eq!(key_of(16), None);
        assert_eq!(event_of('x'), None);
    }

    #[test]
    fn an_event_counts_once_at_its_end() {
        let mut r = DtmfReceiver::new();
        assert!(r.on_packet(1000, ev(1, false, 160)).is_empty());
        assert!(r.on_packet(1000, ev(1, false, 320)).is_empty());
        assert_eq!(r.on_packet(1000, ev(1, true, 800)), ['1']);
        // The end is repeated three times.
        assert!(r.on_packet(1000, ev(1, true, 800)).is_empty());
        assert!(r.on_packet(1000, ev(1, true, 800)).is_empty());
        // The same key again is a new event (new timestamp).
        assert!(r.on_packet(2600, ev(1, false, 160)).is_empty());
        assert_eq!(r.on_packet(2600, ev(1, true, 800)), ['1']);
    }

    #[test]
    fn an_event_whose_end_was_lost_counts_when_the_next_begins() {
        let mut r = DtmfReceiver::new();
        assert!(r.on_packet(1000, ev(5, false, 160)).is_empty());
        assert_eq!(r.on_packet(2000, ev(7, false, 160)), ['5']);
        assert_eq!(r.on_packet(2000, ev(7, true, 640)), ['7']);
        // A late end of the first event is not counted again.
        assert!(r.on_packet(1000, ev(5, true, 800)).is_empty());
    }

    #[test]
    fn non_dtmf_events_are_ignored() {
        let mut r = DtmfReceiver::new();
        assert!(r.on_packet(1, ev(32, true, 160)).is_empty());
    }

    #[test]
    fn a_press_whose_end_never_came_is_reported_by_flush() {
        let mut r = DtmfReceiver::new();
        assert!(r.on_packet(500, ev(1, false, 160)).is_empty());
        assert_eq!(r.flush(), Some('1'));
        assert_eq!(r.flush(), None, "once");
        assert!(
            r.on_packet(500, ev(1, true, 800)).is_empty(),
            "a late end is not counted again"
        );
    }

    #[test]
    fn a_long_press_in_segments_counts_once() {
        let mut r = DtmfReceiver::new();
        assert!(r.on_packet(1000, ev(5, false, 0xFFFF)).is_empty());
        // RFC 4733 §2.5.1.3: the next segment starts where the first ended.
        let next = 1000 + 0xFFFF;
        assert!(r.on_packet(next, ev(5, false, 4000)).is_empty());
        assert_eq!(r.on_packet(next, ev(5, true, 8000)), ['5']);
        // A short press of the same key right after a short one is two presses.
        assert!(r.on_packet(200_000, ev(5, false, 800)).is_empty());
        assert_eq!(r.on_packet(200_800, ev(5, true, 800)), ['5', '5']);
    }
}
