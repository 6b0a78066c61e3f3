//! Sans-IO reassembly of concatenated (long) mobile-originated messages.
//!
//! The caller extracts the concatenation info (from the UDH via
//! [`parse_udh`](super::parse_udh) or from SAR TLVs) and feeds parts in with
//! the current time; the reassembler never reads a clock. Drive timeouts by
//! arming a timer for [`Reassembler::poll_timeout`] and calling
//! [`Reassembler::handle_timeout`] when it fires.
//!
//! Memory is bounded by `max_pending` groups of at most 255 parts each; when
//! a new group would exceed the bound, the oldest group is evicted.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::decode;

/// Identifies one long message: all its parts share this key.
///
/// `total` is part of the key because a reference alone is only 8 or 16 bits
/// and peers reuse it; a different part count means a different message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartKey {
    /// Originating address.
    pub source: String,
    /// Destination address.
    pub dest: String,
    /// Concatenation reference (UDH or `sar_msg_ref_num`).
    pub reference: u16,
    /// Number of parts the message announces.
    pub total: u8,
}

/// A fully reassembled message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassembled {
    /// Raw part payloads in sequence order (UDH already stripped by the caller).
    pub parts: Vec<Vec<u8>>,
    /// `data_coding` of the first part.
    pub data_coding: u8,
    /// Decoded text of the whole message.
    pub text: String,
}

/// Why a pending group was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpireReason {
    /// No new part arrived within the timeout.
    Timeout,
    /// Dropped to make room for a newer group (`max_pending` reached).
    Evicted,
}

/// A group given up before all its parts arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// The incomplete message.
    pub key: PartKey,
    /// How many distinct parts had arrived.
    pub received: u8,
    /// Why it was given up.
    pub reason: ExpireReason,
}

/// Parts of one message collected so far.
#[derive(Debug)]
struct Group {
    /// Creation order; doubles as the tie-breaker in `by_deadline`.
    id: u64,
    /// `None` if `now + timeout` overflowed `Instant`: never expires by time.
    deadline: Option<Instant>,
    /// Indexed by `seq - 1`: (`data_coding`, payload).
    parts: Vec<Option<(u8, Vec<u8>)>>,
    received: u8,
}

/// Collects parts of long messages until complete, timed out or evicted.
#[derive(Debug)]
pub struct Reassembler {
    timeout: Duration,
    max_pending: usize,
    groups: HashMap<PartKey, Group>,
    /// Group ids by creation order, for eviction and to find a key from an id.
    by_age: BTreeMap<u64, PartKey>,
    /// (deadline, id) of every group that can time out; the first is the next to fire.
    by_deadline: BTreeSet<(Instant, u64)>,
    next_id: u64,
    /// Evictions not yet reported through `handle_timeout`.
    evicted: VecDeque<Expired>,
    /// When the oldest unreported eviction happened, so `poll_timeout` fires at once.
    evicted_at: Option<Instant>,
}

impl Reassembler {
    /// Creates a reassembler that gives up on a message `timeout` after its latest new part and holds at most `max_pending` incomplete messages (minimum 1).
    pub fn new(timeout: Duration, max_pending: usize) -> Self {
        Reassembler {
            timeout,
            max_pending: max_pending.max(1),
            groups: HashMap::new(),
            by_age: BTreeMap::new(),
            by_deadline: BTreeSet::new(),
            next_id: 0,
            evicted: VecDeque::new(),
            evicted_at: None,
        }
    }

    /// Number of incomplete messages currently held.
    pub fn pending(&self) -> usize {
        self.groups.len()
    }

    /// Adds part `seq` (1-based) of the message `key`; returns the message once all parts are in.
    ///
    /// Duplicates of a part already held are ignored (first copy wins, and
    /// they do not extend the deadline, so a peer cannot keep a group alive
    /// by resending). `seq` of 0 or above `key.total` is rejected. Note that
    /// a duplicate arriving *after* completion starts a new group, which
    /// simply times out.
    pub fn push(
        &mut self,
        now: Instant,
        key: PartKey,
        seq: u8,
        data_coding: u8,
        payload: Vec<u8>,
    ) -> Option<Reassembled> {
        if seq == 0 || seq > key.total {
            return None;
        }
        if key.total == 1 {
            // Nothing to wait for; do not disturb (or evict) pending groups.
            return Some(assemble(vec![(data_coding, payload)]));
        }
        let index = usize::from(seq - 1);
        let deadline = now.checked_add(self.timeout);

        if let Some(group) = self.groups.get_mut(&key) {
            if group.parts[index].is_some() {
                return None;
            }
            group.parts[index] = Some((data_coding, payload));
            group.received += 1;
            if group.received < key.total {
                if let Some(old) = group.deadline {
                    self.by_deadline.remove(&(old, group.id));
                }
                group.deadline = deadline;
                if let Some(new) = deadline {
                    self.by_deadline.insert((new, group.id));
                }
                return None;
            }
            let group = self.remove(&key)?;
            // All slots are filled: `received == total` and duplicates never count.
            return Some(assemble(group.parts.into_iter().flatten().collect()));
        }

        // `groups.len() <= max_pending` always holds, so one eviction suffices.
        if self.groups.len() >= self.max_pending {
            self.evict_oldest(now);
        }
        let id = self.next_id;
        self.next_id += 1;
        let mut parts = vec![None; usize::from(key.total)];
        parts[index] = Some((data_coding, payload));
        if let Some(d) = deadline {
            self.by_deadline.insert((d, id));
        }
        self.by_age.insert(id, key.clone());
        self.groups.insert(
            key,
            Group {
                id,
                deadline,
                parts,
                received: 1,
            },
        );
        None
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work: the earliest deadline, or at once after an eviction.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let next_deadline = self.by_deadline.first().map(|&(d, _)| d);
        match (self.evicted_at, next_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Gives up on every group whose deadline is at or before `now`, and reports evictions since the last call.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Expired> {
        let mut out: Vec<Expired> = self.evicted.drain(..).collect();
        self.evicted_at = None;
        while let Some(&(deadline, id)) = self.by_deadline.first() {
            if deadline > now {
                break;
            }
            // Pop before looking up, so even a stale index entry cannot
            // make this loop spin.
            self.by_deadline.pop_first();
            let Some(key) = self.by_age.get(&id).cloned() else {
                continue;
            };
            if let Some(group) = self.remove(&key) {
                out.push(Expired {
                    key,
                    received: group.received,
                    reason: ExpireReason::Timeout,
                });
            }
        }
        out
    }

    /// Removes a group from all indices.
    fn remove(&mut self, key: &PartKey) -> Option<Group> {
        let group = self.groups.remove(key)?;
        self.by_age.remove(&group.id);
        if let Some(d) = group.deadline {
            self.by_deadline.remove(&(d, group.id));
        }
        Some(group)
    }

    /// Drops the oldest group and queues an eviction report.
    fn evict_oldest(&mut self, now: Instant) {
        let Some(key) = self.by_age.first_key_value().map(|(_, k)| k.clone()) else {
            return;
        };
        let Some(group) = self.remove(&key) else {
            return;
        };
        // A caller that never calls `handle_timeout` must not make us grow
        // without bound: keep at most `max_pending` reports, dropping the oldest.
        if self.evicted.len() >= self.max_pending {
            self.evicted.pop_front();
        }
        self.evicted.push_back(Expired {
            key,
            received: group.received,
            reason: ExpireReason::Evicted,
        });
        self.evicted_at.get_or_insert(now);
    }
}

/// Builds the result from parts in sequence order.
/// Joins the parts of one message, in sequence order, each with its
/// `data_coding`: the same decoding the reassembler does once all are in
/// (for parts kept elsewhere, e.g. durably in a store).
pub fn assemble(parts: Vec<(u8, Vec<u8>)>) -> Reassembled {
    let data_coding = parts.first().map_or(0, |&(dc, _)| dc);
    let uniform = parts.iter().all(|&(dc, _)| dc == data_coding);
    let text = if uniform {
        // Join raw bytes first: peers that split naively may cut a UTF-16
        // surrogate pair or a GSM escape pair across parts.
        decode(data_coding, &concat_payloads(&parts))
    } else {
        // Mixed encodings cannot be joined meaningfully; decode each part
        // with its own data_coding.
        parts.iter().map(|(dc, p)| decode(*dc, p)).collect()
    };
    Reassembled {
        parts: parts.into_iter().map(|(_, p)| p).collect(),
        data_coding,
        text,
    }
}

/// Concatenation of the payloads, dropping their `data_coding` tags.
fn concat_payloads(parts: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|(_, p)| p.len()).sum());
    for (_, p) in parts {
        out.extend_from_slice(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{choose_encoding, split, SplitMode};
    use super::*;
    use proptest::prelude::*;

    const TIMEOUT: Duration = Duration::from_secs(60);

    fn key(reference: u16, total: u8) -> PartKey {
        PartKey {
            source: "4912345".into(),
            dest: "1234".into(),
            reference,
            total,
        }
    }

    #[test]
    fn out_of_order_and_duplicates() {
        let t0 = Instant::now();
        let mut r = Reassembler::new(TIMEOUT, 10);
        assert_eq!(r.push(t0, key(1, 3), 3, 0, b"!".to_vec()), None);
        assert_eq!(r.push(t0, key(1, 3), 1, 0, b"hello ".to_vec()), None);
        // Duplicate with different content: ignored, first copy wins.
        assert_eq!(r.push(t0, key(1, 3), 1, 0, b"XXXXX ".to_vec()), None);
        assert_eq!(r.pending(), 1);
        let done = r.push(t0, key(1, 3), 2, 0, b"world".to_vec()).unwrap();
        assert_eq!(done.text, "hello world!");
        assert_eq!(
            done.parts,
            vec![b"hello ".to_vec(), b"world".to_vec(), b"!".to_vec()]
        );
        assert_eq!(done.data_coding, 0);
        assert_eq!(r.pending(), 0);
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn invalid_seq_rejected() {
        let t0 = Instant::now();
        let mut r = Reassembler::new(TIMEOUT, 10);
        assert_eq!(r.push(t0, key(1, 2), 0, 0, b"a".to_vec()), None);
        assert_eq!(r.push(t0, key(1, 2), 3, 0, b"a".to_vec()), None);
        assert_eq!(r.push(t0, key(1, 0), 1, 0, b"a".to_vec()), None);
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn single_part_completes_at_once() {
        let mut r = Reassembler::new(TIMEOUT, 1);
        let t0 = Instant::now();
        r.push(t0, key(1, 2), 1, 0, b"a".to_vec());
        let done = r.push(t0, key(9, 1), 1, 0x08, vec![0x00, b'z']).unwrap();
        assert_eq!(done.text, "z");
        // The pending group was not evicted for it.
        assert_eq!(r.pending(), 1);
        assert!(r.handle_timeout(t0).is_empty());
    }

    #[test]
    fn keys_are_distinct_by_address_and_total() {
        let t0 = Instant::now();
        let mut r = Reassembler::new(TIMEOUT, 10);
        r.push(t0, key(1, 2), 1, 0, b"a".to_vec());
        let mut other = key(1, 2);
        other.source = "other".into();
        r.push(t0, other, 2, 0, b"b".to_vec());
        r.push(t0, key(1, 3), 2, 0, b"c".to_vec());
        assert_eq!(r.pending(), 3);
        assert_eq!(
            r.push(t0, key(1, 2), 2, 0, b"d".to_vec()).unwrap().text,
            "ad"
        );
    }

    #[test]
    fn timeout_expiry() {
        let t0 = Instant::now();
        let mut r = Reassembler::new(TIMEOUT, 10);
        r.push(t0, key(1, 3), 1, 0, b"a".to_vec());
        r.push(t0 + Duration::from_secs(10), key(2, 2), 2, 0, b"b".to_vec());
        assert_eq!(r.poll_timeout(), Some(t0 + TIMEOUT));

        // A new part extends the deadline; a duplicate does not.
        r.push(t0 + Duration::from_secs(30), key(1, 3), 2, 0, b"b".to_vec());
        r.push(t0 + Duration::from_secs(50), key(1, 3), 2, 0, b"b".to_vec());
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(70)));

        assert!(r.handle_timeout(t0 + Duration::from_secs(69)).is_empty());
        let expired = r.handle_timeout(t0 + Duration::from_secs(70));
        assert_eq!(
            expired,
            vec![Expired {
                key: key(2, 2),
                received: 1,
                reason: ExpireReason::Timeout
            }]
        );
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(90)));
        let expired = r.handle_timeout(t0 + Duration::from_secs(1000));
        assert_eq!(
            expired,
            vec![Expired {
                key: key(1, 3),
                received: 2,
                reason: ExpireReason::Timeout
            }]
        );
        assert_eq!(r.pending(), 0);
        assert_eq!(r.poll_timeout(), None);
        // A late part after expiry starts afresh.
        assert_eq!(
            r.push(
                t0 + Duration::from_secs(1001),
                key(1, 3),
                3,
                0,
                b"c".to_vec()
            ),
            None
        );
        assert_eq!(r.pending(), 1);
    }

    #[test]
    fn oldest_group_evicted_when_full() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let mut r = Reassembler::new(TIMEOUT, 2);
        r.push(t0, key(1, 2), 1, 0, b"a".to_vec());
        r.push(t0, key(2, 2), 1, 0, b"b".to_vec());
        // Adding to an existing group does not evict.
        r.push(t0, key(2, 2), 1, 0, b"b".to_vec());
        assert_eq!(r.poll_timeout(), Some(t0 + TIMEOUT));
        r.push(t1, key(3, 2), 1, 0, b"c".to_vec());
        assert_eq!(r.pending(), 2);
        assert_eq!(
            r.poll_timeout(),
            Some(t1),
            "eviction must be reported promptly"
        );
        assert_eq!(
            r.handle_timeout(t1),
            vec![Expired {
                key: key(1, 2),
                received: 1,
                reason: ExpireReason::Evicted
            }]
        );
        assert_eq!(r.poll_timeout(), Some(t0 + TIMEOUT));
        // The survivors still complete.
        assert!(r.push(t1, key(2, 2), 2, 0, b"!".to_vec()).is_some());
        assert!(r.push(t1, key(3, 2), 2, 0, b"!".to_vec()).is_some());
        assert_eq!(r.push(t1, key(1, 2), 2, 0, b"!".to_vec()), None);
    }

    #[test]
    fn eviction_reports_are_bounded() {
        let t0 = Instant::now();
        let mut r = Reassembler::new(TIMEOUT, 2);
        for reference in 0..100 {
            r.push(t0, key(reference, 2), 1, 0, vec![]);
        }
        let reports = r.handle_timeout(t0);
        assert_eq!(reports.len(), 2);
        assert_eq!(reports[1].key.reference, 97);
        assert_eq!(r.pending(), 2);
    }

    #[test]
    fn huge_timeout_never_expires() {
        let t0 = Instant::now();
        let mut r = Reassembler::new(Duration::MAX, 4);
        r.push(t0, key(1, 2), 1, 0, vec![b'a']);
        r.push(t0, key(1, 2), 1, 0, vec![b'a']);
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(r.push(t0, key(1, 2), 2, 0, vec![b'b']).unwrap().text, "ab");
    }

    #[test]
    fn straddling_pairs_decode_after_join() {
        let t0 = Instant::now();
        let mut r = Reassembler::new(TIMEOUT, 4);
        // A peer cut "a😀" in the middle of the surrogate pair.
        r.push(t0, key(1, 2), 2, 0x08, vec![0xDE, 0x00]);
        let done = r
            .push(t0, key(1, 2), 1, 0x08, vec![0x00, b'a', 0xD8, 0x3D])
            .unwrap();
        assert_eq!(done.text, "a😀");
        // And a GSM escape pair.
        r.push(t0, key(2, 2), 1, 0x00, vec![b'x', 0x1B]);
        let done = r.push(t0, key(2, 2), 2, 0x00, vec![0x65]).unwrap();
        assert_eq!(done.text, "x€");
    }

    #[test]
    fn mixed_data_coding_decodes_per_part() {
        let t0 = Instant::now();
        let mut r = Reassembler::new(TIMEOUT, 4);
        r.push(t0, key(1, 2), 1, 0x00, vec![b'a']);
        let done = r.push(t0, key(1, 2), 2, 0x08, vec![0x65, 0xE5]).unwrap();
        assert_eq!(done.data_coding, 0x00);
        assert_eq!(done.text, "a日");
    }

    proptest! {
        #[test]
        fn split_then_reassemble_any_order(
            text in "([ -~]|€|\\{|日|😀){0,400}",
            rotate in 0usize..300,
            reverse in any::<bool>(),
        ) {
            let enc = choose_encoding(&text);
            let segs = split(&text, enc, SplitMode::Udh8, 7).unwrap();
            let total = segs.len() as u8;
            let mut numbered: Vec<(u8, Vec<u8>)> =
                segs.into_iter().zip(1..).map(|(s, i)| (i, s.payload)).collect();
            let n = numbered.len();
            numbered.rotate_left(rotate % n);
            if reverse {
                numbered.reverse();
            }
            let mut r = Reassembler::new(TIMEOUT, 4);
            let t0 = Instant::now();
            let mut result = None;
            for (i, (seq, payload)) in numbered.into_iter().enumerate() {
                let out = r.push(t0, key(7, total), seq, enc.data_coding(), payload);
                prop_assert_eq!(out.is_some(), i + 1 == n);
                result = result.or(out);
            }
            let result = result.unwrap();
            prop_assert_eq!(result.text, text);
            prop_assert_eq!(result.data_coding, enc.data_coding());
            prop_assert_eq!(r.pending(), 0);
        }
    }
}
