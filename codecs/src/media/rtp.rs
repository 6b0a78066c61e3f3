//! RTP packets (RFC 3550): parsing with typed errors, writing, and the
//! send-side state of one stream (SSRC, sequence number, timestamp).

use thiserror::Error;

/// Fixed header length (no CSRCs, no extension).
pub const HEADER_LEN: usize = 12;

/// Why bytes are not an RTP packet.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RtpError {
    /// Fewer bytes than the fixed header.
    #[error("RTP packet of {0} bytes is shorter than the 12-byte header")]
    TooShort(usize),
    /// Version other than 2.
    #[error("RTP version {0}, expected 2")]
    BadVersion(u8),
    /// The CSRC list runs past the end.
    #[error("RTP header announces {0} CSRCs but the packet ends first")]
    TruncatedCsrc(u8),
    /// The header extension runs past the end.
    #[error("RTP header extension runs past the end of the packet")]
    TruncatedExtension,
    /// The padding count is zero or larger than the payload.
    #[error("RTP padding of {0} bytes does not fit the packet")]
    BadPadding(u8),
}

/// A parsed RTP packet, borrowing its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    /// Marker bit (for audio: the first packet of a talkspurt or event).
    pub marker: bool,
    /// Payload type (7 bits).
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// Timestamp (sampling clock; 8 kHz for G.711 and telephone-event).
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// Contributing sources.
    pub csrc_count: u8,
    /// The payload, without header, extension and padding.
    pub payload: &'a [u8],
}

/// True if the bytes look like RTCP rather than RTP (RFC 5761 §4: the
/// second byte is an RTCP packet type 192–223), for a port that carries both.
pub fn is_rtcp(buf: &[u8]) -> bool {
    buf.len() >= 2 && (192..=223).contains(&buf[1])
}

impl<'a> RtpPacket<'a> {
    /// Parses one datagram.
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtpError> {
        if buf.len() < HEADER_LEN {
            return Err(RtpError::TooShort(buf.len()));
        }
        let version = buf[0] >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion(version));
        }
        let padding = buf[0] & 0x20 != 0;
        let extension = buf[0] & 0x10 != 0;
        let csrc_count = buf[0] & 0x0F;
        let mut start = HEADER_LEN + 4 * usize::from(csrc_count);
        if buf.len() < start {
            return Err(RtpError::TruncatedCsrc(csrc_count));
        }
        if extension {
            if buf.len() < start + 4 {
                return Err(RtpError::TruncatedExtension);
            }
            let words = usize::from(u16::from_be_bytes([buf[start + 2], buf[start + 3]]));
            start += 4 + 4 * words;
            if buf.len() < start {
                return Err(RtpError::TruncatedExtension);
            }
        }
        let mut end = buf.len();
        if padding {
            let n = buf[end - 1];
            if n == 0 || usize::from(n) > end - start {
                return Err(RtpError::BadPadding(n));
            }
            end -= usize::from(n);
        }
        Ok(Self {
            marker: buf[1] & 0x80 != 0,
            payload_type: buf[1] & 0x7F,
            sequence: u16::from_be_bytes([buf[2], buf[3]]),
            timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
            csrc_count,
            payload: &buf[start..end],
        })
    }
}

/// Appends a packet with a fixed header (no CSRCs, extension or padding).
pub fn write_packet(
    out: &mut Vec<u8>,
    marker: bool,
    payload_type: u8,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
    payload: &[u8],
) {
    out.reserve(HEADER_LEN + payload.len());
    out.push(0x80);
    out.push((u8::from(marker) << 7) | (payload_type & 0x7F));
    out.extend_from_slice(&sequence.to_be_bytes());
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(payload);
}

/// The send side of one RTP stream. Its starting SSRC, sequence number and
/// timestamp are inputs (the caller draws them at random, RFC 3550 §5.1).
#[derive(Debug, Clone)]
pub struct RtpSender {
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    first: bool,
}

impl RtpSender {
    /// A stream starting at these (random) values.
    pub fn new(ssrc: u32, sequence: u16, timestamp: u32) -> Self {
        Self {
            ssrc,
            sequence,
            timestamp,
            first: true,
        }
    }

    /// The stream's SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The timestamp the next media packet gets.
    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }

    /// Appends the next audio packet to `out`: `payload` covers `samples`
    /// sampling periods (160 for 20 ms of G.711), so the timestamp advances
    /// by that much. The first packet of the stream carries the marker.
    pub fn audio(&mut self, out: &mut Vec<u8>, payload_type: u8, payload: &[u8], samples: u32) {
        let marker = std::mem::take(&mut self.first);
        self.emit(out, marker, payload_type, self.timestamp, payload);
        self.timestamp = self.timestamp.wrapping_add(samples);
    }

    /// Appends a packet stamped `timestamp` without moving the media clock
    /// (RFC 4733 events keep their start timestamp in every packet).
    pub fn event(
        &mut self,
        out: &mut Vec<u8>,
        marker: bool,
        payload_type: u8,
        timestamp: u32,
        payload: &[u8],
    ) {
        self.emit(out, marker, payload_type, timestamp, payload);
    }

    /// Moves the media clock on by `samples` without sending (time an event
    /// took, so audio after it keeps real time).
    pub fn skip(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
    }

    fn emit(&mut self, out: &mut Vec<u8>, marker: bool, pt: u8, ts: u32, payload: &[u8]) {
        write_packet(out, marker, pt, self.sequence, ts, self.ssrc, payload);
        self.sequence = self.sequence.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_packets_parse_back() {
        let mut out = Vec::new();
        write_packet(
            &mut out,
            true,
            8,
            0xFFFF,
            0xDEAD_BEEF,
            0x1234_5678,
            &[1, 2, 3],
        );
        let p = RtpPacket::parse(&out).unwrap();
        assert_eq!(
            (
                p.marker,
                p.payload_type,
                p.sequence,
                p.timestamp,
                p.ssrc,
                p.payload
            ),
            (true, 8, 0xFFFF, 0xDEAD_BEEF, 0x1234_5678, &[1u8, 2, 3][..])
        );
        assert!(!is_rtcp(&out));
    }

    #[test]
    fn csrcs_extension_and_padding_are_skipped() {
        let mut b = vec![0x80 | 0x20 | 0x10 | 2, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        b.extend_from_slice(&[0xAA; 8]); // two CSRCs
        b.extend_from_slice(&[0xBE, 0xDE, 0, 1, 9, 9, 9, 9]); // one-word extension
        b.extend_from_slice(&[7, 7]); // payload
        b.extend_from_slice(&[0, 0, 3]); // three bytes of padding
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!((p.csrc_count, p.payload), (2, &[7u8, 7][..]));
    }

    #[test]
    fn malformed_packets_say_what_is_wrong() {
        assert_eq!(RtpPacket::parse(&[0x80; 5]), Err(RtpError::TooShort(5)));
        let mut b = vec![0x40, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        assert_eq!(RtpPacket::parse(&b), Err(RtpError::BadVersion(1)));
        b[0] = 0x83;
        assert_eq!(RtpPacket::parse(&b), Err(RtpError::TruncatedCsrc(3)));
        b[0] = 0x90;
        assert_eq!(RtpPacket::parse(&b), Err(RtpError::TruncatedExtension));
        b[0] = 0xA0;
        b.push(0);
        assert_eq!(RtpPacket::parse(&b), Err(RtpError::BadPadding(0)));
        *b.last_mut().unwrap() = 2;
        assert_eq!(RtpPacket::parse(&b), Err(RtpError::BadPadding(2)));
    }

    #[test]
    fn rtcp_is_told_apart() {
        assert!(is_rtcp(&[0x80, 200, 0, 6]));
        assert!(!is_rtcp(&[0x80, 0x80 | 101]));
    }

    #[test]
    fn the_sender_numbers_and_stamps_packets_and_wraps() {
        let mut s = RtpSender::new(7, u16::MAX, u32::MAX - 100);
        let mut out = Vec::new();
        s.audio(&mut out, 0, &[0xFF; 160], 160);
        let a = RtpPacket::parse(&out).unwrap();
        assert_eq!(
            (a.marker, a.sequence, a.timestamp),
            (true, u16::MAX, u32::MAX - 100)
        );
        out.clear();
        s.audio(&mut out, 0, &[0xFF; 160], 160);
        let b = RtpPacket::parse(&out).unwrap();
        assert_eq!((b.marker, b.sequence, b.timestamp), (false, 0, 59));
        out.clear();
        s.event(&mut out, true, 101, 59, &[1, 0x0A, 0, 160]);
        let e = RtpPacket::parse(&out).unwrap();
        assert_eq!((e.marker, e.sequence, e.timestamp), (true, 1, 59));
        assert_eq!(s.timestamp(), 59 + 160);
    }
}
