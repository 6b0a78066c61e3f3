//! SMPP delivery receipt (DLR) parsing and message-id correlation.
//!
//! A delivery receipt arrives as a `deliver_sm` (or `data_sm`) whose
//! `esm_class` marks it as a receipt (see [`is_receipt`]). Real SMSCs put the
//! receipt's content in one or both of two places:
//!
//! * the SMPP 3.4 optional parameters `receipted_message_id`,
//!   `message_state` and `network_error_code`;
//! * the text suggested by SMPP 3.4 Appendix B, in `short_message`:
//!   `id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD err:E text:...`
//!
//! Appendix B is explicitly "SMSC vendor specific", and vendors took that
//! literally: fields are omitted (Jasmin drops `sub`, `dlvrd` and `text`),
//! reordered, capitalised differently (`Text:`), spelled `submit_date`, or
//! padded with extra spaces. The text parser is therefore a lenient
//! field-by-field scanner rather than a fixed-layout matcher. [`parse_dlr`]
//! merges both sources, TLVs winning, because TLVs are typed and the text is
//! free-form.
//!
//! The id quoted in a receipt is often not byte-for-byte the id the SMSC
//! returned in `submit_sm_resp` (hex in one, decimal in the other, leading
//! zeros, case); [`message_id_keys`] and [`ids_match`] correlate them.

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

/// Final or intermediate state of a submitted message, as reported by a receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DlrState {
    /// ENROUTE (1): still in transit; more receipts may follow.
    Enroute,
    /// DELIVRD (2): delivered to the destination handset.
    Delivered,
    /// EXPIRED (3): validity period elapsed before delivery.
    Expired,
    /// DELETED (4): deleted (e.g. by a `cancel_sm`) before delivery.
    Deleted,
    /// UNDELIV (5): could not be delivered.
    Undeliverable,
    /// ACCEPTD (6): accepted on behalf of the subscriber (e.g. read by customer service).
    Accepted,
    /// UNKNOWN (7): the SMSC reports the message in an invalid/unknown state.
    Unknown,
    /// REJECTD (8): rejected by the SMSC or the network.
    Rejected,
    /// SKIPPED (9, SMPP 5.0): skipped, e.g. one recipient of a multi-recipient submit.
    Skipped,
}

impl DlrState {
    /// Every state, in `message_state` order.
    pub const ALL: [DlrState; 9] = [
        DlrState::Enroute,
        DlrState::Delivered,
        DlrState::Expired,
        DlrState::Deleted,
        DlrState::Undeliverable,
        DlrState::Accepted,
        DlrState::Unknown,
        DlrState::Rejected,
        DlrState::Skipped,
    ];

    /// Maps a `message_state` TLV value (SMPP 3.4 §5.2.28, 9 from SMPP 5.0); `None` when out of range.
    ///
    /// 0 (SCHEDULED in SMPP 5.0) is deliberately not mapped: it is not a
    /// delivery outcome, and folding it into ENROUTE would hide a
    /// misconfigured SMSC rather than surface it.
    #[must_use]
    pub const fn from_message_state(value: u8) -> Option<Self> {
        Some(match value {
            1 => DlrState::Enroute,
            2 => DlrState::Delivered,
            3 => DlrState::Expired,
            4 => DlrState::Deleted,
            5 => DlrState::Undeliverable,
            6 => DlrState::Accepted,
            7 => DlrState::Unknown,
            8 => DlrState::Rejected,
            9 => DlrState::Skipped,
            _ => return None,
        })
    }

    /// The `message_state` TLV value of this state (inverse of [`DlrState::from_message_state`]).
    #[must_use]
    pub const fn message_state(self) -> u8 {
        match self {
            DlrState::Enroute => 1,
            DlrState::Delivered => 2,
            DlrState::Expired => 3,
            DlrState::Deleted => 4,
            DlrState::Undeliverable => 5,
            DlrState::Accepted => 6,
            DlrState::Unknown => 7,
            DlrState::Rejected => 8,
            DlrState::Skipped => 9,
        }
    }

    /// Parses a `stat:` value: the Appendix-B 7-char forms and common variants, case-insensitively.
    ///
    /// Besides `DELIVRD EXPIRED DELETED UNDELIV ACCEPTD UNKNOWN REJECTD
    /// ENROUTE SKIPPED`, the spelled-out forms (`DELIVERED`, `UNDELIVERABLE`,
    /// `REJECTED`, ...) are accepted because several SMSCs ignore the 7-char
    /// limit; `FAILED`/`FAIL` map to [`DlrState::Undeliverable`] and
    /// `BUFFRED`/`BUFFERED` to [`DlrState::Enroute`], as Kannel does. A bare
    /// number is read as a `message_state` value, which some SMSCs send.
    #[must_use]
    pub fn from_stat(stat: &str) -> Option<Self> {
        // Spelling -> state; compared ASCII-case-insensitively so no allocation is needed.
        const SPELLINGS: &[(&str, DlrState)] = &[
            ("DELIVRD", DlrState::Delivered),
            ("DELIVERED", DlrState::Delivered),
            ("EXPIRED", DlrState::Expired),
            ("EXPIRD", DlrState::Expired),
            ("DELETED", DlrState::Deleted),
            ("DELETD", DlrState::Deleted),
            ("UNDELIV", DlrState::Undeliverable),
            ("UNDELIVERABLE", DlrState::Undeliverable),
            ("UNDELIVERED", DlrState::Undeliverable),
            ("UNDELIVD", DlrState::Undeliverable),
            ("FAILED", DlrState::Undeliverable),
            ("FAIL", DlrState::Undeliverable),
            ("ACCEPTD", DlrState::Accepted),
            ("ACCEPTED", DlrState::Accepted),
            ("UNKNOWN", DlrState::Unknown),
            ("REJECTD", DlrState::Rejected),
            ("REJECTED", DlrState::Rejected),
            ("ENROUTE", DlrState::Enroute),
            ("BUFFRED", DlrState::Enroute),
            ("BUFFERED", DlrState::Enroute),
            ("SKIPPED", DlrState::Skipped),
        ];
        let s = trim_ws_nul(stat);
        if !s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit()) {
            return s.parse::<u8>().ok().and_then(Self::from_message_state);
        }
        SPELLINGS
            .iter()
            .find(|(spelling, _)| spelling.eq_ignore_ascii_case(s))
            .map(|&(_, state)| state)
    }

    /// The Appendix-B 7-character `stat:` form, e.g. `DELIVRD`.
    #[must_use]
    pub const fn as_stat(self) -> &'static str {
        match self {
            DlrState::Enroute => "ENROUTE",
            DlrState::Delivered => "DELIVRD",
            DlrState::Expired => "EXPIRED",
            DlrState::Deleted => "DELETED",
            DlrState::Undeliverable => "UNDELIV",
            DlrState::Accepted => "ACCEPTD",
            DlrState::Unknown => "UNKNOWN",
            DlrState::Rejected => "REJECTD",
            DlrState::Skipped => "SKIPPED",
        }
    }

    /// True when no further receipt is expected for the message (everything but ENROUTE).
    ///
    /// ACCEPTED is final per SMPP 3.4/5.0 even though a few SMSCs misuse
    /// ACCEPTD as an intermediate "reached the SMSC" notice; following the
    /// specification keeps this predicate predictable, and callers that
    /// know such an SMSC can keep correlation state a little longer.
    /// UNKNOWN counts as final because the SMSC has nothing more to say
    /// about the message; waiting for another receipt would only time out.
    #[must_use]
    pub const fn is_final(self) -> bool {
        !matches!(self, DlrState::Enroute)
    }

    /// True only for DELIVERED: the one state that means the handset got the message.
    #[must_use]
    pub const fn is_success(self) -> bool {
        matches!(self, DlrState::Delivered)
    }
}

impl fmt::Display for DlrState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_stat())
    }
}

/// A receipt timestamp (`submit date:`/`done date:`), in the SMSC's local time, as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DlrDate {
    /// Full year: 2000 + the two-digit `YY`.
    pub year: u16,
    /// Month, 1-12.
    pub month: u8,
    /// Day of month, 1-31 (checked against the month's length).
    pub day: u8,
    /// Hour, 0-23.
    pub hour: u8,
    /// Minute, 0-59.
    pub minute: u8,
    /// Second, 0-59, when the 12-digit form was used.
    pub second: Option<u8>,
}

impl DlrDate {
    /// Parses 10-digit `YYMMDDhhmm` or 12-digit `YYMMDDhhmmss`; `None` if malformed or out of range.
    ///
    /// The year is taken as 2000+YY: Appendix B only carries two digits and
    /// no receipt predates SMPP 3.4 (1999) by enough to matter.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        let b = trim_ws_nul(s).as_bytes();
        if !(b.len() == 10 || b.len() == 12) || !b.iter().all(u8::is_ascii_digit) {
            return None;
        }
        // Two ASCII digits -> 0..=99; cannot overflow a u8.
        let two = |i: usize| (b[i] - b'0') * 10 + (b[i + 1] - b'0');
        let date = DlrDate {
            year: 2000 + u16::from(two(0)),
            month: two(2),
            day: two(4),
            hour: two(6),
            minute: two(8),
            second: (b.len() == 12).then(|| two(10)),
        };
        date.is_valid().then_some(date)
    }

    /// True when every field is within range (month length and leap years included).
    #[must_use]
    pub fn is_valid(&self) -> bool {
        (1..=12).contains(&self.month)
            && self.day >= 1
            && self.day <= days_in_month(self.year, self.month)
            && self.hour <= 23
            && self.minute <= 59
            && self.second.is_none_or(|s| s <= 59)
    }
}

impl fmt::Display for DlrDate {
    /// Writes `YYMMDDhhmm` or `YYMMDDhhmmss` (the year modulo 100, as Appendix B carries it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}{:02}{:02}{:02}{:02}",
            self.year % 100,
            self.month,
            self.day,
            self.hour,
            self.minute
        )?;
        if let Some(second) = self.second {
            write!(f, "{second:02}")?;
        }
        Ok(())
    }
}

/// Days in `month` of `year` (0 for an invalid month, so any day fails validation).
fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        _ => 0,
    }
}

/// A parsed delivery receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dlr {
    /// The receipted message id as the SMSC gave it (only whitespace/NULs trimmed); correlate with [`ids_match`].
    pub message_id: String,
    /// Delivery state.
    pub state: DlrState,
    /// `sub:` — number of messages originally submitted (for distribution lists).
    pub submitted: Option<u32>,
    /// `dlvrd:` — number of those delivered.
    pub delivered: Option<u32>,
    /// `submit date:` — when the message was submitted; `None` if absent or invalid.
    pub submit_date: Option<DlrDate>,
    /// `done date:` — when the message reached this state; `None` if absent or invalid.
    pub done_date: Option<DlrDate>,
    /// `err:` — SMSC/network specific error code, verbatim (e.g. `000`).
    pub error: Option<String>,
    /// `network_error_code` TLV: (network type: 1 ANSI-136, 2 IS-95, 3 GSM, 4 ANSI-41; error code).
    pub network_error: Option<(u8, u16)>,
    /// `text:` — usually the first 20 characters of the original message.
    pub text: Option<String>,
}

impl fmt::Display for Dlr {
    /// Writes the Appendix-B text with the fields that are present.
    ///
    /// [`parse_dlr`] reads this back to the same fields (except
    /// `network_error`, which only travels as a TLV) as long as the id and
    /// `err` contain no whitespace and the text is a single line without
    /// surrounding whitespace. The lowercase `text:` key is used because
    /// that is what most SMSCs send, whatever the specification's `Text:`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "id:{}", self.message_id)?;
        if let Some(sub) = self.submitted {
            write!(f, " sub:{sub:03}")?;
        }
        if let Some(dlvrd) = self.delivered {
            write!(f, " dlvrd:{dlvrd:03}")?;
        }
        if let Some(date) = &self.submit_date {
            write!(f, " submit date:{date}")?;
        }
        if let Some(date) = &self.done_date {
            write!(f, " done date:{date}")?;
        }
        write!(f, " stat:{}", self.state.as_stat())?;
        if let Some(err) = &self.error {
            write!(f, " err:{err}")?;
        }
        if let Some(text) = &self.text {
            write!(f, " text:{text}")?;
        }
        Ok(())
    }
}

/// Why a delivery receipt could not be parsed: which of the two mandatory facts was missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DlrError {
    /// Neither a message id nor a usable state was found in the TLVs or the text.
    #[error(
        "delivery receipt has neither a message id (no receipted_message_id TLV, no id: field) \
         nor a usable state (no valid message_state TLV, no valid stat: field)"
    )]
    MissingMessageIdAndState,
    /// A state was found but no message id (no `receipted_message_id` TLV, no `id:` field).
    #[error("delivery receipt has no message id (no receipted_message_id TLV, no id: field)")]
    MissingMessageId,
    /// A message id was found but no state (no `message_state` TLV, no `stat:` field).
    #[error("delivery receipt has no state (no message_state TLV, no stat: field)")]
    MissingState,
    /// A message id was found but the only state given was not recognised; carries it verbatim.
    #[error("delivery receipt state {0:?} is not a known message_state/stat value")]
    UnrecognisedState(String),
}

/// Parses a delivery receipt from its TLVs and/or its Appendix-B `short_message` text.
///
/// `receipted_message_id` and `message_state` win over the text's `id:` and
/// `stat:` when present (and, for the state, recognised), because they are
/// typed fields while the text is vendor-specific. The other fields only
/// exist in the text. Text fields may come in any order, any may be
/// missing, keys are case-insensitive, `submit date`/`done date` may also
/// be written `submit_date`/`done_date`, and values may be preceded by any
/// number of spaces. `text:` takes the rest of its line. Invalid bytes are
/// replaced (lossy UTF-8), and a `short_message` that is evidently UCS-2
/// (some SMSCs encode the receipt like the original message) is decoded as
/// such.
///
/// # Errors
///
/// [`DlrError`] names what is missing when the two sources together do
/// not yield both a message id and a state.
pub fn parse_dlr(
    receipted_message_id: Option<&str>,
    message_state: Option<u8>,
    network_error_code: Option<[u8; 3]>,
    short_message: &[u8],
) -> Result<Dlr, DlrError> {
    let decoded = decode_short_message(short_message);
    let fields = TextFields::scan(&decoded);

    // Trim Unicode whitespace too: the text scanner splits on ASCII only, so
    // an `id:` value can carry padding such as U+000B or U+3000.
    let message_id = receipted_message_id
        .map(trim_ws_nul)
        .filter(|id| !id.is_empty())
        .or(fields.id.map(trim_ws_nul).filter(|id| !id.is_empty()));

    // The raw value of a state that was present but unusable, so the error
    // can say "unrecognised X" rather than the misleading "missing".
    let mut unrecognised: Option<String> = None;
    let mut state = None;
    if let Some(value) = message_state {
        state = DlrState::from_message_state(value);
        if state.is_none() {
            unrecognised = Some(format!("message_state {value}"));
        }
    }
    if state.is_none() {
        if let Some(raw) = fields.stat {
            state = DlrState::from_stat(raw);
            if state.is_none() && unrecognised.is_none() {
                unrecognised = Some(raw.to_owned());
            }
        }
    }

    let (message_id, state) = match (message_id, state) {
        (Some(id), Some(state)) => (id.to_owned(), state),
        (None, None) => return Err(DlrError::MissingMessageIdAndState),
        (None, Some(_)) => return Err(DlrError::MissingMessageId),
        (Some(_), None) => {
            return Err(match unrecognised {
                Some(raw) => DlrError::UnrecognisedState(raw),
                None => DlrError::MissingState,
            })
        }
    };

    Ok(Dlr {
        message_id,
        state,
        submitted: fields.sub.and_then(parse_count),
        delivered: fields.dlvrd.and_then(parse_count),
        submit_date: fields.submit_date.and_then(DlrDate::parse),
        done_date: fields.done_date.and_then(DlrDate::parse),
        error: fields.err.map(str::to_owned),
        // network_error_code is 1 octet network type + 2 octets error, big-endian (SMPP 3.4 §5.3.2.31).
        network_error: network_error_code.map(|b| (b[0], u16::from_be_bytes([b[1], b[2]]))),
        text: fields.text.map(str::to_owned),
    })
}

/// True when `esm_class` marks a `deliver_sm`/`data_sm` as a receipt or acknowledgement.
///
/// Bits 5-2 of `esm_class` are the *message type*, a 4-bit enumeration
/// (not independent flags), SMPP 3.4 §5.2.12:
///
/// * `0x04` SMSC delivery receipt — the usual DLR;
/// * `0x08` SME delivery acknowledgement;
/// * `0x10` SME manual/user acknowledgement;
/// * `0x20` intermediate delivery notification (e.g. ENROUTE).
///
/// `0x18` (conversation abort, Korean CDMA) and the reserved values are not
/// receipts. Only the message-type bits are looked at, so the UDHI (`0x40`)
/// and reply-path (`0x80`) bits and the messaging mode do not matter.
/// SME acknowledgements carry the recipient's own content rather than
/// Appendix-B text, so [`parse_dlr`] may reject them; that is expected.
#[must_use]
pub const fn is_receipt(esm_class: u8) -> bool {
    matches!(esm_class & 0x3C, 0x04 | 0x08 | 0x10 | 0x20)
}

/// Up to two canonical correlation keys of a message id; see [`message_id_keys`].
///
/// Dereferences to `[String]`, the primary key first; no heap allocation
/// beyond the key strings themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MessageIdKeys {
    keys: [String; 2],
    len: usize,
}

impl MessageIdKeys {
    /// Appends `key` unless it is already present (both interpretations can coincide, e.g. "7").
    fn push(&mut self, key: String) {
        if self.len < self.keys.len() && !self.as_slice().contains(&key) {
            self.keys[self.len] = key;
            self.len += 1;
        }
    }

    /// The keys, primary first (empty for an empty id).
    #[must_use]
    pub fn as_slice(&self) -> &[String] {
        &self.keys[..self.len]
    }

    /// The primary key, used as [`normalize_message_id`]; `None` for an empty id.
    #[must_use]
    pub fn primary(&self) -> Option<&str> {
        self.as_slice().first().map(String::as_str)
    }

    /// True when the two key sets share a key, i.e. the ids correlate.
    #[must_use]
    pub fn intersects(&self, other: &MessageIdKeys) -> bool {
        self.iter().any(|k| other.contains(k))
    }
}

impl Deref for MessageIdKeys {
    type Target = [String];

    fn deref(&self) -> &[String] {
        self.as_slice()
    }
}

impl<'a> IntoIterator for &'a MessageIdKeys {
    type Item = &'a String;
    type IntoIter = std::slice::Iter<'a, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

/// The canonical correlation keys of a message id (primary first); two ids correlate iff their keys intersect.
///
/// Why: many SMSCs (Logica/CMG-derived ones, and setups behind Kannel or
/// Jasmin) answer `submit_sm_resp` with a hexadecimal id but quote it in
/// the receipt text as decimal — Appendix B describes `id:` as 10 digits —
/// or vice versa, with or without leading zeros and in either case. A
/// digits-only id is ambiguous: it may be a decimal number or a hex id that
/// happens to have no letters, so it gets both readings. All keys live in
/// one namespace (lowercase hex without leading zeros) so they compare
/// directly.
///
/// Rule, after trimming whitespace and NULs:
///
/// * empty → no keys (an empty id correlates with nothing);
/// * UUID `8-4-4-4-12` hex → the UUID lowercased;
/// * `0x`-prefixed hex → the hex digits, lowercased, leading zeros stripped;
/// * digits only → A: the decimal value rendered as hex (when it fits a
///   `u128`), then B: the digits read as hex (leading zeros stripped);
/// * hex digits with at least one letter → B only;
/// * anything else → lowercased with leading zeros stripped.
///
/// The two readings make false matches possible between digits-only ids
/// (decimal "16" and hex "10" share the key `10`). A correlation store that
/// indexes every key should therefore prefer a candidate whose primary key
/// equals the receipt's primary key before falling back to the others:
/// same-format ids always agree on the primary key.
#[must_use]
pub fn message_id_keys(id: &str) -> MessageIdKeys {
    let mut keys = MessageIdKeys::default();
    let id = trim_ws_nul(id);
    if id.is_empty() {
        return keys;
    }
    if is_uuid(id) {
        keys.push(id.to_ascii_lowercase());
        return keys;
    }
    let prefixed_hex = id
        .strip_prefix("0x")
        .or_else(|| id.strip_prefix("0X"))
        .filter(|h| is_hex(h));
    if let Some(hex) = prefixed_hex {
        keys.push(hex_key(hex));
        return keys;
    }
    if id.bytes().all(|b| b.is_ascii_digit()) {
        // `parse` only fails on overflow here: the string is non-empty digits.
        if let Ok(value) = id.parse::<u128>() {
            keys.push(format!("{value:x}"));
        }
        keys.push(hex_key(id));
    } else if is_hex(id) {
        keys.push(hex_key(id));
    } else {
        keys.push(strip_leading_zeros(&id.to_ascii_lowercase()).to_owned());
    }
    keys
}

/// The primary correlation key of a message id (see [`message_id_keys`]); empty for an empty id.
///
/// Digits-only ids yield their decimal value in hex, ids with hex letters
/// their lowercase hex without leading zeros, UUIDs their lowercase form.
#[must_use]
pub fn normalize_message_id(id: &str) -> String {
    let mut keys = message_id_keys(id);
    if keys.len == 0 {
        return String::new();
    }
    std::mem::take(&mut keys.keys[0])
}

/// True when two message ids correlate: their [`message_id_keys`] intersect.
#[must_use]
pub fn ids_match(a: &str, b: &str) -> bool {
    message_id_keys(a).intersects(&message_id_keys(b))
}

/// Trims whitespace and NULs: C-Octet Strings arrive with their terminator from some decoders.
fn trim_ws_nul(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || c == '\0')
}

/// True for a non-empty string of ASCII hex digits.
fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// True for the hyphenated 8-4-4-4-12 UUID form (any case).
fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Lowercase hex digits without leading zeros ("0" for all zeros).
fn hex_key(hex: &str) -> String {
    strip_leading_zeros(hex).to_ascii_lowercase()
}

/// Strips leading zeros but keeps a lone "0", so zero still has a key.
fn strip_leading_zeros(s: &str) -> &str {
    let stripped = s.trim_start_matches('0');
    if stripped.is_empty() && !s.is_empty() {
        "0"
    } else {
        stripped
    }
}

/// Parses `sub:`/`dlvrd:` counts; anything but plain digits is dropped rather than failing the receipt.
fn parse_count(s: &str) -> Option<u32> {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// Decodes `short_message` to text: UCS-2 when it evidently is, lossy UTF-8 otherwise.
///
/// Some SMSCs encode the receipt with the original message's `data_coding`,
/// so a receipt for a UCS-2 message arrives as `00 69 00 64 00 3A ...`.
/// ASCII in UCS-2 puts a NUL in every even position, which no 8-bit
/// receipt text does, so requiring that for the first three characters is
/// a safe discriminator without being told the `data_coding`.
fn decode_short_message(bytes: &[u8]) -> Cow<'_, str> {
    let looks_ucs2 = bytes.len() >= 6
        && bytes
            .chunks_exact(2)
            .take(3)
            .all(|c| c[0] == 0 && c[1] != 0);
    if looks_ucs2 {
        let units = bytes
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]));
        Cow::Owned(
            char::decode_utf16(units)
                .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
                .collect(),
        )
    } else {
        String::from_utf8_lossy(bytes)
    }
}

/// The Appendix-B keys the scanner recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Id,
    Sub,
    Dlvrd,
    SubmitDate,
    DoneDate,
    Stat,
    Err,
    Text,
}

/// Raw field values found in the receipt text, borrowed from it.
#[derive(Debug, Default)]
struct TextFields<'a> {
    id: Option<&'a str>,
    sub: Option<&'a str>,
    dlvrd: Option<&'a str>,
    submit_date: Option<&'a str>,
    done_date: Option<&'a str>,
    stat: Option<&'a str>,
    err: Option<&'a str>,
    text: Option<&'a str>,
}

impl<'a> TextFields<'a> {
    /// Where the value of `key` is stored.
    fn slot(&mut self, key: Key) -> &mut Option<&'a str> {
        match key {
            Key::Id => &mut self.id,
            Key::Sub => &mut self.sub,
            Key::Dlvrd => &mut self.dlvrd,
            Key::SubmitDate => &mut self.submit_date,
            Key::DoneDate => &mut self.done_date,
            Key::Stat => &mut self.stat,
            Key::Err => &mut self.err,
            Key::Text => &mut self.text,
        }
    }

    /// Records a value; the first non-empty occurrence of a key wins, so a
    /// later look-alike (e.g. inside the text on another line) cannot
    /// override the real field.
    fn set(&mut self, key: Key, value: &'a str) {
        let slot = self.slot(key);
        if slot.is_none() && !value.is_empty() {
            *slot = Some(value);
        }
    }

    /// Scans the receipt text word by word, picking out `key:value` fields in any order.
    ///
    /// Keys are only recognised at the start of a word, so `paid:` does not
    /// yield an `id`. A plain value is the single word after the colon
    /// (after any blanks), so unknown vendor fields in between are skipped
    /// rather than glued onto a value. All indices fall on ASCII bytes,
    /// hence on char boundaries, so slicing the `&str` cannot panic.
    fn scan(s: &'a str) -> Self {
        let b = s.as_bytes();
        let mut fields = TextFields::default();
        let mut i = 0;
        while i < b.len() {
            if is_separator(b[i]) {
                i += 1;
                continue;
            }
            let Some((key, key_len)) = match_key(&b[i..]) else {
                // Not a key: skip the whole word.
                i += b[i..]
                    .iter()
                    .position(|&c| is_separator(c))
                    .unwrap_or(b.len() - i);
                continue;
            };
            let mut j = i + key_len;
            while j < b.len() && is_blank(b[j]) {
                j += 1;
            }
            if key == Key::Text {
                // The text is whatever the original message began with, so it
                // may contain spaces and colons: take the rest of the line
                // (or up to a C-string terminator).
                let end = j + b[j..]
                    .iter()
                    .position(|&c| matches!(c, b'\r' | b'\n' | 0))
                    .unwrap_or(b.len() - j);
                fields.set(key, trim_ws_nul(&s[j..end]));
                i = end;
                continue;
            }
            if match_key(&b[j..]).is_some() {
                // "err: stat:DELIVRD" — the key has an empty value; rescan
                // from the next key instead of swallowing it as the value.
                i = j;
                continue;
            }
            let end = j + b[j..]
                .iter()
                .position(|&c| is_separator(c))
                .unwrap_or(b.len() - j);
            fields.set(key, &s[j..end]);
            i = end;
        }
        fields
    }
}

/// Word separators in receipt text: ASCII whitespace and NUL (padding from C-string SMSCs).
fn is_separator(c: u8) -> bool {
    c.is_ascii_whitespace() || c == 0
}

/// Blanks allowed inside a key (`submit  date`) and between a colon and its value.
fn is_blank(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// Matches a key and its colon at the start of `b`; returns the key and the bytes consumed.
fn match_key(b: &[u8]) -> Option<(Key, usize)> {
    const SINGLE: [(&[u8], Key); 6] = [
        (b"id", Key::Id),
        (b"sub", Key::Sub),
        (b"dlvrd", Key::Dlvrd),
        (b"stat", Key::Stat),
        (b"err", Key::Err),
        (b"text", Key::Text),
    ];
    const DATED: [(&[u8], Key); 2] = [(b"submit", Key::SubmitDate), (b"done", Key::DoneDate)];

    for (word, key) in SINGLE {
        if let Some(n) = match_word(b, 0, word).and_then(|n| after_colon(b, n)) {
            return Some((key, n));
        }
    }
    for (word, key) in DATED {
        let Some(mut n) = match_word(b, 0, word) else {
            continue;
        };
        // "submit date", "submit   date", "submit_date" (and "submitdate").
        if b.get(n) == Some(&b'_') {
            n += 1;
        } else {
            while b.get(n).is_some_and(|&c| is_blank(c)) {
                n += 1;
            }
        }
        if let Some(n) = match_word(b, n, b"date").and_then(|n| after_colon(b, n)) {
            return Some((key, n));
        }
    }
    None
}

/// If `b[at..]` starts with `word` (ASCII case-insensitively), the index just past it.
fn match_word(b: &[u8], at: usize, word: &[u8]) -> Option<usize> {
    let end = at.checked_add(word.len())?;
    b.get(at..end)
        .filter(|s| s.eq_ignore_ascii_case(word))
        .map(|_| end)
}

/// If `b[at..]` is optional blanks then `:`, the index just past the colon.
fn after_colon(b: &[u8], mut at: usize) -> Option<usize> {
    while b.get(at).is_some_and(|&c| is_blank(c)) {
        at += 1;
    }
    (b.get(at) == Some(&b':')).then_some(at + 1)
}

#[cfg(test)]
mod fuzz_regressions {
    use super::*;

    #[test]
    fn whitespace_only_text_id_is_missing() {
        assert_eq!(
            parse_dlr(None, Some(2), None, b"id:\x0b stat:DELIVRD"),
            Err(DlrError::MissingMessageId)
        );
    }

    #[test]
    fn text_id_is_trimmed_of_unicode_space() {
        let d = parse_dlr(None, None, None, "id:abc\u{3000} stat:DELIVRD".as_bytes()).unwrap();
        assert_eq!(d.message_id, "abc");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text(s: &str) -> Result<Dlr, DlrError> {
        parse_dlr(None, None, None, s.as_bytes())
    }

    fn date(year: u16, month: u8, day: u8, hour: u8, minute: u8, second: Option<u8>) -> DlrDate {
        DlrDate {
            year,
            month,
            day,
            hour,
            minute,
            second,
        }
    }

    #[test]
    fn appendix_b_example() {
        let dlr = text(
            "id:0123456789 sub:001 dlvrd:001 submit date:0610191018 \
             done date:0610191020 stat:DELIVRD err:000 text:Hello World: how are",
        )
        .unwrap();
        assert_eq!(
            dlr,
            Dlr {
                message_id: "0123456789".into(),
                state: DlrState::Delivered,
                submitted: Some(1),
                delivered: Some(1),
                submit_date: Some(date(2006, 10, 19, 10, 18, None)),
                done_date: Some(date(2006, 10, 19, 10, 20, None)),
                error: Some("000".into()),
                network_error: None,
                text: Some("Hello World: how are".into()),
            }
        );
    }

    #[test]
    fn appendix_b_capitalised_text_key() {
        let dlr = text("id:1 sub:001 dlvrd:000 stat:UNDELIV err:001 Text:Hi there").unwrap();
        assert_eq!(dlr.state, DlrState::Undeliverable);
        assert_eq!(dlr.delivered, Some(0));
        assert_eq!(dlr.text.as_deref(), Some("Hi there"));
    }

    #[test]
    fn appendix_b_template_placeholders_name_the_bad_state() {
        let err = text(
            "id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm \
             done date:YYMMDDhhmm stat:DDDDDDD err:E Text: . . . . . . . . .",
        )
        .unwrap_err();
        assert_eq!(err, DlrError::UnrecognisedState("DDDDDDD".into()));
    }

    #[test]
    fn jasmin_style() {
        let dlr = text(
            "id:5ef3c6c5-9f6a-4b8e-8a0a-1f9f8f0e0d11 submit date:1911131219 \
             done date:1911131219 stat:DELIVRD err:000",
        )
        .unwrap();
        assert_eq!(dlr.message_id, "5ef3c6c5-9f6a-4b8e-8a0a-1f9f8f0e0d11");
        assert_eq!(dlr.state, DlrState::Delivered);
        assert_eq!(dlr.submitted, None);
        assert_eq!(dlr.delivered, None);
        assert_eq!(dlr.submit_date, Some(date(2019, 11, 13, 12, 19, None)));
        assert_eq!(dlr.done_date, Some(date(2019, 11, 13, 12, 19, None)));
        assert_eq!(dlr.error.as_deref(), Some("000"));
        assert_eq!(dlr.text, None);
    }

    #[test]
    fn shuffled_fields_and_odd_spacing() {
        let dlr = text(
            "STAT:rejectd  err:0B  done_date:  2401021530 dlvrd:000   Submit   Date:2401021529 \
             sub:001 ID:  A1B2C3 text:x",
        )
        .unwrap();
        assert_eq!(dlr.message_id, "A1B2C3");
        assert_eq!(dlr.state, DlrState::Rejected);
        assert_eq!(dlr.error.as_deref(), Some("0B"));
        assert_eq!(dlr.submitted, Some(1));
        assert_eq!(dlr.delivered, Some(0));
        assert_eq!(dlr.submit_date, Some(date(2024, 1, 2, 15, 29, None)));
        assert_eq!(dlr.done_date, Some(date(2024, 1, 2, 15, 30, None)));
        assert_eq!(dlr.text.as_deref(), Some("x"));
    }

    #[test]
    fn twelve_digit_dates() {
        let dlr =
            text("id:42 submit date:200229235958 done date:200301000001 stat:EXPIRED").unwrap();
        assert_eq!(dlr.submit_date, Some(date(2020, 2, 29, 23, 59, Some(58))));
        assert_eq!(dlr.done_date, Some(date(2020, 3, 1, 0, 0, Some(1))));
        assert_eq!(dlr.state, DlrState::Expired);
    }

    #[test]
    fn invalid_dates_drop_only_that_field() {
        let dlr =
            text("id:42 submit date:1913131219 done date:2102291200 stat:DELIVRD err:000 text:t")
                .unwrap();
        assert_eq!(dlr.submit_date, None, "month 13");
        assert_eq!(dlr.done_date, None, "2021 is not a leap year");
        assert_eq!(dlr.state, DlrState::Delivered);
        for bad in [
            "1911132419",
            "1911131260",
            "191113121960",
            "1911001219",
            "1904311219",
            "19111312",
            "19111312190",
            "19111312x9",
        ] {
            assert_eq!(DlrDate::parse(bad), None, "{bad}");
        }
        assert!(
            DlrDate::parse("0002290000").is_some(),
            "2000 is a leap year"
        );
    }

    #[test]
    fn missing_text_and_counts() {
        let dlr = text("id:77 stat:ENROUTE").unwrap();
        assert_eq!(dlr.state, DlrState::Enroute);
        assert_eq!(dlr.text, None);
        assert_eq!(dlr.submitted, None);
        assert_eq!(dlr.error, None);
        // An empty text: field is the same as none.
        assert_eq!(text("id:77 stat:ENROUTE text:").unwrap().text, None);
    }

    #[test]
    fn empty_values_do_not_swallow_the_next_key() {
        let dlr = text("id:9 err: stat:DELIVRD text:").unwrap();
        assert_eq!(dlr.error, None);
        assert_eq!(dlr.state, DlrState::Delivered);
    }

    #[test]
    fn text_takes_the_rest_of_the_line_only() {
        let dlr = text("stat:DELIVRD text:id:999 sub:5 stat:UNDELIV\r\nid:123 err:7").unwrap();
        assert_eq!(dlr.text.as_deref(), Some("id:999 sub:5 stat:UNDELIV"));
        assert_eq!(dlr.message_id, "123");
        assert_eq!(dlr.state, DlrState::Delivered);
        assert_eq!(dlr.submitted, None);
        assert_eq!(dlr.error.as_deref(), Some("7"));
    }

    #[test]
    fn keys_only_at_word_start() {
        let err = text("paid:1 xstat:DELIVRD").unwrap_err();
        assert_eq!(err, DlrError::MissingMessageIdAndState);
    }

    #[test]
    fn tlv_only_with_empty_short_message() {
        let dlr = parse_dlr(Some("1A2B\0"), Some(2), Some([3, 0x00, 0x22]), b"").unwrap();
        assert_eq!(dlr.message_id, "1A2B");
        assert_eq!(dlr.state, DlrState::Delivered);
        assert_eq!(dlr.network_error, Some((3, 0x22)));
        assert_eq!(dlr.text, None);
        assert_eq!(dlr.submit_date, None);
    }

    #[test]
    fn tlvs_override_text() {
        let dlr = parse_dlr(
            Some("ABC"),
            Some(5),
            None,
            b"id:123 sub:001 dlvrd:001 submit date:1911131219 done date:1911131220 stat:DELIVRD err:000 text:hi",
        )
        .unwrap();
        assert_eq!(dlr.message_id, "ABC");
        assert_eq!(dlr.state, DlrState::Undeliverable);
        // The rest still comes from the text.
        assert_eq!(dlr.submitted, Some(1));
        assert_eq!(dlr.done_date, Some(date(2019, 11, 13, 12, 20, None)));
        assert_eq!(dlr.text.as_deref(), Some("hi"));
    }

    #[test]
    fn empty_or_unknown_tlvs_fall_back_to_text() {
        let dlr = parse_dlr(Some(" \0"), Some(0), None, b"id:55 stat:DELIVRD").unwrap();
        assert_eq!(dlr.message_id, "55");
        assert_eq!(dlr.state, DlrState::Delivered);
        let err = parse_dlr(Some("55"), Some(42), None, b"").unwrap_err();
        assert_eq!(err, DlrError::UnrecognisedState("message_state 42".into()));
    }

    #[test]
    fn garbage_says_what_is_missing() {
        let err = text("hello world, this is not a receipt").unwrap_err();
        assert_eq!(err, DlrError::MissingMessageIdAndState);
        let msg = err.to_string();
        assert!(msg.contains("message id") && msg.contains("state"), "{msg}");

        assert_eq!(text("id:123 err:000").unwrap_err(), DlrError::MissingState);
        assert_eq!(
            text("stat:DELIVRD").unwrap_err(),
            DlrError::MissingMessageId
        );
        assert_eq!(
            parse_dlr(None, Some(2), None, b"").unwrap_err(),
            DlrError::MissingMessageId
        );
        assert_eq!(
            text("id:1 stat:WHATEVER").unwrap_err(),
            DlrError::UnrecognisedState("WHATEVER".into())
        );
        assert!(text("id:1 stat:WHATEVER")
            .unwrap_err()
            .to_string()
            .contains("WHATEVER"));
    }

    #[test]
    fn non_utf8_bytes_are_replaced() {
        let dlr = parse_dlr(None, None, None, b"id:7 stat:DELIVRD text:caf\xe9 \xff\xfe").unwrap();
        assert_eq!(dlr.message_id, "7");
        assert_eq!(dlr.text.as_deref(), Some("caf\u{FFFD} \u{FFFD}\u{FFFD}"));
    }

    #[test]
    fn nul_terminated_and_padded() {
        let dlr = parse_dlr(None, None, None, b"id:7 stat:DELIVRD text:abc\0\0\0garbage").unwrap();
        assert_eq!(dlr.text.as_deref(), Some("abc"));
        let dlr = parse_dlr(None, None, None, b"id:7\0stat:DELIVRD\0").unwrap();
        assert_eq!(dlr.state, DlrState::Delivered);
    }

    #[test]
    fn ucs2_encoded_receipt() {
        let bytes: Vec<u8> = "id:99 stat:UNDELIV text:\u{41F}\u{440}\u{438}"
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect();
        let dlr = parse_dlr(None, None, None, &bytes).unwrap();
        assert_eq!(dlr.message_id, "99");
        assert_eq!(dlr.state, DlrState::Undeliverable);
        assert_eq!(dlr.text.as_deref(), Some("\u{41F}\u{440}\u{438}"));
    }

    #[test]
    fn stat_spellings() {
        let cases = [
            ("DELIVRD", DlrState::Delivered),
            ("delivered", DlrState::Delivered),
            ("EXPIRED", DlrState::Expired),
            ("DELETED", DlrState::Deleted),
            ("UNDELIV", DlrState::Undeliverable),
            ("Undeliverable", DlrState::Undeliverable),
            ("FAILED", DlrState::Undeliverable),
            ("ACCEPTD", DlrState::Accepted),
            ("UNKNOWN", DlrState::Unknown),
            ("REJECTD", DlrState::Rejected),
            ("rejected", DlrState::Rejected),
            ("ENROUTE", DlrState::Enroute),
            ("skipped", DlrState::Skipped),
            (" 2 ", DlrState::Delivered),
        ];
        for (s, state) in cases {
            assert_eq!(DlrState::from_stat(s), Some(state), "{s}");
        }
        assert_eq!(DlrState::from_stat(""), None);
        assert_eq!(DlrState::from_stat("0"), None);
        assert_eq!(DlrState::from_stat("DELIVRDX"), None);
        for state in DlrState::ALL {
            assert_eq!(state.as_stat().len(), 7);
            assert_eq!(DlrState::from_stat(state.as_stat()), Some(state));
            assert_eq!(
                DlrState::from_message_state(state.message_state()),
                Some(state)
            );
            assert_eq!(state.to_string(), state.as_stat());
        }
        assert_eq!(DlrState::from_message_state(0), None);
        assert_eq!(DlrState::from_message_state(10), None);
    }

    #[test]
    fn finality_and_success() {
        assert!(!DlrState::Enroute.is_final());
        for state in &DlrState::ALL[1..] {
            assert!(state.is_final(), "{state:?}");
        }
        assert!(DlrState::Delivered.is_success());
        assert!(DlrState::ALL
            .iter()
            .filter(|s| s.is_success())
            .eq([&DlrState::Delivered]));
    }

    #[test]
    fn receipt_esm_classes() {
        for esm in [0x04, 0x08, 0x10, 0x20, 0x44, 0x84, 0x07, 0x23] {
            assert!(is_receipt(esm), "{esm:#04x}");
        }
        for esm in [0x00, 0x03, 0x40, 0x80, 0x0C, 0x18, 0x3C, 0x28] {
            assert!(!is_receipt(esm), "{esm:#04x}");
        }
    }

    #[test]
    fn id_matching_examples() {
        assert!(ids_match("1A2B", "6699"));
        assert!(ids_match("6699", "1a2b"));
        assert!(ids_match("000123", "123"));
        assert!(ids_match("ABCDEF", "abcdef"));
        assert!(ids_match(" 00ff\0", "0xFF"));
        assert!(ids_match("255", "0x00ff"));
        assert!(ids_match(
            "5EF3C6C5-9F6A-4B8E-8A0A-1F9F8F0E0D11",
            "5ef3c6c5-9f6a-4b8e-8a0a-1f9f8f0e0d11"
        ));
        assert!(ids_match("MSG-0001", "msg-0001"));
        assert!(ids_match("0", "000"));
        assert!(!ids_match("1A2B", "6698"));
        assert!(!ids_match("abc", "abd"));
        assert!(!ids_match("", ""));
        assert!(!ids_match("  ", "0"));
    }

    #[test]
    fn keys_and_primary() {
        assert_eq!(message_id_keys("0006699").as_slice(), ["1a2b", "6699"]);
        assert_eq!(message_id_keys("7").as_slice(), ["7"]);
        assert_eq!(message_id_keys("00AbC").as_slice(), ["abc"]);
        assert_eq!(message_id_keys("x-01").as_slice(), ["x-01"]);
        assert_eq!(message_id_keys("007-Bond").as_slice(), ["7-bond"]);
        assert!(message_id_keys(" \0 ").is_empty());
        assert_eq!(message_id_keys(" \0 ").primary(), None);
        // Too large for u128: only the hex reading remains.
        let huge = "9".repeat(50);
        assert_eq!(message_id_keys(&huge).as_slice(), [huge]);

        assert_eq!(normalize_message_id("6699"), "1a2b");
        assert_eq!(normalize_message_id("001A2B"), "1a2b");
        assert_eq!(normalize_message_id(""), "");
        assert_eq!(
            normalize_message_id("5EF3C6C5-9F6A-4B8E-8A0A-1F9F8F0E0D11"),
            "5ef3c6c5-9f6a-4b8e-8a0a-1f9f8f0e0d11"
        );
        // Same-format ids agree on the primary key, which disambiguates
        // digits-only false matches ("16" vs "10" share the key "10").
        assert!(ids_match("16", "10"));
        assert_ne!(normalize_message_id("16"), normalize_message_id("10"));
    }

    #[test]
    fn display_formats_appendix_b() {
        let dlr = Dlr {
            message_id: "0123456789".into(),
            state: DlrState::Delivered,
            submitted: Some(1),
            delivered: Some(1),
            submit_date: Some(date(2006, 10, 19, 10, 18, None)),
            done_date: Some(date(2006, 10, 19, 10, 20, Some(5))),
            error: Some("000".into()),
            network_error: None,
            text: Some("Hello".into()),
        };
        assert_eq!(
            dlr.to_string(),
            "id:0123456789 sub:001 dlvrd:001 submit date:0610191018 \
             done date:061019102005 stat:DELIVRD err:000 text:Hello"
        );
    }

    fn arb_date() -> impl Strategy<Value = DlrDate> {
        (
            0u16..100,
            1u8..=12,
            1u8..=31,
            0u8..24,
            0u8..60,
            proptest::option::of(0u8..60),
        )
            .prop_map(|(yy, month, day, hour, minute, second)| {
                let year = 2000 + yy;
                DlrDate {
                    year,
                    month,
                    day: day.min(days_in_month(year, month)),
                    hour,
                    minute,
                    second,
                }
            })
    }

    fn arb_dlr() -> impl Strategy<Value = Dlr> {
        (
            "[0-9A-Za-z][0-9A-Za-z-]{0,35}",
            proptest::sample::select(DlrState::ALL.to_vec()),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u32>()),
            proptest::option::of(arb_date()),
            proptest::option::of(arb_date()),
            proptest::option::of("[0-9A-Za-z]{1,3}"),
            proptest::option::of("[!-~]([ -~]{0,30}[!-~])?"),
        )
            .prop_map(
                |(message_id, state, submitted, delivered, submit_date, done_date, error, text)| {
                    Dlr {
                        message_id,
                        state,
                        submitted,
                        delivered,
                        submit_date,
                        done_date,
                        error,
                        network_error: None,
                        text,
                    }
                },
            )
    }

    /// Receipt-shaped noise: key fragments, values and separators in random order.
    fn arb_receipt_noise() -> impl Strategy<Value = Vec<u8>> {
        let piece = proptest::sample::select(vec![
            "id:",
            "ID :",
            "sub:",
            "dlvrd:",
            "submit date:",
            "done_date:",
            "submit",
            " date:",
            "stat:",
            "err:",
            "text:",
            "Text:",
            "DELIVRD",
            "UNDELIV",
            "1911131219",
            "191113121959",
            "0",
            "123",
            "ABC",
            " ",
            "  ",
            "\n",
            "\r",
            "\t",
            "\0",
            ":",
            "_",
            "\u{e9}",
            "\u{FFFD}",
        ]);
        proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat().into_bytes())
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            id in proptest::option::of(".{0,20}"),
            state in proptest::option::of(any::<u8>()),
            net in proptest::option::of(any::<[u8; 3]>()),
        ) {
            let _ = parse_dlr(id.as_deref(), state, net, &bytes);
        }

        #[test]
        fn parse_never_panics_on_receipt_noise(bytes in arb_receipt_noise()) {
            let _ = parse_dlr(None, None, None, &bytes);
            let utf16: Vec<u8> = String::from_utf8_lossy(&bytes)
                .encode_utf16()
                .flat_map(u16::to_be_bytes)
                .collect();
            let _ = parse_dlr(None, None, None, &utf16);
        }

        #[test]
        fn format_then_parse_round_trips(dlr in arb_dlr()) {
            let formatted = dlr.to_string();
            let parsed = parse_dlr(None, None, None, formatted.as_bytes());
            prop_assert_eq!(parsed, Ok(dlr), "{}", formatted);
        }

        #[test]
        fn date_display_round_trips(d in arb_date()) {
            prop_assert_eq!(DlrDate::parse(&d.to_string()), Some(d));
        }

        #[test]
        fn decimal_and_hex_renderings_match(n in any::<u64>(), za in 0usize..4, zb in 0usize..4) {
            let dec = format!("{n}");
            let hex = format!("{n:X}");
            prop_assert!(ids_match(&dec, &hex), "{} vs {}", dec, hex);
            prop_assert!(ids_match(&hex, &dec));
            let lower_hex = format!("{n:x}");
            prop_assert!(ids_match(&lower_hex, &dec));
            let dec0 = format!("{}{dec}", "0".repeat(za));
            let hex0 = format!("{}{hex}", "0".repeat(zb));
            prop_assert!(ids_match(&dec0, &hex0), "{} vs {}", dec0, hex0);
            prop_assert!(ids_match(&dec0, &dec));
            prop_assert!(ids_match(&hex0, &hex));
        }

        #[test]
        fn ids_match_is_reflexive_and_symmetric(a in ".{0,40}", b in "[0-9a-fA-F]{0,10}") {
            prop_assert_eq!(ids_match(&a, &a), !trim_ws_nul(&a).is_empty());
            prop_assert_eq!(ids_match(&a, &b), ids_match(&b, &a));
        }
    }
}
