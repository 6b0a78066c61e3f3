//! Primitive field readers and writers shared by the PDU and TLV codecs.

use bytes::{BufMut, Bytes, BytesMut};
use std::borrow::Cow;
use std::fmt;

/// An SMPP C-Octet String without its terminating NUL.
///
/// Kept as raw bytes: SMSCs put non-ASCII bytes in addresses and ids, and a
/// gateway must carry them without loss.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct COctets(pub Bytes);

impl COctets {
    /// An empty string.
    pub const fn new() -> Self {
        COctets(Bytes::new())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes as text, replacing invalid UTF-8.
    pub fn to_str_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }

    /// Number of bytes (without the NUL).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for COctets {
    fn from(s: &str) -> Self {
        COctets(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for COctets {
    fn from(s: String) -> Self {
        COctets(Bytes::from(s.into_bytes()))
    }
}

impl From<&[u8]> for COctets {
    fn from(s: &[u8]) -> Self {
        COctets(Bytes::copy_from_slice(s))
    }
}

impl PartialEq<&str> for COctets {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl fmt::Debug for COctets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_str_lossy(), f)
    }
}

impl fmt::Display for COctets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_str_lossy())
    }
}

/// Why a field could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// The body ended before a mandatory field.
    #[error("body ends before mandatory field `{field}`")]
    Truncated {
        /// Field name as in the specification.
        field: &'static str,
    },
    /// A C-Octet String had no NUL terminator before the end of the PDU.
    #[error("field `{field}` has no NUL terminator before the end of the PDU")]
    Unterminated {
        /// Field name as in the specification.
        field: &'static str,
    },
    /// sm_length points past the end of the PDU.
    #[error("sm_length {sm_length} exceeds the {available} bytes left in the PDU")]
    SmLength {
        /// The declared length.
        sm_length: usize,
        /// Bytes actually left.
        available: usize,
    },
}

/// A cursor over one PDU body.
#[derive(Debug)]
pub(crate) struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, FieldError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or(FieldError::Truncated { field })?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<Bytes, FieldError> {
        if self.remaining() < n {
            return Err(FieldError::Truncated { field });
        }
        let out = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(out)
    }

    /// Reads a C-Octet String. Over-long strings (beyond the specification's
    /// maximum) are accepted as long as the NUL lies inside the PDU: real
    /// SMSCs send them and rejecting them would lose messages.
    pub(crate) fn cstr(&mut self, field: &'static str) -> Result<COctets, FieldError> {
        let rest = &self.buf[self.pos..];
        if rest.is_empty() {
            return Err(FieldError::Truncated { field });
        }
        match memchr0(rest) {
            Some(i) => {
                let s = self.buf.slice(self.pos..self.pos + i);
                self.pos += i + 1;
                Ok(COctets(s))
            }
            None => Err(FieldError::Unterminated { field }),
        }
    }

    /// Reads a C-Octet String that ends the body; a missing NUL or a missing
    /// field is tolerated (error responses often carry no body at all).
    pub(crate) fn cstr_last(&mut self) -> COctets {
        let rest = &self.buf[self.pos..];
        match memchr0(rest) {
            Some(i) => {
                let s = self.buf.slice(self.pos..self.pos + i);
                self.pos += i + 1;
                COctets(s)
            }
            None => {
                let s = self.buf.slice(self.pos..);
                self.pos = self.buf.len();
                COctets(s)
            }
        }
    }

    pub(crate) fn rest(&mut self) -> Bytes {
        let s = self.buf.slice(self.pos..);
        self.pos = self.buf.len();
        s
    }
}

fn memchr0(s: &[u8]) -> Option<usize> {
    s.iter().position(|&b| b == 0)
}

/// Writes a C-Octet String with its NUL terminator.
pub(crate) fn put_cstr(out: &mut BytesMut, s: &COctets) {
    out.put_slice(&s.0);
    out.put_u8(0);
}
