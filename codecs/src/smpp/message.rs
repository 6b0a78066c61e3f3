//! Text ↔ short-message glue shared by the gateway and the simulator:
//! building submit_sm/deliver_sm parts from text, and finding the text and
//! concatenation info inside a received one.

use super::pdu::SubmitSm;
use super::tlv::Tlv;
use crate::text::{self, parse_udh, split, Encoding, SplitMode, TextError};
use bytes::Bytes;

/// esm_class bit: short_message starts with a user data header.
pub const ESM_UDHI: u8 = 0x40;

/// Builds the short messages that carry `text`, copying addresses and flags
/// from `template`. The encoding is chosen automatically (GSM 03.38 when
/// every character fits, otherwise UCS-2) unless `encoding` is given.
pub fn text_to_parts(
    template: &SubmitSm,
    text: &str,
    encoding: Option<Encoding>,
    mode: SplitMode,
    reference: u16,
) -> Result<Vec<SubmitSm>, TextError> {
    let enc = encoding.unwrap_or_else(|| text::choose_encoding(text));
    let segments = split(text, enc, mode, reference)?;
    let mut out = Vec::with_capacity(segments.len());
    for seg in segments {
        let mut sm = template.clone();
        sm.data_coding = enc.data_coding();
        sm.esm_class &= !ESM_UDHI;
        if mode == SplitMode::Payload
            && seg.udh.is_none()
            && seg.sar.is_none()
            && segments_len_hint(&seg)
        {
            sm.short_message = Bytes::new();
            sm.tlvs.push(Tlv::MESSAGE_PAYLOAD(Bytes::from(seg.payload)));
            out.push(sm);
            continue;
        }
        if seg.udh.is_some() {
            sm.esm_class |= ESM_UDHI;
        }
        if let Some(sar) = seg.sar {
            sm.tlvs.push(Tlv::SAR_MSG_REF_NUM(sar.ref_num));
            sm.tlvs.push(Tlv::SAR_TOTAL_SEGMENTS(sar.total));
            sm.tlvs.push(Tlv::SAR_SEGMENT_SEQNUM(sar.seq));
        }
        sm.short_message = Bytes::from(seg.short_message());
        out.push(sm);
    }
    Ok(out)
}

// In payload mode a text that fits one short message is still sent in
// short_message (every SMSC understands that); only longer ones use the TLV.
fn segments_len_hint(seg: &crate::text::Segment) -> bool {
    seg.payload.len() > 140
}

/// Concatenation info of one part of a long message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartInfo {
    /// Reference shared by all parts.
    pub reference: u16,
    /// Number of parts.
    pub total: u8,
    /// This part's number, 1-based.
    pub seq: u8,
}

/// The text-bearing content of a received submit_sm or deliver_sm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// Encoded text without UDH (from short_message or message_payload).
    pub payload: Vec<u8>,
    /// data_coding.
    pub data_coding: u8,
    /// Concatenation info from the UDH or SAR TLVs, if this is one part.
    pub part: Option<PartInfo>,
}

impl Content {
    /// Decodes the text of this part alone.
    pub fn text(&self) -> String {
        text::decode(self.data_coding, &self.payload)
    }
}

/// Extracts payload and concatenation info from a short message.
pub fn content(sm: &SubmitSm) -> Content {
    let raw: &[u8] = match sm.tlvs.message_payload() {
        Some(p) if sm.short_message.is_empty() => p,
        _ => &sm.short_message,
    };
    let mut part = None;
    let mut payload = raw;
    if sm.esm_class & ESM_UDHI != 0 {
        if let Some((udh, len)) = parse_udh(raw) {
            payload = &raw[len.min(raw.len())..];
            part = udh.concat.map(|c| PartInfo {
                reference: c.reference,
                total: c.total,
                seq: c.seq,
            });
        }
    }
    if part.is_none() {
        if let Some((r, t, s)) = sm.tlvs.sar() {
            if t > 0 && s > 0 && s <= t {
                part = Some(PartInfo {
                    reference: r,
                    total: t,
                    seq: s,
                });
            }
        }
    }
    Content {
        payload: payload.to_vec(),
        data_coding: sm.data_coding,
        part,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smpp::pdu::Address;

    fn template() -> SubmitSm {
        SubmitSm {
            source: Address::new(5, 0, "Verigate"),
            dest: Address::international("447700900123"),
            registered_delivery: 1,
            ..Default::default()
        }
    }

    #[test]
    fn short_gsm_text_is_one_plain_part() {
        let parts =
            text_to_parts(&template(), "Your code is 123456", None, SplitMode::Udh8, 1).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].data_coding, 0);
        assert_eq!(parts[0].esm_class & ESM_UDHI, 0);
        let c = content(&parts[0]);
        assert_eq!(c.text(), "Your code is 123456");
        assert_eq!(c.part, None);
    }

    #[test]
    fn long_ucs2_text_splits_with_udh_and_reads_back() {
        let text = "验证码".repeat(40);
        for mode in [SplitMode::Udh8, SplitMode::Udh16, SplitMode::Sar] {
            let parts = text_to_parts(&template(), &text, None, mode, 0x1234).unwrap();
            assert!(parts.len() > 1);
            let mut joined = Vec::new();
            for (i, p) in parts.iter().enumerate() {
                assert_eq!(p.data_coding, 8);
                let c = content(p);
                let info = c.part.expect("part info");
                assert_eq!(usize::from(info.seq), i + 1);
                assert_eq!(usize::from(info.total), parts.len());
                joined.extend_from_slice(&c.payload);
            }
            assert_eq!(text::decode(8, &joined), text);
        }
    }

    #[test]
    fn payload_mode_uses_message_payload_for_long_text() {
        let text = "x".repeat(400);
        let parts = text_to_parts(&template(), &text, None, SplitMode::Payload, 0).unwrap();
        assert_eq!(parts.len(), 1);
        assert!(parts[0].short_message.is_empty());
        assert_eq!(content(&parts[0]).text(), text);
    }
}
