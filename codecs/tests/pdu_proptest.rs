//! Property tests: any well-formed submit_sm/deliver_sm round-trips, and
//! decoding arbitrary frames never panics and re-encodes canonically.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use verigate_codecs::smpp::tlv::Tlv;
use verigate_codecs::smpp::*;

fn cstr() -> impl Strategy<Value = COctets> {
    proptest::collection::vec(1u8..=255, 0..30).prop_map(|v| COctets(Bytes::from(v)))
}

fn addr() -> impl Strategy<Value = Address> {
    (any::<u8>(), any::<u8>(), cstr()).prop_map(|(ton, npi, addr)| Address { ton, npi, addr })
}

fn tlv() -> impl Strategy<Value = Tlv> {
    prop_oneof![
        any::<u8>().prop_map(Tlv::MESSAGE_STATE),
        any::<u16>().prop_map(Tlv::SAR_MSG_REF_NUM),
        cstr().prop_map(Tlv::RECEIPTED_MESSAGE_ID),
        proptest::collection::vec(any::<u8>(), 0..300)
            .prop_map(|v| Tlv::MESSAGE_PAYLOAD(Bytes::from(v))),
        (
            0x1400u16..0x3FFF,
            proptest::collection::vec(any::<u8>(), 0..20)
        )
            .prop_map(|(tag, v)| Tlv::Other {
                tag,
                value: Bytes::from(v)
            }),
    ]
}

prop_compose! {
    fn submit()(
        service_type in cstr(), source in addr(), dest in addr(),
        flags in any::<[u8; 7]>(),
        sched in cstr(), validity in cstr(),
        sm in proptest::collection::vec(any::<u8>(), 0..=255),
        tlvs in proptest::collection::vec(tlv(), 0..4),
    ) -> SubmitSm {
        SubmitSm {
            service_type, source, dest,
            esm_class: flags[0], protocol_id: flags[1], priority_flag: flags[2],
            schedule_delivery_time: sched, validity_period: validity,
            registered_delivery: flags[3], replace_if_present_flag: flags[4],
            data_coding: flags[5], sm_default_msg_id: flags[6],
            short_message: Bytes::from(sm),
            tlvs: tlvs.into(),
        }
    }
}

proptest! {
    #[test]
    fn submit_and_deliver_round_trip(s in submit(), seq in 1u32..0x7FFF_FFFF, deliver in any::<bool>()) {
        let body = if deliver { Body::DeliverSm(s) } else { Body::SubmitSm(s) };
        let pdu = Pdu::new(seq, body);
        let bytes = pdu.to_bytes().unwrap();
        let mut buf = BytesMut::from(&bytes[..]);
        let frame = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
        prop_assert_eq!(Pdu::decode(frame).unwrap(), pdu);
    }

    #[test]
    fn arbitrary_frames_decode_or_fail_cleanly(cmd in prop_oneof![Just(4u32), Just(5), Just(0x8000_0004), Just(9), Just(0x103), any::<u32>()],
                                               status in any::<u32>(), seq in any::<u32>(),
                                               body in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut raw = Vec::with_capacity(16 + body.len());
        raw.extend_from_slice(&((16 + body.len()) as u32).to_be_bytes());
        raw.extend_from_slice(&cmd.to_be_bytes());
        raw.extend_from_slice(&status.to_be_bytes());
        raw.extend_from_slice(&seq.to_be_bytes());
        raw.extend_from_slice(&body);
        if let Ok(pdu) = Pdu::decode(Bytes::from(raw)) {
            let again = pdu.to_bytes().unwrap();
            let back = Pdu::decode(again.clone()).unwrap();
            prop_assert_eq!(&back, &pdu);
            prop_assert_eq!(back.to_bytes().unwrap(), again);
        }
    }
}
