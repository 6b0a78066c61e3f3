//! SMPP command identifiers and command status codes.

use std::fmt;

/// Bit set in the command_id of every response PDU.
pub const RESPONSE_BIT: u32 = 0x8000_0000;

macro_rules! command_ids {
    ($($name:ident = $val:expr, $wire:literal;)*) => {
        /// An SMPP command_id this codec understands.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum CommandId {
            $(#[doc = $wire] $name,)*
        }

        impl CommandId {
            /// The numeric command_id on the wire.
            pub const fn as_u32(self) -> u32 {
                match self { $(CommandId::$name => $val,)* }
            }

            /// Looks up a numeric command_id; `None` when unknown.
            pub const fn from_u32(v: u32) -> Option<Self> {
                match v { $($val => Some(CommandId::$name),)* _ => None }
            }

            /// The SMPP specification name, e.g. `submit_sm_resp`.
            pub const fn name(self) -> &'static str {
                match self { $(CommandId::$name => $wire,)* }
            }
        }
    };
}

command_ids! {
    GenericNack = 0x8000_0000, "generic_nack";
    BindReceiver = 0x0000_0001, "bind_receiver";
    BindReceiverResp = 0x8000_0001, "bind_receiver_resp";
    BindTransmitter = 0x0000_0002, "bind_transmitter";
    BindTransmitterResp = 0x8000_0002, "bind_transmitter_resp";
    QuerySm = 0x0000_0003, "query_sm";
    QuerySmResp = 0x8000_0003, "query_sm_resp";
    SubmitSm = 0x0000_0004, "submit_sm";
    SubmitSmResp = 0x8000_0004, "submit_sm_resp";
    DeliverSm = 0x0000_0005, "deliver_sm";
    DeliverSmResp = 0x8000_0005, "deliver_sm_resp";
    Unbind = 0x0000_0006, "unbind";
    UnbindResp = 0x8000_0006, "unbind_resp";
    ReplaceSm = 0x0000_0007, "replace_sm";
    ReplaceSmResp = 0x8000_0007, "replace_sm_resp";
    CancelSm = 0x0000_0008, "cancel_sm";
    CancelSmResp = 0x8000_0008, "cancel_sm_resp";
    BindTransceiver = 0x0000_0009, "bind_transceiver";
    BindTransceiverResp = 0x8000_0009, "bind_transceiver_resp";
    Outbind = 0x0000_000B, "outbind";
    EnquireLink = 0x0000_0015, "enquire_link";
    EnquireLinkResp = 0x8000_0015, "enquire_link_resp";
    AlertNotification = 0x0000_0102, "alert_notification";
    DataSm = 0x0000_0103, "data_sm";
    DataSmResp = 0x8000_0103, "data_sm_resp";
}

impl CommandId {
    /// True for response PDUs (the high bit of command_id).
    pub const fn is_response(self) -> bool {
        self.as_u32() & RESPONSE_BIT != 0
    }

    /// The response command for a request (`None` for responses and for
    /// requests that have no response: outbind, alert_notification).
    pub const fn response(self) -> Option<CommandId> {
        match self {
            CommandId::Outbind | CommandId::AlertNotification => None,
            c if c.is_response() => None,
            c => CommandId::from_u32(c.as_u32() | RESPONSE_BIT),
        }
    }
}

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An SMPP command_status value (kept as a number: SMSCs use vendor codes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CommandStatus(pub u32);

macro_rules! statuses {
    ($($name:ident = $val:expr, $text:literal;)*) => {
        impl CommandStatus {
            $(#[doc = $text] pub const $name: CommandStatus = CommandStatus($val);)*

            /// The specification name (`ESME_RTHROTTLED`) if this is a known code.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 { $($val => Some(stringify!($name)),)* _ => None }
            }

            /// A human description of the status, if known.
            pub const fn description(self) -> Option<&'static str> {
                match self.0 { $($val => Some($text),)* _ => None }
            }
        }
    };
}

statuses! {
    ESME_ROK = 0x00, "no error";
    ESME_RINVMSGLEN = 0x01, "message length is invalid";
    ESME_RINVCMDLEN = 0x02, "command length is invalid";
    ESME_RINVCMDID = 0x03, "invalid command id";
    ESME_RINVBNDSTS = 0x04, "incorrect bind status for given command";
    ESME_RALYBND = 0x05, "ESME already in bound state";
    ESME_RINVPRTFLG = 0x06, "invalid priority flag";
    ESME_RINVREGDLVFLG = 0x07, "invalid registered delivery flag";
    ESME_RSYSERR = 0x08, "system error";
    ESME_RINVSRCADR = 0x0A, "invalid source address";
    ESME_RINVDSTADR = 0x0B, "invalid destination address";
    ESME_RINVMSGID = 0x0C, "message id is invalid";
    ESME_RBINDFAIL = 0x0D, "bind failed";
    ESME_RINVPASWD = 0x0E, "invalid password";
    ESME_RINVSYSID = 0x0F, "invalid system id";
    ESME_RCANCELFAIL = 0x11, "cancel_sm failed";
    ESME_RREPLACEFAIL = 0x13, "replace_sm failed";
    ESME_RMSGQFUL = 0x14, "message queue full";
    ESME_RINVSERTYP = 0x15, "invalid service type";
    ESME_RINVNUMDESTS = 0x33, "invalid number of destinations";
    ESME_RINVDLNAME = 0x34, "invalid distribution list name";
    ESME_RINVDESTFLAG = 0x40, "destination flag is invalid";
    ESME_RINVSUBREP = 0x42, "invalid submit with replace request";
    ESME_RINVESMCLASS = 0x43, "invalid esm_class field data";
    ESME_RCNTSUBDL = 0x44, "cannot submit to distribution list";
    ESME_RSUBMITFAIL = 0x45, "submit_sm or submit_multi failed";
    ESME_RINVSRCTON = 0x48, "invalid source address TON";
    ESME_RINVSRCNPI = 0x49, "invalid source address NPI";
    ESME_RINVDSTTON = 0x50, "invalid destination address TON";
    ESME_RINVDSTNPI = 0x51, "invalid destination address NPI";
    ESME_RINVSYSTYP = 0x53, "invalid system_type field";
    ESME_RINVREPFLAG = 0x54, "invalid replace_if_present flag";
    ESME_RINVNUMMSGS = 0x55, "invalid number of messages";
    ESME_RTHROTTLED = 0x58, "throttling error (ESME has exceeded allowed message limits)";
    ESME_RINVSCHED = 0x61, "invalid scheduled delivery time";
    ESME_RINVEXPIRY = 0x62, "invalid message validity period";
    ESME_RINVDFTMSGID = 0x63, "predefined message invalid or not found";
    ESME_RX_T_APPN = 0x64, "ESME receiver temporary app error code";
    ESME_RX_P_APPN = 0x65, "ESME receiver permanent app error code";
    ESME_RX_R_APPN = 0x66, "ESME receiver reject message error code";
    ESME_RQUERYFAIL = 0x67, "query_sm request failed";
    ESME_RINVOPTPARSTREAM = 0xC0, "error in the optional part of the PDU body";
    ESME_ROPTPARNOTALLWD = 0xC1, "optional parameter not allowed";
    ESME_RINVPARLEN = 0xC2, "invalid parameter length";
    ESME_RMISSINGOPTPARAM = 0xC3, "expected optional parameter missing";
    ESME_RINVOPTPARAMVAL = 0xC4, "invalid optional parameter value";
    ESME_RDELIVERYFAILURE = 0xFE, "delivery failure (used for data_sm_resp)";
    ESME_RUNKNOWNERR = 0xFF, "unknown error";
}

impl CommandStatus {
    /// True for ESME_ROK.
    pub const fn is_ok(self) -> bool {
        self.0 == 0
    }

    /// True when the peer asks us to slow down: the whole session pauses and
    /// the same message is retried (0x58 THROTTLED, 0x14 MSGQFUL).
    pub const fn is_throttle(self) -> bool {
        matches!(self.0, 0x58 | 0x14)
    }

    /// True when a refused submit may succeed if sent again later (system
    /// error, queue full, throttled, temporary application error, delivery
    /// failure, unknown error); false when the refusal is final (the
    /// message or its addresses are at fault).
    pub const fn is_temporary(self) -> bool {
        matches!(self.0, 0x08 | 0x14 | 0x58 | 0x64 | 0xFE | 0xFF)
    }
}

impl fmt::Debug for CommandStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for CommandStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "0x{:02X} {}", self.0, n),
            None => write!(f, "0x{:02X}", self.0),
        }
    }
}
