//! Sans-IO: what an SMSC's deliver_sm / data_sm carries — a delivery
//! receipt, a whole mobile-originated message, or one part of a long MO.
//! Parts are not held here: each is stored durably and answered at once,
//! and the long MO is put together from the store (holding a part's
//! response until the rest came would hold an SMSC window slot for it).
//! Each request carries a token `T` (the response the SMSC is owed) that
//! comes back with whatever it became.

use verigate_codecs::dlr::{is_receipt, parse_dlr, Dlr};
use verigate_codecs::smpp::message::content;
use verigate_codecs::smpp::{Body, SubmitSm};

/// What one request from the SMSC turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery<T> {
    /// A delivery receipt.
    Receipt {
        /// The parsed receipt.
        dlr: Dlr,
        /// Its request's token.
        owed: T,
    },
    /// A whole mobile-originated message.
    Mo(Mo<T>),
    /// One part of a long MO.
    Part(Part<T>),
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
    /// data_coding of the message.
    pub data_coding: u8,
    /// Its request's token.
    pub owed: T,
}

/// One part of a long mobile-originated message.
#[derive(Debug, PartialEq, Eq)]
pub struct Part<T> {
    /// Sender address.
    pub from: String,
    /// The sender's type of number.
    pub from_ton: u8,
    /// Destination.
    pub to: String,
    /// Concatenation reference (UDH or SAR).
    pub reference: u16,
    /// Parts the message announces (2 or more).
    pub total: u8,
    /// This part's number, 1 to `total`.
    pub seq: u8,
    /// data_coding of this part.
    pub data_coding: u8,
    /// Its payload, the concatenation header taken off.
    pub payload: Vec<u8>,
    /// Its request's token.
    pub owed: T,
}

impl<T> Part<T> {
    /// The part, and its token apart.
    pub fn split(self) -> (Part<()>, T) {
        let Part {
            from,
            from_ton,
            to,
            reference,
            total,
            seq,
            data_coding,
            payload,
            owed,
        } = self;
        let part = Part {
            from,
            from_ton,
            to,
            reference,
            total,
            seq,
            data_coding,
            payload,
            owed: (),
        };
        (part, owed)
    }
}

/// Reads one request's body (deliver_sm or data_sm).
pub fn take<T>(body: Body, owed: T) -> Delivery<T> {
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
            Ok(dlr) => Delivery::Receipt { dlr, owed },
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
                owed,
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
    Delivery::Part(Part {
        from,
        from_ton,
        to,
        reference: part.reference,
        total: part.total,
        seq: part.seq,
        data_coding: c.data_coding,
        payload: c.payload,
        owed,
    })
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
        let Delivery::Mo(mo) = take(deliver(0, b"LOGIN 4H7K"), 1) else {
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
        assert_eq!(mo.owed, 1);
    }

    #[test]
    fn a_receipt_is_parsed_and_a_broken_one_is_unusable() {
        let text = b"id:abc123 sub:001 dlvrd:001 submit date:2601011200 done date:2601011201 stat:DELIVRD err:000 text:";
        match take(deliver(0x04, text), 7) {
            Delivery::Receipt { dlr, owed } => {
                assert_eq!(dlr.message_id, "abc123");
                assert_eq!(owed, 7);
            }
            other => panic!("a receipt: {other:?}"),
        }
        assert!(matches!(
            take(deliver(0x04, b"garbage"), 8),
            Delivery::Unusable { owed: 8, .. }
        ));
    }

    #[test]
    fn each_part_of_a_long_mo_comes_on_its_own_with_its_place() {
        let Delivery::Part(p) = take(part(9, 3, 2, "two "), 2) else {
            panic!("a part");
        };
        assert_eq!(
            (p.reference, p.total, p.seq, p.payload.as_slice(), p.owed),
            (9, 3, 2, b"two ".as_slice(), 2)
        );
        assert_eq!((p.from.as_str(), p.to.as_str()), ("447400123456", "60606"));
    }

    #[test]
    fn a_part_numbered_outside_its_message_is_a_message_of_its_own() {
        // The UDH parser does not take such an element for concatenation,
        // so it comes as a message of its own, answered at once.
        assert!(matches!(
            take(part(4, 2, 3, "x"), 1),
            Delivery::Mo(Mo { owed: 1, .. })
        ));
    }

    #[test]
    fn a_data_sm_is_a_message_and_other_requests_are_not() {
        let data = verigate_codecs::smpp::DataSm {
            source: Address::international("447400123456"),
            dest: Address::new(3, 0, "60606"),
            tlvs: vec![Tlv::MESSAGE_PAYLOAD(bytes::Bytes::from_static(b"LOGIN X"))].into(),
            ..Default::default()
        };
        assert!(matches!(
            take(Body::DataSm(data), 1),
            Delivery::Mo(Mo { ref text, .. }) if text == "LOGIN X"
        ));
        assert_eq!(take(Body::EnquireLink, 2), Delivery::NotMessage(2));
    }
}
