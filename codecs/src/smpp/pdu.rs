//! SMPP PDUs: typed bodies, decoding one PDU from its own frame, encoding.

use super::command::{CommandId, CommandStatus};
use super::frame::HEADER_LEN;
use super::tlv::Tlvs;
use super::wire::{put_cstr, COctets, FieldError, Reader};
use bytes::{BufMut, Bytes, BytesMut};

/// SMPP interface version 3.4 as sent in binds.
pub const INTERFACE_VERSION_34: u8 = 0x34;
/// SMPP interface version 5.0.
pub const INTERFACE_VERSION_50: u8 = 0x50;

/// A type-of-number, numbering-plan and address triple.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Address {
    /// Type of number (TON).
    pub ton: u8,
    /// Numbering plan indicator (NPI).
    pub npi: u8,
    /// The address digits or alphanumeric sender.
    pub addr: COctets,
}

impl Address {
    /// An international E.164 number (TON 1, NPI 1), digits without `+`.
    pub fn international(digits: &str) -> Self {
        Address {
            ton: 1,
            npi: 1,
            addr: digits.trim_start_matches('+').into(),
        }
    }

    /// A sender address with the TON/NPI an SMSC expects for it: an
    /// international number (`+` or more than 8 digits: TON 1, NPI 1), a
    /// short code (up to 8 digits: TON 3 network-specific, NPI 0), or an
    /// alphanumeric sender id (TON 5, NPI 0).
    pub fn sender(from: &str) -> Self {
        let digits = from.trim_start_matches('+');
        if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) {
            if from.starts_with('+') || digits.len() > 8 {
                Address::international(digits)
            } else {
                Address::new(3, 0, digits)
            }
        } else {
            Address::new(5, 0, from)
        }
    }

    /// An address with explicit TON and NPI.
    pub fn new(ton: u8, npi: u8, addr: &str) -> Self {
        Address {
            ton,
            npi,
            addr: addr.into(),
        }
    }

    fn read(r: &mut Reader, names: [&'static str; 3]) -> Result<Self, FieldError> {
        Ok(Address {
            ton: r.u8(names[0])?,
            npi: r.u8(names[1])?,
            addr: r.cstr(names[2])?,
        })
    }

    fn write(&self, out: &mut BytesMut) {
        out.put_u8(self.ton);
        out.put_u8(self.npi);
        put_cstr(out, &self.addr);
    }
}

/// bind_transmitter / bind_receiver / bind_transceiver body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bind {
    /// ESME identity.
    pub system_id: COctets,
    /// Password.
    pub password: COctets,
    /// System type (often empty).
    pub system_type: COctets,
    /// Interface version, 0x34 for SMPP 3.4.
    pub interface_version: u8,
    /// TON, NPI and address range of the ESME.
    pub address_range: Address,
}

/// Body of every bind response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BindResp {
    /// SMSC identity.
    pub system_id: COctets,
    /// Optional parameters (sc_interface_version).
    pub tlvs: Tlvs,
}

/// outbind body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outbind {
    /// SMSC identity.
    pub system_id: COctets,
    /// Password.
    pub password: COctets,
}

/// submit_sm and deliver_sm body (the two share one layout).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubmitSm {
    /// service_type.
    pub service_type: COctets,
    /// Source address.
    pub source: Address,
    /// Destination address.
    pub dest: Address,
    /// esm_class (UDHI 0x40, receipt types 0x04…).
    pub esm_class: u8,
    /// protocol_id.
    pub protocol_id: u8,
    /// priority_flag.
    pub priority_flag: u8,
    /// schedule_delivery_time (empty for immediate).
    pub schedule_delivery_time: COctets,
    /// validity_period (empty for the SMSC default).
    pub validity_period: COctets,
    /// registered_delivery (0x01 asks for a final receipt).
    pub registered_delivery: u8,
    /// replace_if_present_flag.
    pub replace_if_present_flag: u8,
    /// data_coding.
    pub data_coding: u8,
    /// sm_default_msg_id.
    pub sm_default_msg_id: u8,
    /// short_message (at most 255 octets; longer text goes in message_payload).
    pub short_message: Bytes,
    /// Optional parameters.
    pub tlvs: Tlvs,
}

/// deliver_sm has the same layout as submit_sm.
pub type DeliverSm = SubmitSm;

/// submit_sm_resp, deliver_sm_resp and data_sm_resp body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageIdResp {
    /// The SMSC's message id (empty in deliver_sm_resp and error responses).
    pub message_id: COctets,
    /// Optional parameters (SMPP 5.0 and data_sm_resp).
    pub tlvs: Tlvs,
}

/// data_sm body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataSm {
    /// service_type.
    pub service_type: COctets,
    /// Source address.
    pub source: Address,
    /// Destination address.
    pub dest: Address,
    /// esm_class.
    pub esm_class: u8,
    /// registered_delivery.
    pub registered_delivery: u8,
    /// data_coding.
    pub data_coding: u8,
    /// Optional parameters (the text rides in message_payload).
    pub tlvs: Tlvs,
}

impl From<DataSm> for SubmitSm {
    /// The short-message view of a data_sm (its text rides in
    /// message_payload), so one code path handles both.
    fn from(d: DataSm) -> Self {
        SubmitSm {
            service_type: d.service_type,
            source: d.source,
            dest: d.dest,
            esm_class: d.esm_class,
            registered_delivery: d.registered_delivery,
            data_coding: d.data_coding,
            tlvs: d.tlvs,
            ..Default::default()
        }
    }
}

/// query_sm body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuerySm {
    /// Message to query.
    pub message_id: COctets,
    /// Source address used in the original submit.
    pub source: Address,
}

/// query_sm_resp body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuerySmResp {
    /// Message id.
    pub message_id: COctets,
    /// final_date (empty while not final).
    pub final_date: COctets,
    /// message_state.
    pub message_state: u8,
    /// Network error code.
    pub error_code: u8,
}

/// cancel_sm body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CancelSm {
    /// service_type.
    pub service_type: COctets,
    /// Message to cancel (empty to cancel by address).
    pub message_id: COctets,
    /// Source address.
    pub source: Address,
    /// Destination address.
    pub dest: Address,
}

/// replace_sm body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplaceSm {
    /// Message to replace.
    pub message_id: COctets,
    /// Source address used in the original submit.
    pub source: Address,
    /// schedule_delivery_time.
    pub schedule_delivery_time: COctets,
    /// validity_period.
    pub validity_period: COctets,
    /// registered_delivery.
    pub registered_delivery: u8,
    /// sm_default_msg_id.
    pub sm_default_msg_id: u8,
    /// New short_message.
    pub short_message: Bytes,
    /// Optional parameters (SMPP 5.0 allows message_payload here).
    pub tlvs: Tlvs,
}

/// alert_notification body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertNotification {
    /// The mobile that became available.
    pub source: Address,
    /// The ESME address that asked to be alerted.
    pub esme: Address,
    /// Optional parameters (ms_availability_status).
    pub tlvs: Tlvs,
}

/// The body of a PDU; the variant decides the command_id.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // PDUs are built once and moved rarely; boxing would cost an allocation per message
pub enum Body {
    /// bind_transmitter.
    BindTransmitter(Bind),
    /// bind_transmitter_resp.
    BindTransmitterResp(BindResp),
    /// bind_receiver.
    BindReceiver(Bind),
    /// bind_receiver_resp.
    BindReceiverResp(BindResp),
    /// bind_transceiver.
    BindTransceiver(Bind),
    /// bind_transceiver_resp.
    BindTransceiverResp(BindResp),
    /// outbind.
    Outbind(Outbind),
    /// unbind.
    Unbind,
    /// unbind_resp.
    UnbindResp,
    /// enquire_link.
    EnquireLink,
    /// enquire_link_resp.
    EnquireLinkResp,
    /// generic_nack.
    GenericNack,
    /// submit_sm.
    SubmitSm(SubmitSm),
    /// submit_sm_resp.
    SubmitSmResp(MessageIdResp),
    /// deliver_sm.
    DeliverSm(DeliverSm),
    /// deliver_sm_resp.
    DeliverSmResp(MessageIdResp),
    /// data_sm.
    DataSm(DataSm),
    /// data_sm_resp.
    DataSmResp(MessageIdResp),
    /// query_sm.
    QuerySm(QuerySm),
    /// query_sm_resp.
    QuerySmResp(QuerySmResp),
    /// cancel_sm.
    CancelSm(CancelSm),
    /// cancel_sm_resp.
    CancelSmResp,
    /// replace_sm.
    ReplaceSm(ReplaceSm),
    /// replace_sm_resp.
    ReplaceSmResp,
    /// alert_notification.
    AlertNotification(AlertNotification),
}

impl Body {
    /// The command_id this body is sent with.
    pub fn command_id(&self) -> CommandId {
        use CommandId as C;
        match self {
            Body::BindTransmitter(_) => C::BindTransmitter,
            Body::BindTransmitterResp(_) => C::BindTransmitterResp,
            Body::BindReceiver(_) => C::BindReceiver,
            Body::BindReceiverResp(_) => C::BindReceiverResp,
            Body::BindTransceiver(_) => C::BindTransceiver,
            Body::BindTransceiverResp(_) => C::BindTransceiverResp,
            Body::Outbind(_) => C::Outbind,
            Body::Unbind => C::Unbind,
            Body::UnbindResp => C::UnbindResp,
            Body::EnquireLink => C::EnquireLink,
            Body::EnquireLinkResp => C::EnquireLinkResp,
            Body::GenericNack => C::GenericNack,
            Body::SubmitSm(_) => C::SubmitSm,
            Body::SubmitSmResp(_) => C::SubmitSmResp,
            Body::DeliverSm(_) => C::DeliverSm,
            Body::DeliverSmResp(_) => C::DeliverSmResp,
            Body::DataSm(_) => C::DataSm,
            Body::DataSmResp(_) => C::DataSmResp,
            Body::QuerySm(_) => C::QuerySm,
            Body::QuerySmResp(_) => C::QuerySmResp,
            Body::CancelSm(_) => C::CancelSm,
            Body::CancelSmResp => C::CancelSmResp,
            Body::ReplaceSm(_) => C::ReplaceSm,
            Body::ReplaceSmResp => C::ReplaceSmResp,
            Body::AlertNotification(_) => C::AlertNotification,
        }
    }
}

/// One SMPP PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    /// command_status (zero in requests).
    pub status: CommandStatus,
    /// sequence_number.
    pub sequence: u32,
    /// The typed body.
    pub body: Body,
}

/// Why a frame could not be decoded as a PDU. The header is kept so the
/// session can answer with a generic_nack carrying the same sequence number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode PDU command_id 0x{command_id:08X} sequence {sequence}: {kind}")]
pub struct PduError {
    /// command_id from the header.
    pub command_id: u32,
    /// command_status from the header.
    pub status: u32,
    /// sequence_number from the header.
    pub sequence: u32,
    /// What was wrong.
    pub kind: PduErrorKind,
}

/// What was wrong with a PDU.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PduErrorKind {
    /// command_id is not one this codec knows.
    #[error("unknown command_id")]
    UnknownCommand,
    /// A field could not be read.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// The frame is shorter than a header (only when called outside the framer).
    #[error("frame of {0} bytes is shorter than the 16-byte header")]
    ShortFrame(usize),
}

impl PduError {
    /// The command_status to put in the generic_nack for this error.
    pub fn nack_status(&self) -> CommandStatus {
        match &self.kind {
            PduErrorKind::UnknownCommand => CommandStatus::ESME_RINVCMDID,
            PduErrorKind::Field(FieldError::SmLength { .. }) => CommandStatus::ESME_RINVMSGLEN,
            PduErrorKind::Field(_) | PduErrorKind::ShortFrame(_) => CommandStatus::ESME_RINVCMDLEN,
        }
    }

    /// The command_id as a known command, if it is one.
    pub fn command(&self) -> Option<CommandId> {
        CommandId::from_u32(self.command_id)
    }
}

/// Why a PDU could not be encoded (the caller built an impossible PDU).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// short_message longer than 255 octets: use message_payload instead.
    #[error("short_message is {0} octets; at most 255 fit (use message_payload for longer)")]
    ShortMessageTooLong(usize),
    /// A C-Octet String contains a NUL, which would corrupt the PDU.
    #[error("field `{0}` contains a NUL byte")]
    InteriorNul(&'static str),
    /// A TLV value longer than 65535 octets.
    #[error("TLV 0x{0:04X} value exceeds 65535 octets")]
    TlvTooLong(u16),
}

impl Pdu {
    /// A request or response with status OK.
    pub fn new(sequence: u32, body: Body) -> Self {
        Pdu {
            status: CommandStatus::ESME_ROK,
            sequence,
            body,
        }
    }

    /// A response with a status.
    pub fn with_status(sequence: u32, status: CommandStatus, body: Body) -> Self {
        Pdu {
            status,
            sequence,
            body,
        }
    }

    /// The command_id.
    pub fn command_id(&self) -> CommandId {
        self.body.command_id()
    }

    /// Decodes one PDU from a complete frame (header included), as cut by
    /// [`super::frame::FrameDecoder`]. Bytes after the body that do not form a
    /// TLV are ignored.
    pub fn decode(frame: Bytes) -> Result<Pdu, PduError> {
        if frame.len() < HEADER_LEN {
            return Err(PduError {
                command_id: 0,
                status: 0,
                sequence: 0,
                kind: PduErrorKind::ShortFrame(frame.len()),
            });
        }
        let h = &frame[..HEADER_LEN];
        let command_id = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
        let status = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
        let sequence = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
        let err = |kind| PduError {
            command_id,
            status,
            sequence,
            kind,
        };
        let cmd = CommandId::from_u32(command_id).ok_or(err(PduErrorKind::UnknownCommand))?;
        let body_bytes = frame.slice(HEADER_LEN..);
        let body = match decode_body(cmd, body_bytes) {
            Ok(b) => b,
            // Error responses often carry no body, a single NUL or garbage:
            // the status is what matters, so fall back to an empty body.
            Err(_) if cmd.is_response() && status != 0 => empty_body(cmd),
            Err(e) => return Err(err(PduErrorKind::Field(e))),
        };
        Ok(Pdu {
            status: CommandStatus(status),
            sequence,
            body,
        })
    }

    /// Appends the encoded PDU to `out`.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        let start = out.len();
        out.reserve(HEADER_LEN + 64);
        out.put_u32(0); // command_length, patched below
        out.put_u32(self.command_id().as_u32());
        out.put_u32(self.status.0);
        out.put_u32(self.sequence);
        if let Err(e) = encode_body(&self.body, out) {
            out.truncate(start);
            return Err(e);
        }
        let len = (out.len() - start) as u32;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    /// Encodes into a fresh buffer.
    pub fn to_bytes(&self) -> Result<Bytes, EncodeError> {
        let mut out = BytesMut::with_capacity(128);
        self.encode(&mut out)?;
        Ok(out.freeze())
    }
}

fn empty_body(cmd: CommandId) -> Body {
    use CommandId as C;
    match cmd {
        C::BindTransmitterResp => Body::BindTransmitterResp(BindResp::default()),
        C::BindReceiverResp => Body::BindReceiverResp(BindResp::default()),
        C::BindTransceiverResp => Body::BindTransceiverResp(BindResp::default()),
        C::SubmitSmResp => Body::SubmitSmResp(MessageIdResp::default()),
        C::DeliverSmResp => Body::DeliverSmResp(MessageIdResp::default()),
        C::DataSmResp => Body::DataSmResp(MessageIdResp::default()),
        C::QuerySmResp => Body::QuerySmResp(QuerySmResp::default()),
        C::UnbindResp => Body::UnbindResp,
        C::EnquireLinkResp => Body::EnquireLinkResp,
        C::CancelSmResp => Body::CancelSmResp,
        C::ReplaceSmResp => Body::ReplaceSmResp,
        _ => Body::GenericNack,
    }
}

fn read_bind(r: &mut Reader) -> Result<Bind, FieldError> {
    Ok(Bind {
        system_id: r.cstr("system_id")?,
        password: r.cstr("password")?,
        system_type: r.cstr("system_type")?,
        interface_version: r.u8("interface_version")?,
        address_range: Address::read(r, ["addr_ton", "addr_npi", "address_range"])?,
    })
}

fn read_message_id_resp(r: &mut Reader) -> MessageIdResp {
    let message_id = r.cstr_last();
    MessageIdResp {
        message_id,
        tlvs: Tlvs::decode(r.rest()).0,
    }
}

const SRC: [&str; 3] = ["source_addr_ton", "source_addr_npi", "source_addr"];
const DST: [&str; 3] = ["dest_addr_ton", "dest_addr_npi", "destination_addr"];

fn read_short_message(r: &mut Reader) -> Result<Bytes, FieldError> {
    let sm_length = r.u8("sm_length")? as usize;
    let available = r.remaining();
    if sm_length > available {
        return Err(FieldError::SmLength {
            sm_length,
            available,
        });
    }
    r.take(sm_length, "short_message")
}

fn read_submit(r: &mut Reader) -> Result<SubmitSm, FieldError> {
    Ok(SubmitSm {
        service_type: r.cstr("service_type")?,
        source: Address::read(r, SRC)?,
        dest: Address::read(r, DST)?,
        esm_class: r.u8("esm_class")?,
        protocol_id: r.u8("protocol_id")?,
        priority_flag: r.u8("priority_flag")?,
        schedule_delivery_time: r.cstr("schedule_delivery_time")?,
        validity_period: r.cstr("validity_period")?,
        registered_delivery: r.u8("registered_delivery")?,
        replace_if_present_flag: r.u8("replace_if_present_flag")?,
        data_coding: r.u8("data_coding")?,
        sm_default_msg_id: r.u8("sm_default_msg_id")?,
        short_message: read_short_message(r)?,
        tlvs: Tlvs::decode(r.rest()).0,
    })
}

fn decode_body(cmd: CommandId, body: Bytes) -> Result<Body, FieldError> {
    use CommandId as C;
    let mut r = Reader::new(body);
    let r = &mut r;
    Ok(match cmd {
        C::BindTransmitter => Body::BindTransmitter(read_bind(r)?),
        C::BindReceiver => Body::BindReceiver(read_bind(r)?),
        C::BindTransceiver => Body::BindTransceiver(read_bind(r)?),
        C::BindTransmitterResp | C::BindReceiverResp | C::BindTransceiverResp => {
            let resp = BindResp {
                system_id: r.cstr_last(),
                tlvs: Tlvs::decode(r.rest()).0,
            };
            match cmd {
                C::BindTransmitterResp => Body::BindTransmitterResp(resp),
                C::BindReceiverResp => Body::BindReceiverResp(resp),
                _ => Body::BindTransceiverResp(resp),
            }
        }
        C::Outbind => Body::Outbind(Outbind {
            system_id: r.cstr("system_id")?,
            password: r.cstr_last(),
        }),
        C::Unbind => Body::Unbind,
        C::UnbindResp => Body::UnbindResp,
        C::EnquireLink => Body::EnquireLink,
        C::EnquireLinkResp => Body::EnquireLinkResp,
        C::GenericNack => Body::GenericNack,
        C::SubmitSm => Body::SubmitSm(read_submit(r)?),
        C::DeliverSm => Body::DeliverSm(read_submit(r)?),
        C::SubmitSmResp => Body::SubmitSmResp(read_message_id_resp(r)),
        C::DeliverSmResp => Body::DeliverSmResp(read_message_id_resp(r)),
        C::DataSmResp => Body::DataSmResp(read_message_id_resp(r)),
        C::DataSm => Body::DataSm(DataSm {
            service_type: r.cstr("service_type")?,
            source: Address::read(r, SRC)?,
            dest: Address::read(r, DST)?,
            esm_class: r.u8("esm_class")?,
            registered_delivery: r.u8("registered_delivery")?,
            data_coding: r.u8("data_coding")?,
            tlvs: Tlvs::decode(r.rest()).0,
        }),
        C::QuerySm => Body::QuerySm(QuerySm {
            message_id: r.cstr("message_id")?,
            source: Address::read(r, SRC)?,
        }),
        C::QuerySmResp => Body::QuerySmResp(QuerySmResp {
            message_id: r.cstr("message_id")?,
            final_date: r.cstr("final_date")?,
            message_state: r.u8("message_state")?,
            error_code: r.u8("error_code")?,
        }),
        C::CancelSm => Body::CancelSm(CancelSm {
            service_type: r.cstr("service_type")?,
            message_id: r.cstr("message_id")?,
            source: Address::read(r, SRC)?,
            dest: Address::read(r, DST)?,
        }),
        C::CancelSmResp => Body::CancelSmResp,
        C::ReplaceSm => Body::ReplaceSm(ReplaceSm {
            message_id: r.cstr("message_id")?,
            source: Address::read(r, SRC)?,
            schedule_delivery_time: r.cstr("schedule_delivery_time")?,
            validity_period: r.cstr("validity_period")?,
            registered_delivery: r.u8("registered_delivery")?,
            sm_default_msg_id: r.u8("sm_default_msg_id")?,
            short_message: read_short_message(r)?,
            tlvs: Tlvs::decode(r.rest()).0,
        }),
        C::ReplaceSmResp => Body::ReplaceSmResp,
        C::AlertNotification => Body::AlertNotification(AlertNotification {
            source: Address::read(r, SRC)?,
            esme: Address::read(r, ["esme_addr_ton", "esme_addr_npi", "esme_addr"])?,
            tlvs: Tlvs::decode(r.rest()).0,
        }),
    })
}

fn cstr(out: &mut BytesMut, s: &COctets, field: &'static str) -> Result<(), EncodeError> {
    if s.as_bytes().contains(&0) {
        return Err(EncodeError::InteriorNul(field));
    }
    put_cstr(out, s);
    Ok(())
}

fn addr(out: &mut BytesMut, a: &Address, field: &'static str) -> Result<(), EncodeError> {
    if a.addr.as_bytes().contains(&0) {
        return Err(EncodeError::InteriorNul(field));
    }
    a.write(out);
    Ok(())
}

fn tlvs(out: &mut BytesMut, t: &Tlvs) -> Result<(), EncodeError> {
    use super::tlv::Tlv;
    for tlv in &t.0 {
        let len = match tlv {
            Tlv::Other { value, .. }
            | Tlv::MESSAGE_PAYLOAD(value)
            | Tlv::SOURCE_SUBADDRESS(value)
            | Tlv::DEST_SUBADDRESS(value)
            | Tlv::CALLBACK_NUM(value)
            | Tlv::CALLBACK_NUM_ATAG(value) => value.len(),
            Tlv::RECEIPTED_MESSAGE_ID(s) | Tlv::ADDITIONAL_STATUS_INFO_TEXT(s) => {
                if s.as_bytes().contains(&0) {
                    return Err(EncodeError::InteriorNul("TLV C-Octet String"));
                }
                s.len() + 1
            }
            _ => 0,
        };
        if len > u16::MAX as usize {
            return Err(EncodeError::TlvTooLong(tlv.tag()));
        }
    }
    t.encode(out);
    Ok(())
}

fn short_message(out: &mut BytesMut, sm: &Bytes) -> Result<(), EncodeError> {
    if sm.len() > 255 {
        return Err(EncodeError::ShortMessageTooLong(sm.len()));
    }
    out.put_u8(sm.len() as u8);
    out.put_slice(sm);
    Ok(())
}

fn encode_body(body: &Body, out: &mut BytesMut) -> Result<(), EncodeError> {
    match body {
        Body::BindTransmitter(b) | Body::BindReceiver(b) | Body::BindTransceiver(b) => {
            cstr(out, &b.system_id, "system_id")?;
            cstr(out, &b.password, "password")?;
            cstr(out, &b.system_type, "system_type")?;
            out.put_u8(b.interface_version);
            addr(out, &b.address_range, "address_range")?;
        }
        Body::BindTransmitterResp(b) | Body::BindReceiverResp(b) | Body::BindTransceiverResp(b) => {
            cstr(out, &b.system_id, "system_id")?;
            tlvs(out, &b.tlvs)?;
        }
        Body::Outbind(o) => {
            cstr(out, &o.system_id, "system_id")?;
            cstr(out, &o.password, "password")?;
        }
        Body::Unbind
        | Body::UnbindResp
        | Body::EnquireLink
        | Body::EnquireLinkResp
        | Body::GenericNack
        | Body::CancelSmResp
        | Body::ReplaceSmResp => {}
        Body::SubmitSm(s) | Body::DeliverSm(s) => {
            cstr(out, &s.service_type, "service_type")?;
            addr(out, &s.source, "source_addr")?;
            addr(out, &s.dest, "destination_addr")?;
            out.put_u8(s.esm_class);
            out.put_u8(s.protocol_id);
            out.put_u8(s.priority_flag);
            cstr(out, &s.schedule_delivery_time, "schedule_delivery_time")?;
            cstr(out, &s.validity_period, "validity_period")?;
            out.put_u8(s.registered_delivery);
            out.put_u8(s.replace_if_present_flag);
            out.put_u8(s.data_coding);
            out.put_u8(s.sm_default_msg_id);
            short_message(out, &s.short_message)?;
            tlvs(out, &s.tlvs)?;
        }
        Body::SubmitSmResp(r) | Body::DeliverSmResp(r) | Body::DataSmResp(r) => {
            cstr(out, &r.message_id, "message_id")?;
            tlvs(out, &r.tlvs)?;
        }
        Body::DataSm(d) => {
            cstr(out, &d.service_type, "service_type")?;
            addr(out, &d.source, "source_addr")?;
            addr(out, &d.dest, "destination_addr")?;
            out.put_u8(d.esm_class);
            out.put_u8(d.registered_delivery);
            out.put_u8(d.data_coding);
            tlvs(out, &d.tlvs)?;
        }
        Body::QuerySm(q) => {
            cstr(out, &q.message_id, "message_id")?;
            addr(out, &q.source, "source_addr")?;
        }
        Body::QuerySmResp(q) => {
            cstr(out, &q.message_id, "message_id")?;
            cstr(out, &q.final_date, "final_date")?;
            out.put_u8(q.message_state);
            out.put_u8(q.error_code);
        }
        Body::CancelSm(c) => {
            cstr(out, &c.service_type, "service_type")?;
            cstr(out, &c.message_id, "message_id")?;
            addr(out, &c.source, "source_addr")?;
            addr(out, &c.dest, "destination_addr")?;
        }
        Body::ReplaceSm(r) => {
            cstr(out, &r.message_id, "message_id")?;
            addr(out, &r.source, "source_addr")?;
            cstr(out, &r.schedule_delivery_time, "schedule_delivery_time")?;
            cstr(out, &r.validity_period, "validity_period")?;
            out.put_u8(r.registered_delivery);
            out.put_u8(r.sm_default_msg_id);
            short_message(out, &r.short_message)?;
            tlvs(out, &r.tlvs)?;
        }
        Body::AlertNotification(a) => {
            addr(out, &a.source, "source_addr")?;
            addr(out, &a.esme, "esme_addr")?;
            tlvs(out, &a.tlvs)?;
        }
    }
    Ok(())
}
