//! The benchmark message, built identically for our codec and for rusmpp.

use bytes::Bytes;
use std::str::FromStr;
use verigate_codecs::smpp::{Address, SubmitSm, Tlv, Tlvs};

/// Alphanumeric sender.
pub const SOURCE: &str = "VeriGate";
/// International destination (digits, no `+`).
pub const DEST: &str = "447700900123";
/// 20 characters of GSM 7-bit default alphabet text.
pub const TEXT: &str = "Your code is 123456.";
/// Value of the one TLV (user_message_reference).
pub const USER_MESSAGE_REFERENCE: u16 = 4242;

/// Our submit_sm: alphanumeric source (TON 5, NPI 0), international
/// destination (TON 1, NPI 1), 20-char GSM text (data_coding 0) and one TLV
/// (user_message_reference).
pub fn ours(registered_delivery: u8) -> SubmitSm {
    SubmitSm {
        source: Address::new(5, 0, SOURCE),
        dest: Address::international(DEST),
        registered_delivery,
        data_coding: 0,
        short_message: Bytes::from_static(TEXT.as_bytes()),
        tlvs: Tlvs::from(vec![Tlv::USER_MESSAGE_REFERENCE(USER_MESSAGE_REFERENCE)]),
        ..Default::default()
    }
}

/// The same message as a rusmpp 0.4.0 SubmitSm.
pub fn rusmpp(registered_delivery: u8) -> rusmpp::pdus::SubmitSm {
    use rusmpp::tlvs::MessageSubmissionRequestTlvValue;
    use rusmpp::types::{COctetString, OctetString};
    use rusmpp::values::{
        DataCoding, EsmClass, Npi, RegisteredDelivery, ServiceType, Ton, UserMessageReference,
    };
    rusmpp::pdus::SubmitSm::builder()
        .service_type(ServiceType::default())
        .source_addr_ton(Ton::Alphanumeric)
        .source_addr_npi(Npi::Unknown)
        .source_addr(COctetString::from_str(SOURCE).expect("source fits"))
        .dest_addr_ton(Ton::International)
        .dest_addr_npi(Npi::Isdn)
        .destination_addr(COctetString::from_str(DEST).expect("dest fits"))
        .esm_class(EsmClass::default())
        .registered_delivery(RegisteredDelivery::from(registered_delivery))
        .data_coding(DataCoding::McSpecific)
        .short_message(OctetString::from_str(TEXT).expect("text fits"))
        .push_tlv(MessageSubmissionRequestTlvValue::UserMessageReference(
            UserMessageReference::new(USER_MESSAGE_REFERENCE),
        ))
        .build()
}
