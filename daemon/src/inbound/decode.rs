//! Sans-IO: what an SMSC's deliver_sm / data_sm carries — a delivery
//! receipt, a whole mobile-originated message, or one part of a long MO
//! held until the rest arrives (or given back when it never does). Takes
//! `now` and the PDU body; the bind driver turns the answer into events and
//! responses. Each request carries a token `T` (the response the SMSC is
//! owed) that comes back with whatever it became part of.

use std::collections::HashMap;
use std::time::{Duration, Instant};
use verigate_codecs::dlr::{is_receipt, parse_dlr, Dlr};
use verigate_codecs::smpp::message::content;
use verigate_codecs::smpp::{Body, SubmitSm};
use verigate_codecs::text::{ExpireReason, PartKey, Reassembler};

/// Long MOs waiting for parts at once at most (the oldest is given back
/// beyond that).
const MAX_PENDING: usize = 10_000;

/// What one request from the SMSC turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery<T> {
    /// A delivery receipt.
    Receipt {
        /// The parsed receipt.
        dlr: Dlr,
        /// Its request's token.
        owed: Vec<T>,
    },
    /// A whole mobile-originated message (all parts of a long one).
    Mo(Mo<T>),
    /// A part of a long MO, held with its token until the others arrive.
    Held,
    /// A request that can never be used (an undecodable receipt, a part
    /// numbered outside its message): accept it, since a redelivery would
    /// not fix it, and log why.
    Unusable {
        /// What was wrong with it.
        error: String,
        /// Its request's token.
        owed: T,
    },
    /// Not a message (a request the SMSC should not send us).
    NotMessage(T),
}

/// A mobile-originated message.
#[derive(Debug, PartialEq, Eq)]
pub struct Mo<T> {
    /// Sender address (the network vouches for it).
    pub from: String,
    /// The sender's type of number.
    pub from_ton: u8,
    /// Destination (our short code).
    pub to: String,
    /// Decoded text.
    pub text: String,
    /// data_coding of the (first part of the) message.
    pub data_coding: u8,
    /// The tokens of every request it came in.
    pub owed: Vec<T>,
}

/// A long MO given up before all its parts came: its requests are answered
/// with a temporary error so the SMSC delivers them again.
#[derive(Debug, PartialEq, Eq)]
pub struct Incomplete<T> {
    /// Parts that had arrived.
    pub received: u8,
    /// Parts the message announced.
    pub total: u8,
    /// Given up for lack of room, not of time.
    pub evicted: bool,
    /// The tokens of the parts that came.
    pub owed: Vec<T>,
}

/// The decoder of one bind's inbound requests.
#[derive(Debug)]
pub struct Decoder<T> {
    reassembler: Reassembler,
    held: HashMap<PartKey, Vec<T>>,
}

impl<T> Decoder<T> {
    /// A decoder that gives a long MO `timeout` for its next part.
    pub fn new(timeout: Duration) -> Self {
        Decoder {
            reassembler: Reassembler::new(timeout, MAX_PENDING),
            held: HashMap::new(),
        }
    }

    /// Takes one request's body (deliver_sm or data_sm) at `now`.
    pub fn take(&mut self, now: Instant, body: Body, owed: T) -> Delivery<T> {
        let sm = match body {
            Body::DeliverSm(sm) => sm,
            Body::DataSm(d) => SubmitSm::from(d),
            _ => return Delivery::NotMessage(owed),
        };
        if is_receipt(sm.esm_class) {
            let rid = sm
                .tlvs
                .receipted_message_id()
                .map(|s| s.to_str_lossy().into_owned());
            return match parse_dlr(
                rid.as_deref(),
                sm.tlvs.message_state(),
                sm.tlvs.network_error_code(),
                &sm.short_message,
            ) {
                Ok(dlr) => Delivery::Receipt {
                    dlr,
                    owed: vec![owed],
                },
                Err(e) => Delivery::Unusable {
                    error: format!("undecodable delivery receipt: {e}"),
                    owed,
                },
            };
        }
        let c = content(&sm);
        let from = sm.source.addr.to_str_lossy().into_owned();
        let from_ton = sm.source.ton;
        let to = sm.dest.addr.to_str_lossy().into_owned();
        let part = match c.part {
            Some(p) if p.total > 1 => p,
            _ => {
                return Delivery::Mo(Mo {
                    from,
                    from_ton,
                    to,
                    text: c.text(),
                    data_coding: c.data_coding,
                    owed: vec![owed],
                })
            }
        };
        if part.seq == 0 || part.seq > part.total {
            return Delivery::Unusable {
                error: format!(
                    "long MO part {} of {} is numbered outside its message",
                    part.seq, part.total
                ),
                owed,
            };
        }
        let key = PartKey {
            source: from.clone(),
            dest: to.clone(),
            reference: part.reference,
            total: part.total,
        };
        self.held.entry(key.clone()).or_default().push(owed);
        match self
            .reassembler
            .push(now, key.clone(), part.seq, c.data_coding, c.payload)
        {
            Some(done) => Delivery::Mo(Mo {
                from,
                from_ton,
                to,
                text: done.text,
                data_coding: done.data_coding,
                owed: self.held.remove(&key).unwrap_or_default(),
            }),
            None => Delivery::Held,
        }
    }

    /// When [`Decoder::handle_timeout`] has something to give back.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.reassembler.poll_timeout()
    }

    /// The long MOs given up by `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Incomplete<T>> {
        self.reassembler
            .handle_timeout(now)
            .into_iter()
            .filter_map(|exp| {
                let owed = self.held.remove(&exp.key)?;
                Some(Incomplete {
                    received: exp.received,
                    total: exp.key.total,
                    evicted: exp.reason == ExpireReason::Evicted,
                    owed,
                })
            })
            .collect()
    }

    /// Requests held in unfinished long MOs.
    pub fn held(&self) -> usize {
        self.held.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use verigate_codecs::smpp::tlv::Tlv;
    use verigate_codecs::smpp::{Address, DeliverSm};

    fn deliver(esm_class: u8, text: &[u8]) -> Body {
        Body::DeliverSm(DeliverSm {
            source: Address::international("447400123456"),
            dest: Address::new(3, 0, "60606"),
            esm_class,
            short_message: bytes::Bytes::copy_from_slice(text),
            ..Default::default()
        })
    }

    /// One part of a long MO, with a concatenation UDH.
    fn part(reference: u8, total: u8, seq: u8, text: &str) -> Body {
        let mut sm = vec![0x05, 0x00, 0x03, reference, total, seq];
        sm.extend_from_slice(text.as_bytes());
        deliver(0x40, &sm)
    }

    #[test]
    fn a_plain_mo_comes_whole_with_its_sender() {
        let mut d = Decoder::new(Duration::from_secs(60));
        let Delivery::Mo(mo) = d.take(Instant::now(), deliver(0, b"LOGIN 4H7K"), 1) else {
            panic!("an MO");
        };
        assert_eq!(
            (
                mo.from.as_str(),
                mo.from_ton,
                mo.to.as_str(),
                mo.text.as_str()
            ),
            ("447400123456", 1, "60606", "LOGIN 4H7K")
        );
        assert_eq!(mo.owed, vec![1]);
    }

    #[test]
    fn a_receipt_is_parsed_and_a_broken_one_is_unusable() {
        let mut d = Decoder::new(Duration::from_secs(60));
        let text = b"id:abc123 sub:001 dlvrd:001 submit date:2601011200 done date:2601011201 stat:DELIVRD err:000 text:";
        match d.take(Instant::now(), deliver(0x04, text), 7) {
            Delivery::Receipt { dlr, owed } => {
                assert_eq!(dlr.message_id, "abc123");
                assert_eq!(owed, vec![7]);
            }
            other => panic!("a receipt: {other:?}"),
        }
        assert!(matches!(
            d.take(Instant::now(), deliver(0x04, b"garbage"), 8),
            Delivery::Unusable { owed: 8, .. }
        ));
    }

    #[test]
    fn long_mo_parts_in_any_order_make_one_message_owing_every_part() {
        let mut d = Decoder::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(d.take(t0, part(9, 3, 3, "three"), 3), Delivery::Held);
        assert_eq!(d.take(t0, part(9, 3, 1, "one "), 1), Delivery::Held);
        assert_eq!(d.held(), 2);
        let Delivery::Mo(mo) = d.take(t0, part(9, 3, 2, "two "), 2) else {
            panic!("complete");
        };
        assert_eq!(mo.text, "one two three");
        assert_eq!(mo.owed, vec![3, 1, 2]);
        assert_eq!(d.held(), 0);
    }

    #[test]
    fn an_incomplete_long_mo_is_given_back_when_its_time_runs_out() {
        let mut d = Decoder::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(d.take(t0, part(4, 2, 1, "half"), 1), Delivery::Held);
        assert_eq!(d.poll_timeout(), Some(t0 + Duration::from_secs(60)));
        assert!(d.handle_timeout(t0 + Duration::from_secs(59)).is_empty());
        let gone = d.handle_timeout(t0 + Duration::from_secs(60));
        assert_eq!(
            gone,
            vec![Incomplete {
                received: 1,
                total: 2,
                evicted: false,
                owed: vec![1]
            }]
        );
        assert_eq!(d.held(), 0);
    }

    #[test]
    fn a_part_numbered_outside_its_message_is_never_held() {
        // The UDH parser does not take such an element for concatenation,
        // so it comes as a message of its own, answered at once.
        let mut d = Decoder::new(Duration::from_secs(60));
        assert!(matches!(
            d.take(Instant::now(), part(4, 2, 3, "x"), 1),
            Delivery::Mo(Mo { ref owed, .. }) if owed == &[1]
        ));
        assert_eq!(d.held(), 0);
        assert_eq!(d.poll_timeout(), None);
    }

    #[test]
    fn a_data_sm_is_a_message_and_other_requests_are_not() {
        let mut d = Decoder::new(Duration::from_secs(60));
        let data = verigate_codecs::smpp::DataSm {
            source: Address::international("447400123456"),
            dest: Address::new(3, 0, "60606"),
            tlvs: vec![Tlv::MESSAGE_PAYLOAD(bytes::Bytes::from_static(b"LOGIN X"))].into(),
            ..Default::default()
        };
        assert!(matches!(
            d.take(Instant::now(), Body::DataSm(data), 1),
            Delivery::Mo(Mo { ref text, .. }) if text == "LOGIN X"
        ));
        assert_eq!(
            d.take(Instant::now(), Body::EnquireLink, 2),
            Delivery::NotMessage(2)
        );
    }
}
