//! Round-trip tests for every PDU, leniency cases, and a cross-check of
//! valid PDUs against rusmpp (a codec we did not write).

use bytes::{Bytes, BytesMut};
use verigate_codecs::smpp::tlv::Tlv;
use verigate_codecs::smpp::*;

fn sample_submit() -> SubmitSm {
    SubmitSm {
        service_type: "".into(),
        source: Address::new(5, 0, "Verigate"),
        dest: Address::international("+447700900123"),
        esm_class: 0,
        protocol_id: 0,
        priority_flag: 1,
        schedule_delivery_time: "".into(),
        validity_period: "000000001000000R".into(),
        registered_delivery: 1,
        replace_if_present_flag: 0,
        data_coding: 0,
        sm_default_msg_id: 0,
        short_message: Bytes::from_static(b"Your code is 365882"),
        tlvs: vec![Tlv::USER_MESSAGE_REFERENCE(7)].into(),
    }
}

fn all_pdus() -> Vec<Pdu> {
    let bind = Bind {
        system_id: "verigate".into(),
        password: "secret".into(),
        system_type: "OTP".into(),
        interface_version: INTERFACE_VERSION_34,
        address_range: Address::new(1, 1, "44"),
    };
    let bind_resp = BindResp {
        system_id: "SMSC".into(),
        tlvs: vec![Tlv::SC_INTERFACE_VERSION(0x34)].into(),
    };
    let mut dlr = sample_submit();
    dlr.esm_class = 0x04;
    dlr.short_message = Bytes::from_static(
        b"id:0123456789 sub:001 dlvrd:001 submit date:2611221200 done date:2611221201 stat:DELIVRD err:000 text:Your code",
    );
    dlr.validity_period = "".into();
    dlr.priority_flag = 0;
    dlr.tlvs = vec![
        Tlv::RECEIPTED_MESSAGE_ID("0123456789".into()),
        Tlv::MESSAGE_STATE(2),
        Tlv::NETWORK_ERROR_CODE([3, 0, 0]),
    ]
    .into();
    let mid = MessageIdResp {
        message_id: "1a2b3c".into(),
        tlvs: Tlvs::new(),
    };
    let mut seq = 0;
    let mut p = |body| {
        seq += 1;
        Pdu::new(seq, body)
    };
    vec![
        p(Body::BindTransmitter(bind.clone())),
        p(Body::BindTransmitterResp(bind_resp.clone())),
        p(Body::BindReceiver(bind.clone())),
        p(Body::BindReceiverResp(bind_resp.clone())),
        p(Body::BindTransceiver(bind)),
        p(Body::BindTransceiverResp(bind_resp)),
        p(Body::Outbind(Outbind {
            system_id: "SMSC".into(),
            password: "pw".into(),
        })),
        p(Body::Unbind),
        p(Body::UnbindResp),
        p(Body::EnquireLink),
        p(Body::EnquireLinkResp),
        p(Body::GenericNack),
        p(Body::SubmitSm(sample_submit())),
        p(Body::SubmitSmResp(mid.clone())),
        p(Body::DeliverSm(dlr)),
        p(Body::DeliverSmResp(MessageIdResp::default())),
        p(Body::DataSm(DataSm {
            service_type: "".into(),
            source: Address::international("447700900123"),
            dest: Address::new(0, 1, "12345"),
            esm_class: 0,
            registered_delivery: 1,
            data_coding: 8,
            tlvs: vec![Tlv::MESSAGE_PAYLOAD(Bytes::from_static(b"\x00h\x00i"))].into(),
        })),
        p(Body::DataSmResp(mid)),
        p(Body::QuerySm(QuerySm {
            message_id: "1a2b3c".into(),
            source: Address::new(5, 0, "Verigate"),
        })),
        p(Body::QuerySmResp(QuerySmResp {
            message_id: "1a2b3c".into(),
            final_date: "261122120000000+".into(),
            message_state: 2,
            error_code: 0,
        })),
        p(Body::CancelSm(CancelSm {
            service_type: "".into(),
            message_id: "1a2b3c".into(),
            source: Address::new(5, 0, "Verigate"),
            dest: Address::international("447700900123"),
        })),
        p(Body::CancelSmResp),
        p(Body::ReplaceSm(ReplaceSm {
            message_id: "1a2b3c".into(),
            source: Address::new(5, 0, "Verigate"),
            schedule_delivery_time: "".into(),
            validity_period: "".into(),
            registered_delivery: 1,
            sm_default_msg_id: 0,
            short_message: Bytes::from_static(b"new text"),
            tlvs: Tlvs::new(),
        })),
        p(Body::ReplaceSmResp),
        p(Body::AlertNotification(AlertNotification {
            source: Address::international("447700900123"),
            esme: Address::new(0, 1, "12345"),
            tlvs: vec![Tlv::MS_AVAILABILITY_STATUS(0)].into(),
        })),
    ]
}

fn frame_one(bytes: &[u8]) -> Bytes {
    let mut buf = BytesMut::from(bytes);
    let f = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
    assert!(buf.is_empty());
    f
}

#[test]
fn every_pdu_round_trips() {
    let pdus = all_pdus();
    assert_eq!(pdus.len(), 25, "one of each command");
    for pdu in pdus {
        let bytes = pdu.to_bytes().unwrap();
        let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        assert_eq!(len, bytes.len(), "{}", pdu.command_id());
        let back = Pdu::decode(frame_one(&bytes)).unwrap();
        assert_eq!(back, pdu, "{}", pdu.command_id());
    }
}

#[test]
fn valid_pdus_agree_with_rusmpp() {
    use tokio_util::codec::{Decoder, Encoder};
    for pdu in all_pdus() {
        let ours = pdu.to_bytes().unwrap();
        let mut codec = rusmpp::tokio_codec::CommandCodec::new();
        let mut buf = BytesMut::from(&ours[..]);
        let theirs = codec
            .decode(&mut buf)
            .unwrap_or_else(|e| panic!("rusmpp rejects our {}: {e}", pdu.command_id()))
            .expect("complete frame");
        assert_eq!(u32::from(theirs.id()), pdu.command_id().as_u32());
        assert_eq!(theirs.sequence_number(), pdu.sequence);
        let mut again = BytesMut::new();
        codec.encode(&theirs, &mut again).unwrap();
        assert_eq!(
            &again[..],
            &ours[..],
            "rusmpp re-encodes our {} differently",
            pdu.command_id()
        );
        // And what rusmpp encodes we decode to the same PDU.
        assert_eq!(Pdu::decode(frame_one(&again)).unwrap(), pdu);
    }
}

#[test]
fn error_response_with_no_body_or_single_nul() {
    // submit_sm_resp 0x45 with command_length 16 (no body at all).
    let empty = [0, 0, 0, 16, 0x80, 0, 0, 4, 0, 0, 0, 0x45, 0, 0, 0, 9];
    let pdu = Pdu::decode(frame_one(&empty)).unwrap();
    assert_eq!(pdu.status, CommandStatus::ESME_RSUBMITFAIL);
    assert_eq!(pdu.sequence, 9);
    assert_eq!(pdu.body, Body::SubmitSmResp(MessageIdResp::default()));
    // The same with a single NUL.
    let nul = [0, 0, 0, 17, 0x80, 0, 0, 4, 0, 0, 0, 0x58, 0, 0, 0, 10, 0];
    let pdu = Pdu::decode(frame_one(&nul)).unwrap();
    assert!(pdu.status.is_throttle());
    // bind_transceiver_resp 0x0E with no body.
    let bind = [0, 0, 0, 16, 0x80, 0, 0, 9, 0, 0, 0, 0x0E, 0, 0, 0, 1];
    let pdu = Pdu::decode(frame_one(&bind)).unwrap();
    assert_eq!(pdu.status, CommandStatus::ESME_RINVPASWD);
    // query_sm_resp error with a truncated body.
    let q = [
        0, 0, 0, 18, 0x80, 0, 0, 3, 0, 0, 0, 0x67, 0, 0, 0, 2, b'1', 0,
    ];
    assert!(Pdu::decode(frame_one(&q)).is_ok());
}

#[test]
fn over_long_cstrings_and_stray_bytes_are_tolerated() {
    let mut b = Bind {
        system_id: "a-system-id-much-longer-than-sixteen".into(),
        password: "password-longer-than-nine".into(),
        ..Default::default()
    };
    b.interface_version = 0x34;
    let pdu = Pdu::new(1, Body::BindTransceiver(b));
    let mut bytes = BytesMut::from(&pdu.to_bytes().unwrap()[..]);
    bytes.extend_from_slice(&[0xAA, 0xBB, 0xCC]); // stray trailing bytes
    let len = bytes.len() as u32;
    bytes[..4].copy_from_slice(&len.to_be_bytes());
    assert_eq!(Pdu::decode(frame_one(&bytes)).unwrap(), pdu);

    // enquire_link with a stray body.
    let el = [0, 0, 0, 18, 0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0];
    assert_eq!(Pdu::decode(frame_one(&el)).unwrap().body, Body::EnquireLink);
}

#[test]
fn missing_nul_in_request_is_an_error_naming_the_field() {
    let bytes = [
        0, 0, 0, 20, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 5, b'a', b'b', b'c', b'd',
    ];
    let err = Pdu::decode(frame_one(&bytes)).unwrap_err();
    assert_eq!(err.sequence, 5);
    assert_eq!(err.nack_status(), CommandStatus::ESME_RINVCMDLEN);
    assert!(err.to_string().contains("system_id"), "{err}");
}

#[test]
fn bad_sm_length_is_reported() {
    let mut s = sample_submit();
    s.tlvs = Tlvs::new();
    let mut bytes = BytesMut::from(&Pdu::new(4, Body::SubmitSm(s)).to_bytes().unwrap()[..]);
    // sm_length is the byte before the 19-byte text.
    let at = bytes.len() - 19 - 1;
    bytes[at] = 200;
    let err = Pdu::decode(frame_one(&bytes)).unwrap_err();
    assert_eq!(err.nack_status(), CommandStatus::ESME_RINVMSGLEN);
    assert!(err.to_string().contains("sm_length 200"), "{err}");
}

#[test]
fn unknown_command_keeps_header_for_nack() {
    let bytes = [0, 0, 0, 16, 0, 0, 0, 0xAA, 0, 0, 0, 0, 0, 0, 0, 77];
    let err = Pdu::decode(frame_one(&bytes)).unwrap_err();
    assert_eq!(err.command_id, 0xAA);
    assert_eq!(err.sequence, 77);
    assert_eq!(err.nack_status(), CommandStatus::ESME_RINVCMDID);
}

#[test]
fn framing_rejects_bad_lengths_with_a_message() {
    let d = FrameDecoder::new(1024);
    let mut short = BytesMut::from(&[0u8, 0, 0, 8, 0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, 1][..]);
    let e = d.decode(&mut short).unwrap_err();
    assert!(e.to_string().contains("below the 16-byte minimum"), "{e}");
    let mut long = BytesMut::from(&[0u8, 0, 0x10, 0, 0, 0, 0, 4][..]);
    let e = d.decode(&mut long).unwrap_err();
    assert!(
        e.to_string()
            .contains("exceeds the configured maximum of 1024"),
        "{e}"
    );
}

#[test]
fn framing_handles_partial_and_coalesced_input() {
    let a = Pdu::new(1, Body::EnquireLink).to_bytes().unwrap();
    let b = Pdu::new(2, Body::SubmitSm(sample_submit()))
        .to_bytes()
        .unwrap();
    let mut stream = Vec::new();
    stream.extend_from_slice(&a);
    stream.extend_from_slice(&b);
    let d = FrameDecoder::default();
    // Feed one byte at a time.
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for byte in stream {
        buf.extend_from_slice(&[byte]);
        while let Some(f) = d.decode(&mut buf).unwrap() {
            got.push(Pdu::decode(f).unwrap().sequence);
        }
    }
    assert_eq!(got, vec![1, 2]);
}

#[test]
fn one_bad_pdu_does_not_desynchronise_the_stream() {
    let good1 = Pdu::new(1, Body::EnquireLink).to_bytes().unwrap();
    let bad = [0, 0, 0, 20, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 2, 1, 2, 3, 4];
    let good2 = Pdu::new(3, Body::SubmitSm(sample_submit()))
        .to_bytes()
        .unwrap();
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&good1);
    buf.extend_from_slice(&bad);
    buf.extend_from_slice(&good2);
    let d = FrameDecoder::default();
    let mut results = Vec::new();
    while let Some(f) = d.decode(&mut buf).unwrap() {
        results.push(Pdu::decode(f).map(|p| p.sequence).map_err(|e| e.sequence));
    }
    assert_eq!(results, vec![Ok(1), Err(2), Ok(3)]);
}

#[test]
fn unknown_and_v50_tlvs_pass_through() {
    let mut s = sample_submit();
    s.tlvs = vec![
        Tlv::Other {
            tag: tlv::tag_v50::BILLING_IDENTIFICATION,
            value: Bytes::from_static(b"\x01abc"),
        },
        Tlv::Other {
            tag: 0x1400,
            value: Bytes::from_static(b"vendor"),
        },
        // A known tag with a wrong length stays raw and survives.
        Tlv::Other {
            tag: tlv::tag::MESSAGE_STATE,
            value: Bytes::from_static(b"\x00\x02"),
        },
    ]
    .into();
    let pdu = Pdu::new(9, Body::SubmitSm(s));
    let bytes = pdu.to_bytes().unwrap();
    assert_eq!(Pdu::decode(frame_one(&bytes)).unwrap(), pdu);
}

#[test]
fn encoder_refuses_impossible_pdus() {
    let mut s = sample_submit();
    s.short_message = Bytes::from(vec![b'a'; 300]);
    assert!(matches!(
        Pdu::new(1, Body::SubmitSm(s)).to_bytes(),
        Err(EncodeError::ShortMessageTooLong(300))
    ));
    let mut s = sample_submit();
    s.dest.addr = COctets::from(&b"12\x0034"[..]);
    assert!(matches!(
        Pdu::new(1, Body::SubmitSm(s)).to_bytes(),
        Err(EncodeError::InteriorNul(_))
    ));
}

#[test]
fn sender_addresses_get_the_ton_an_smsc_expects() {
    use verigate_codecs::smpp::Address;
    let cases = [
        ("Verigate", 5, 0, "Verigate"),
        ("+447400123456", 1, 1, "447400123456"),
        ("447400123456", 1, 1, "447400123456"),
        ("12345", 3, 0, "12345"),
        ("+12345", 1, 1, "12345"),
        ("Bank 24", 5, 0, "Bank 24"),
    ];
    for (from, ton, npi, addr) in cases {
        let a = Address::sender(from);
        assert_eq!(
            (a.ton, a.npi, a.addr.to_string()),
            (ton, npi, addr.to_string()),
            "{from}"
        );
    }
}

#[test]
fn temporary_refusals_are_the_ones_worth_resending() {
    use verigate_codecs::smpp::CommandStatus;
    for st in [0x08, 0x14, 0x58, 0x64, 0xFE, 0xFF] {
        assert!(CommandStatus(st).is_temporary(), "{st:#x}");
    }
    for st in [0x0A, 0x0B, 0x45, 0x65, 0x66] {
        assert!(!CommandStatus(st).is_temporary(), "{st:#x}");
    }
}
