//! Requests awaiting responses, their deadlines, and sequence numbers.

use super::RequestId;
use crate::smpp::pdu::Body;
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

/// Largest sequence_number allowed by SMPP 3.4 (0x00000001–0x7FFFFFFF).
pub(crate) const MAX_SEQUENCE: u32 = 0x7FFF_FFFF;

/// Why a request was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    Bind,
    EnquireLink,
    Unbind,
    User(RequestId),
}

/// One request awaiting its response.
#[derive(Debug)]
pub(crate) struct InFlight {
    pub(crate) purpose: Purpose,
    pub(crate) body: Body,
    pub(crate) deadline: Instant,
}

/// In-flight requests keyed by sequence, with a deadline queue.
#[derive(Debug)]
pub(crate) struct Window {
    map: HashMap<u32, InFlight>,
    // Deadlines in send order; all requests of one purpose share a timeout,
    // so entries are nearly sorted. Stale entries (already answered) are
    // skipped lazily.
    deadlines: VecDeque<(Instant, u32)>,
    next_seq: u32,
    user: usize,
}

impl Window {
    pub(crate) fn new() -> Self {
        Window {
            map: HashMap::with_capacity(256),
            deadlines: VecDeque::with_capacity(256),
            next_seq: 1,
            user: 0,
        }
    }

    #[cfg(test)]
    pub(crate) fn set_next_sequence(&mut self, s: u32) {
        self.next_seq = s;
    }

    /// Next free sequence number; wraps from 0x7FFFFFFF to 1 and skips any
    /// still in flight.
    pub(crate) fn next_sequence(&mut self) -> u32 {
        loop {
            let s = self.next_seq;
            self.next_seq = if s >= MAX_SEQUENCE { 1 } else { s + 1 };
            if !self.map.contains_key(&s) {
                return s;
            }
        }
    }

    pub(crate) fn insert(&mut self, seq: u32, f: InFlight) {
        if matches!(f.purpose, Purpose::User(_)) {
            self.user += 1;
        }
        self.deadlines.push_back((f.deadline, seq));
        self.map.insert(seq, f);
    }

    pub(crate) fn remove(&mut self, seq: u32) -> Option<InFlight> {
        let f = self.map.remove(&seq)?;
        if matches!(f.purpose, Purpose::User(_)) {
            self.user -= 1;
        }
        Some(f)
    }

    pub(crate) fn user_in_flight(&self) -> usize {
        self.user
    }

    fn prune(&mut self) {
        while let Some(&(d, seq)) = self.deadlines.front() {
            match self.map.get(&seq) {
                Some(f) if f.deadline == d => break,
                _ => {
                    self.deadlines.pop_front();
                }
            }
        }
    }

    /// The earliest deadline. The queue is in send order and requests share
    /// a timeout per purpose, so its live front is the earliest in practice;
    /// an out-of-order entry fires at most when the front does.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        self.prune();
        self.deadlines.front().map(|(d, _)| *d)
    }

    /// Removes and returns every request whose deadline has passed.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<(u32, InFlight)> {
        let mut out = Vec::new();
        loop {
            self.prune();
            match self.deadlines.front() {
                Some(&(d, seq)) if d <= now => {
                    self.deadlines.pop_front();
                    if let Some(f) = self.remove(seq) {
                        out.push((seq, f));
                    }
                }
                _ => break,
            }
        }
        out
    }

    /// Removes all user requests (for close), in sequence order.
    pub(crate) fn drain_user(&mut self) -> Vec<(RequestId, Body, bool)> {
        let mut v: Vec<_> = self.map.drain().collect();
        v.sort_by_key(|(s, _)| *s);
        self.deadlines.clear();
        self.user = 0;
        v.into_iter()
            .filter_map(|(_, f)| match f.purpose {
                Purpose::User(id) => Some((id, f.body, true)),
                _ => None,
            })
            .collect()
    }
}
