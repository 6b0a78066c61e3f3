//! Optional parameters (TLVs): every SMPP 3.4 tag typed, SMPP 5.0 and vendor
//! tags kept raw so they pass through unchanged.

use super::wire::{put_cstr, COctets};
use bytes::{BufMut, Bytes, BytesMut};

macro_rules! tlvs {
    ($($name:ident = $tag:literal : $kind:ident, $doc:literal;)*) => {
        /// SMPP 3.4 TLV tag numbers.
        pub mod tag {
            $(#[doc = $doc] pub const $name: u16 = $tag;)*
        }

        /// One optional parameter.
        ///
        /// A known tag whose length does not fit its type is kept as
        /// [`Tlv::Other`] so that it still round-trips byte for byte.
        #[derive(Debug, Clone, PartialEq, Eq)]
        #[allow(non_camel_case_types)]
        pub enum Tlv {
            $(#[doc = $doc] $name(tlvs!(@ty $kind)),)*
            /// A tag this codec does not type (SMPP 5.0, vendor-specific) or a
            /// known tag with an unexpected length.
            Other {
                /// The tag.
                tag: u16,
                /// The raw value.
                value: Bytes,
            },
        }

        impl Tlv {
            /// The tag number.
            pub fn tag(&self) -> u16 {
                match self {
                    $(Tlv::$name(_) => $tag,)*
                    Tlv::Other { tag, .. } => *tag,
                }
            }

            /// Decodes one value for `tag`; never fails (see [`Tlv::Other`]).
            pub fn decode(tag: u16, value: Bytes) -> Tlv {
                match tag {
                    $($tag => match tlvs!(@dec $kind, value.clone()) {
                        Some(v) => Tlv::$name(v),
                        None => Tlv::Other { tag, value },
                    },)*
                    _ => Tlv::Other { tag, value },
                }
            }

            /// Appends tag, length and value.
            pub fn encode(&self, out: &mut BytesMut) {
                out.put_u16(self.tag());
                let len_at = out.len();
                out.put_u16(0);
                match self {
                    $(Tlv::$name(v) => tlvs!(@enc $kind, v, out),)*
                    Tlv::Other { value, .. } => out.put_slice(value),
                }
                let len = (out.len() - len_at - 2) as u16;
                out[len_at..len_at + 2].copy_from_slice(&len.to_be_bytes());
            }
        }
    };
    (@ty U8) => { u8 };
    (@ty U16) => { u16 };
    (@ty U32) => { u32 };
    (@ty CStr) => { COctets };
    (@ty Octets) => { Bytes };
    (@ty Empty) => { () };
    (@ty NetErr) => { [u8; 3] };
    (@dec U8, $v:expr) => { { let v = $v; (v.len() == 1).then(|| v[0]) } };
    (@dec U16, $v:expr) => { { let v = $v; (v.len() == 2).then(|| u16::from_be_bytes([v[0], v[1]])) } };
    (@dec U32, $v:expr) => { { let v = $v; (v.len() == 4).then(|| u32::from_be_bytes([v[0], v[1], v[2], v[3]])) } };
    // A C-string TLV must end in its single NUL; otherwise keep it raw so the
    // exact bytes survive a round trip.
    (@dec CStr, $v:expr) => { { let v = $v; match v.iter().position(|&b| b == 0) {
        Some(i) if i + 1 == v.len() => Some(COctets(v.slice(..i))),
        _ => None,
    } } };
    (@dec Octets, $v:expr) => { Some($v) };
    (@dec Empty, $v:expr) => { { let v = $v; v.is_empty().then_some(()) } };
    (@dec NetErr, $v:expr) => { { let v = $v; (v.len() == 3).then(|| [v[0], v[1], v[2]]) } };
    (@enc U8, $v:expr, $out:expr) => { $out.put_u8(*$v) };
    (@enc U16, $v:expr, $out:expr) => { $out.put_u16(*$v) };
    (@enc U32, $v:expr, $out:expr) => { $out.put_u32(*$v) };
    (@enc CStr, $v:expr, $out:expr) => { put_cstr($out, $v) };
    (@enc Octets, $v:expr, $out:expr) => { $out.put_slice($v) };
    (@enc Empty, $v:expr, $out:expr) => { { let () = *$v; } };
    (@enc NetErr, $v:expr, $out:expr) => { $out.put_slice(&$v[..]) };
}

tlvs! {
    DEST_ADDR_SUBUNIT = 0x0005: U8, "dest_addr_subunit";
    DEST_NETWORK_TYPE = 0x0006: U8, "dest_network_type";
    DEST_BEARER_TYPE = 0x0007: U8, "dest_bearer_type";
    DEST_TELEMATICS_ID = 0x0008: U16, "dest_telematics_id";
    SOURCE_ADDR_SUBUNIT = 0x000D: U8, "source_addr_subunit";
    SOURCE_NETWORK_TYPE = 0x000E: U8, "source_network_type";
    SOURCE_BEARER_TYPE = 0x000F: U8, "source_bearer_type";
    SOURCE_TELEMATICS_ID = 0x0010: U8, "source_telematics_id";
    QOS_TIME_TO_LIVE = 0x0017: U32, "qos_time_to_live";
    PAYLOAD_TYPE = 0x0019: U8, "payload_type";
    ADDITIONAL_STATUS_INFO_TEXT = 0x001D: CStr, "additional_status_info_text";
    RECEIPTED_MESSAGE_ID = 0x001E: CStr, "receipted_message_id";
    MS_MSG_WAIT_FACILITIES = 0x0030: U8, "ms_msg_wait_facilities";
    PRIVACY_INDICATOR = 0x0201: U8, "privacy_indicator";
    SOURCE_SUBADDRESS = 0x0202: Octets, "source_subaddress";
    DEST_SUBADDRESS = 0x0203: Octets, "dest_subaddress";
    USER_MESSAGE_REFERENCE = 0x0204: U16, "user_message_reference";
    USER_RESPONSE_CODE = 0x0205: U8, "user_response_code";
    SOURCE_PORT = 0x020A: U16, "source_port";
    DESTINATION_PORT = 0x020B: U16, "destination_port";
    SAR_MSG_REF_NUM = 0x020C: U16, "sar_msg_ref_num";
    LANGUAGE_INDICATOR = 0x020D: U8, "language_indicator";
    SAR_TOTAL_SEGMENTS = 0x020E: U8, "sar_total_segments";
    SAR_SEGMENT_SEQNUM = 0x020F: U8, "sar_segment_seqnum";
    SC_INTERFACE_VERSION = 0x0210: U8, "sc_interface_version";
    CALLBACK_NUM_PRES_IND = 0x0302: U8, "callback_num_pres_ind";
    CALLBACK_NUM_ATAG = 0x0303: Octets, "callback_num_atag";
    NUMBER_OF_MESSAGES = 0x0304: U8, "number_of_messages";
    CALLBACK_NUM = 0x0381: Octets, "callback_num";
    DPF_RESULT = 0x0420: U8, "dpf_result";
    SET_DPF = 0x0421: U8, "set_dpf";
    MS_AVAILABILITY_STATUS = 0x0422: U8, "ms_availability_status";
    NETWORK_ERROR_CODE = 0x0423: NetErr, "network_error_code";
    MESSAGE_PAYLOAD = 0x0424: Octets, "message_payload";
    DELIVERY_FAILURE_REASON = 0x0425: U8, "delivery_failure_reason";
    MORE_MESSAGES_TO_SEND = 0x0426: U8, "more_messages_to_send";
    MESSAGE_STATE = 0x0427: U8, "message_state";
    USSD_SERVICE_OP = 0x0501: U8, "ussd_service_op";
    DISPLAY_TIME = 0x1201: U8, "display_time";
    SMS_SIGNAL = 0x1203: U16, "sms_signal";
    MS_VALIDITY = 0x1204: U8, "ms_validity";
    ALERT_ON_MESSAGE_DELIVERY = 0x130C: Empty, "alert_on_message_delivery";
    ITS_REPLY_TYPE = 0x1380: U8, "its_reply_type";
    ITS_SESSION_INFO = 0x1383: U16, "its_session_info";
}

/// SMPP 5.0 tags we recognise by name (carried as [`Tlv::Other`]).
pub mod tag_v50 {
    /// congestion_state (5.0 §4.8.4.19), sent in responses by 5.0 SMSCs.
    pub const CONGESTION_STATE: u16 = 0x0428;
    /// billing_identification.
    pub const BILLING_IDENTIFICATION: u16 = 0x060B;
    /// dest_network_id.
    pub const DEST_NETWORK_ID: u16 = 0x060E;
    /// source_network_id.
    pub const SOURCE_NETWORK_ID: u16 = 0x060D;
}

/// A list of TLVs with typed look-ups for the ones a gateway needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tlvs(pub Vec<Tlv>);

impl Tlvs {
    /// No TLVs.
    pub const fn new() -> Self {
        Tlvs(Vec::new())
    }

    /// Appends one TLV.
    pub fn push(&mut self, t: Tlv) {
        self.0.push(t);
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// First TLV with this tag.
    pub fn get(&self, tag: u16) -> Option<&Tlv> {
        self.0.iter().find(|t| t.tag() == tag)
    }

    /// receipted_message_id, if present.
    pub fn receipted_message_id(&self) -> Option<&COctets> {
        self.0.iter().find_map(|t| match t {
            Tlv::RECEIPTED_MESSAGE_ID(v) => Some(v),
            _ => None,
        })
    }

    /// message_state, if present.
    pub fn message_state(&self) -> Option<u8> {
        self.0.iter().find_map(|t| match t {
            Tlv::MESSAGE_STATE(v) => Some(*v),
            _ => None,
        })
    }

    /// network_error_code, if present.
    pub fn network_error_code(&self) -> Option<[u8; 3]> {
        self.0.iter().find_map(|t| match t {
            Tlv::NETWORK_ERROR_CODE(v) => Some(*v),
            _ => None,
        })
    }

    /// message_payload, if present.
    pub fn message_payload(&self) -> Option<&Bytes> {
        self.0.iter().find_map(|t| match t {
            Tlv::MESSAGE_PAYLOAD(v) => Some(v),
            _ => None,
        })
    }

    /// (sar_msg_ref_num, sar_total_segments, sar_segment_seqnum) when all three are present.
    pub fn sar(&self) -> Option<(u16, u8, u8)> {
        let mut r = None;
        let mut t = None;
        let mut s = None;
        for tlv in &self.0 {
            match tlv {
                Tlv::SAR_MSG_REF_NUM(v) => r = Some(*v),
                Tlv::SAR_TOTAL_SEGMENTS(v) => t = Some(*v),
                Tlv::SAR_SEGMENT_SEQNUM(v) => s = Some(*v),
                _ => {}
            }
        }
        Some((r?, t?, s?))
    }

    /// sc_interface_version, if present.
    pub fn sc_interface_version(&self) -> Option<u8> {
        self.0.iter().find_map(|t| match t {
            Tlv::SC_INTERFACE_VERSION(v) => Some(*v),
            _ => None,
        })
    }

    /// Encodes all TLVs in order.
    pub fn encode(&self, out: &mut BytesMut) {
        for t in &self.0 {
            t.encode(out);
        }
    }

    /// Decodes TLVs from the rest of a body. Returns the TLVs and the number
    /// of stray trailing bytes that did not form a complete TLV (tolerated:
    /// some SMSCs pad PDUs).
    pub fn decode(mut rest: Bytes) -> (Tlvs, usize) {
        let mut out = Vec::new();
        while rest.len() >= 4 {
            let tag = u16::from_be_bytes([rest[0], rest[1]]);
            let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
            if rest.len() < 4 + len {
                break;
            }
            let value = rest.slice(4..4 + len);
            out.push(Tlv::decode(tag, value));
            rest = rest.slice(4 + len..);
        }
        (Tlvs(out), rest.len())
    }
}

impl From<Vec<Tlv>> for Tlvs {
    fn from(v: Vec<Tlv>) -> Self {
        Tlvs(v)
    }
}
