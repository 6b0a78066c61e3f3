//! Framing: cut the byte stream into PDUs by command_length, before any
//! parsing, so one bad PDU never desynchronises the stream.

use bytes::{Buf, Bytes, BytesMut};

/// Length of the SMPP header.
pub const HEADER_LEN: usize = 16;
/// Default largest PDU accepted (64 KiB: message_payload can be up to 64 KiB).
pub const DEFAULT_MAX_PDU: usize = 64 * 1024;

/// The stream cannot be framed any further; the connection must be closed
/// (after a generic_nack with ESME_RINVCMDLEN, as SMPP 3.4 §2.8 advises).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// command_length is smaller than the header itself.
    #[error("command_length {len} is below the 16-byte minimum (header alone is 16 bytes)")]
    TooShort {
        /// The declared length.
        len: u32,
        /// sequence_number, when the header was complete.
        sequence: Option<u32>,
    },
    /// command_length is larger than the configured maximum.
    #[error("command_length {len} exceeds the configured maximum of {max} bytes")]
    TooLong {
        /// The declared length.
        len: u32,
        /// The configured maximum.
        max: usize,
        /// sequence_number, when the header was complete.
        sequence: Option<u32>,
    },
}

impl FrameError {
    /// sequence_number of the offending header, when known.
    pub fn sequence(&self) -> Option<u32> {
        match self {
            FrameError::TooShort { sequence, .. } | FrameError::TooLong { sequence, .. } => {
                *sequence
            }
        }
    }
}

/// Cuts PDUs out of a byte buffer.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_len: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(DEFAULT_MAX_PDU)
    }
}

impl FrameDecoder {
    /// A decoder refusing PDUs longer than `max_len` bytes.
    pub fn new(max_len: usize) -> Self {
        FrameDecoder {
            max_len: max_len.max(HEADER_LEN),
        }
    }

    /// The configured maximum.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Removes and returns the next complete frame (header included), or
    /// `None` when more bytes are needed.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let sequence = (buf.len() >= HEADER_LEN)
            .then(|| u32::from_be_bytes([buf[12], buf[13], buf[14], buf[15]]));
        if (len as usize) < HEADER_LEN {
            return Err(FrameError::TooShort { len, sequence });
        }
        if len as usize > self.max_len {
            return Err(FrameError::TooLong {
                len,
                max: self.max_len,
                sequence,
            });
        }
        if buf.len() < len as usize {
            buf.reserve(len as usize - buf.len());
            return Ok(None);
        }
        let frame = buf.split_to(len as usize).freeze();
        Ok(Some(frame))
    }
}

/// Peeks command_id and sequence_number of a complete frame.
pub fn peek_header(frame: &[u8]) -> Option<(u32, u32, u32)> {
    if frame.len() < HEADER_LEN {
        return None;
    }
    let mut h = &frame[4..HEADER_LEN];
    Some((h.get_u32(), h.get_u32(), h.get_u32()))
}
