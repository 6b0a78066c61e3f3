//! SDP (RFC 8866) for one audio stream, as a phone call needs it: the offer
//! verigate sends (PCMU, PCMA, telephone-event), the answer a switch or
//! handset gives, and what the two agree on. Payload types are always taken
//! from the answer (telephone-event may be 96, 100, 101, …).

use std::fmt::Write as _;
use std::net::IpAddr;

use thiserror::Error;

use crate::media::g711::Law;

/// Why a session description cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SdpError {
    /// A line that is not `x=value`.
    #[error("SDP line {line}: {text:?} is not of the form x=value")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
    /// A field that does not parse.
    #[error("SDP line {line}: bad {what}: {text:?}")]
    BadField {
        /// 1-based line number.
        line: usize,
        /// What was expected.
        what: &'static str,
        /// The line.
        text: String,
    },
    /// No `m=audio` section.
    #[error("SDP has no audio stream")]
    NoAudio,
    /// The audio stream was refused (port 0).
    #[error("SDP answer refused the audio stream (port 0)")]
    AudioRefused,
    /// No connection address for the audio stream.
    #[error("SDP has no connection address (c=) for the audio stream")]
    NoConnection,
    /// The answer will not receive our audio (`a=sendonly` or `inactive`).
    #[error("SDP answer will not receive audio (a={0})")]
    NotReceiving(&'static str),
    /// None of the offered audio codecs was accepted.
    #[error("SDP answer accepts none of our codecs (PCMU, PCMA); it offers payload types {0:?}")]
    NoCommonCodec(Vec<u8>),
}

/// Direction attribute of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Both ways (the default).
    SendRecv,
    /// The peer only sends.
    SendOnly,
    /// The peer only receives.
    RecvOnly,
    /// Neither (on hold).
    Inactive,
}

/// One payload type of a media line, with its rtpmap if given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    /// Payload type.
    pub pt: u8,
    /// Encoding name from `a=rtpmap` (upper-cased), if any.
    pub name: Option<String>,
    /// Clock rate from `a=rtpmap`, if any.
    pub clock: Option<u32>,
}

impl Format {
    /// The G.711 law this format is, by rtpmap name or static payload type.
    pub fn law(&self) -> Option<Law> {
        if self.clock.is_some_and(|c| c != 8000) {
            return None;
        }
        match (self.pt, self.name.as_deref()) {
            (_, Some("PCMU")) | (0, None) => Some(Law::Ulaw),
            (_, Some("PCMA")) | (8, None) => Some(Law::Alaw),
            _ => None,
        }
    }
}

/// The audio part of a session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioStream {
    /// Where to send RTP.
    pub addr: IpAddr,
    /// RTP port (0: refused).
    pub port: u16,
    /// Payload types in preference order.
    pub formats: Vec<Format>,
    /// Direction.
    pub direction: Direction,
    /// Packet time in ms, if given.
    pub ptime: Option<u32>,
}

impl AudioStream {
    /// The first G.711 law of the stream, and its payload type.
    pub fn g711(&self) -> Option<(Law, u8)> {
        self.formats.iter().find_map(|f| f.law().map(|l| (l, f.pt)))
    }

    /// The telephone-event payload type at 8 kHz, if offered.
    pub fn telephone_event(&self) -> Option<u8> {
        self.formats
            .iter()
            .find(|f| {
                f.name.as_deref() == Some("TELEPHONE-EVENT") && f.clock.unwrap_or(8000) == 8000
            })
            .map(|f| f.pt)
    }
}

/// Which part of the description a line belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    /// Before the first `m=`: applies to every stream.
    Session,
    /// The first `m=audio` section.
    Audio,
    /// Any other media section (video, image, a second audio): ignored.
    Other,
}

/// `<pt> <name>/<clock>[/<channels>]`: the payload type, the upper-case
/// encoding name and the clock rate, if the attribute reads so.
fn rtpmap(val: &str) -> Option<(u8, String, Option<u32>)> {
    let (pt, enc) = val.split_once(' ')?;
    let pt: u8 = pt.trim().parse().ok().filter(|pt| *pt < 128)?;
    let mut enc = enc.trim().split('/');
    let name = enc.next().filter(|n| !n.is_empty())?.to_ascii_uppercase();
    let clock = match enc.next() {
        Some(c) => Some(c.parse::<u32>().ok()?),
        None => None,
    };
    Some((pt, name, clock))
}

/// Parses the audio stream of a session description (the first `m=audio`;
/// other media sections are skipped unread). Only plain RTP (`RTP/AVP`,
/// `RTP/AVPF`) is accepted: we do not do SRTP.
pub fn parse_audio(text: &str) -> Result<AudioStream, SdpError> {
    let mut section = Section::Session;
    let mut session_addr: Option<IpAddr> = None;
    let mut session_direction = Direction::SendRecv;
    let mut media_addr: Option<IpAddr> = None;
    let mut audio: Option<AudioStream> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim_end_matches('\r');
        if l.is_empty() {
            continue;
        }
        let bad_line = || SdpError::BadLine {
            line,
            text: l.to_string(),
        };
        let bad = |what| SdpError::BadField {
            line,
            what,
            text: l.to_string(),
        };
        let (kind, value) = l.split_once('=').ok_or_else(bad_line)?;
        if kind.len() != 1 {
            return Err(bad_line());
        }
        if kind == "m" {
            let mut parts = value.split_ascii_whitespace();
            let media = parts.next().ok_or_else(|| bad("media line"))?;
            if media != "audio" || audio.is_some() {
                section = Section::Other;
                continue;
            }
            section = Section::Audio;
            let port = parts
                .next()
                .and_then(|p| p.split('/').next())
                .and_then(|p| p.parse::<u16>().ok())
                .ok_or_else(|| bad("media port"))?;
            let proto = parts.next().ok_or_else(|| bad("media protocol"))?;
            if !matches!(proto, "RTP/AVP" | "RTP/AVPF") {
                return Err(bad("media protocol (want RTP/AVP; SRTP is not supported)"));
            }
            let mut formats = Vec::new();
            for f in parts {
                let pt = f
                    .parse::<u8>()
                    .ok()
                    .filter(|pt| *pt < 128)
                    .ok_or_else(|| bad("payload type"))?;
                formats.push(Format {
                    pt,
                    name: None,
                    clock: None,
                });
            }
            audio = Some(AudioStream {
                addr: IpAddr::from([0, 0, 0, 0]),
                port,
                formats,
                direction: session_direction,
                ptime: None,
            });
            continue;
        }
        if section == Section::Other {
            continue;
        }
        match kind {
            "c" => {
                let mut parts = value.split_ascii_whitespace();
                let (net, ty, addr) = (parts.next(), parts.next(), parts.next());
                let addr: Option<IpAddr> = addr
                    .and_then(|a| a.split('/').next())
                    .and_then(|a| a.parse().ok());
                let addr = match (net, ty, addr) {
                    (Some("IN"), Some("IP4"), Some(a @ IpAddr::V4(_)))
                    | (Some("IN"), Some("IP6"), Some(a @ IpAddr::V6(_))) => a,
                    _ => return Err(bad("connection (want IN IP4 <IPv4> or IN IP6 <IPv6>)")),
                };
                match section {
                    Section::Audio => media_addr = Some(addr),
                    _ => session_addr = Some(addr),
                }
            }
            "a" => {
                let (name, val) = value.split_once(':').unwrap_or((value, ""));
                let direction = match name {
                    "sendrecv" => Some(Direction::SendRecv),
                    "sendonly" => Some(Direction::SendOnly),
                    "recvonly" => Some(Direction::RecvOnly),
                    "inactive" => Some(Direction::Inactive),
                    _ => None,
                };
                match (section, audio.as_mut()) {
                    (Section::Audio, Some(a)) => match (direction, name) {
                        (Some(d), _) => a.direction = d,
                        (None, "rtpmap") => {
                            // A malformed rtpmap is skipped: it may be for a
                            // codec we do not use, and static payload types
                            // (0, 8) need none.
                            if let Some((pt, name, clock)) = rtpmap(val) {
                                if let Some(f) = a.formats.iter_mut().find(|f| f.pt == pt) {
                                    f.name = Some(name);
                                    f.clock = clock;
                                }
                            }
                        }
                        (None, "ptime") => {
                            // Some phones write "20.0".
                            let ms: f64 = val.trim().parse().map_err(|_| bad("ptime"))?;
                            if !(1.0..=1000.0).contains(&ms) {
                                return Err(bad("ptime (1 to 1000 ms)"));
                            }
                            a.ptime = Some(ms.round() as u32);
                        }
                        _ => {}
                    },
                    _ => {
                        if let Some(d) = direction {
                            session_direction = d;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let mut audio = audio.ok_or(SdpError::NoAudio)?;
    audio.addr = media_addr.or(session_addr).ok_or(SdpError::NoConnection)?;
    // RFC 3264 §8.4's old way to put a call on hold.
    if audio.addr.is_unspecified() {
        audio.direction = Direction::Inactive;
    }
    Ok(audio)
}

/// What both ends agreed on for the call's audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Where to send RTP.
    pub remote: (IpAddr, u16),
    /// The G.711 law and its payload type (from the answer).
    pub law: Law,
    /// Its payload type.
    pub pt: u8,
    /// The telephone-event payload type (from the answer), if accepted.
    pub telephone_event: Option<u8>,
    /// The peer's direction.
    pub direction: Direction,
}

/// Reads an answer to our offer.
pub fn negotiate(answer: &str) -> Result<Negotiated, SdpError> {
    let a = parse_audio(answer)?;
    if a.port == 0 {
        return Err(SdpError::AudioRefused);
    }
    // Reading a code to someone who will not hear it is not a call (a hold
    // address, 0.0.0.0, reads as inactive).
    match a.direction {
        Direction::SendOnly | Direction::Inactive => {
            return Err(SdpError::NotReceiving(a.direction.attribute()))
        }
        Direction::SendRecv | Direction::RecvOnly => {}
    }

    let (law, pt) = a
        .g711()
        .ok_or_else(|| SdpError::NoCommonCodec(a.formats.iter().map(|f| f.pt).collect()))?;
    Ok(Negotiated {
        remote: (a.addr, a.port),
        law,
        pt,
        telephone_event: a.telephone_event(),
        direction: a.direction,
    })
}

/// The payload type we offer telephone-event on.
pub const OFFER_TELEPHONE_EVENT_PT: u8 = 101;

impl Direction {
    fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction an answer gives to an offer with this one (RFC 3264 §6.1).
    pub fn answering(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }
}

/// Writes a session description for one audio stream at `addr:port`.
/// `formats` are (payload type, rtpmap name) in preference order; the
/// telephone-event format gets `fmtp 0-15`.
pub fn write_audio(
    session_id: u64,
    version: u64,
    addr: IpAddr,
    port: u16,
    formats: &[(u8, &str)],
    direction: Direction,
) -> String {
    let ip = match addr {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    };
    let mut s = String::new();
    let _ = write!(
        s,
        "v=0\r\no=verigate {session_id} {version} IN {ip} {addr}\r\ns=verigate\r\nc=IN {ip} {addr}\r\nt=0 0\r\nm=audio {port} RTP/AVP"
    );
    for (pt, _) in formats {
        let _ = write!(s, " {pt}");
    }
    s.push_str("\r\n");
    for (pt, name) in formats {
        let _ = write!(s, "a=rtpmap:{pt} {name}/8000\r\n");
        if name.eq_ignore_ascii_case("telephone-event") {
            let _ = write!(s, "a=fmtp:{pt} 0-15\r\n");
        }
    }
    let _ = write!(s, "a=ptime:20\r\na={}\r\n", direction.attribute());
    s
}

/// Our offer: PCMU, PCMA, telephone-event/8000 on 101.
pub fn offer(session_id: u64, addr: IpAddr, port: u16) -> String {
    write_audio(
        session_id,
        session_id,
        addr,
        port,
        &[
            (0, "PCMU"),
            (8, "PCMA"),
            (OFFER_TELEPHONE_EVENT_PT, "telephone-event"),
        ],
        Direction::SendRecv,
    )
}

/// An answer to `offer` from a side that prefers `prefer` (the simulator's
/// handsets and tests): picks the first offered law in `prefer`, keeps the
/// offer's payload types, accepts telephone-event if offered.
pub fn answer(
    offer: &str,
    session_id: u64,
    addr: IpAddr,
    port: u16,
    prefer: &[Law],
) -> Result<(String, Negotiated), SdpError> {
    let o = parse_audio(offer)?;
    if o.port == 0 {
        return Err(SdpError::AudioRefused);
    }
    let offered: Vec<(Law, u8)> = o
        .formats
        .iter()
        .filter_map(|f| f.law().map(|l| (l, f.pt)))
        .collect();
    let (law, pt) = prefer
        .iter()
        .find_map(|l| offered.iter().find(|(ol, _)| ol == l).copied())
        .ok_or_else(|| SdpError::NoCommonCodec(o.formats.iter().map(|f| f.pt).collect()))?;
    let te = o.telephone_event();
    let mut formats = vec![(pt, law.name())];
    if let Some(te) = te {
        formats.push((te, "telephone-event"));
    }
    let text = write_audio(
        session_id,
        session_id,
        addr,
        port,
        &formats,
        o.direction.answering(),
    );
    Ok((
        text,
        Negotiated {
            remote: (o.addr, o.port),
            law,
            pt,
            telephone_event: te,
            direction: o.direction,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 10));

    #[test]
    fn our_offer_parses_and_lists_g711_and_telephone_event() {
        let o = offer(42, LOCAL, 40000);
        assert!(o.contains("m=audio 40000 RTP/AVP 0 8 101\r\n"), "{o}");
        let a = parse_audio(&o).unwrap();
        assert_eq!((a.addr, a.port), (LOCAL, 40000));
        assert_eq!(a.g711(), Some((Law::Ulaw, 0)));
        assert_eq!(a.telephone_event(), Some(101));
        assert_eq!(a.ptime, Some(20));
    }

    #[test]
    fn payload_types_come_from_the_answer() {
        // A switch answering PCMA first and telephone-event on 96, with the
        // connection address at media level.
        let ans = "v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\n\
                   m=audio 30000 RTP/AVP 8 96\r\nc=IN IP4 198.51.100.7\r\n\
                   a=rtpmap:8 PCMA/8000\r\na=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-16\r\na=sendrecv\r\n";
        let n = negotiate(ans).unwrap();
        assert_eq!(n.remote, ("198.51.100.7".parse().unwrap(), 30000));
        assert_eq!((n.law, n.pt, n.telephone_event), (Law::Alaw, 8, Some(96)));
        assert_eq!(n.direction, Direction::SendRecv);
    }

    #[test]
    fn answers_we_cannot_use_say_why() {
        let base = "v=0\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\n";
        assert_eq!(
            negotiate(&format!("{base}m=audio 0 RTP/AVP 0\r\n")),
            Err(SdpError::AudioRefused)
        );
        assert_eq!(
            negotiate(&format!(
                "{base}m=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n"
            )),
            Err(SdpError::NoCommonCodec(vec![18]))
        );
        assert_eq!(
            negotiate("v=0\r\nc=IN IP4 198.51.100.1\r\n"),
            Err(SdpError::NoAudio)
        );
        // An answer that will not hear us, or puts the call on hold.
        for (dir, attr) in [
            ("a=sendonly\r\n", "sendonly"),
            ("a=inactive\r\n", "inactive"),
        ] {
            assert_eq!(
                negotiate(&format!("{base}m=audio 4000 RTP/AVP 0\r\n{dir}")),
                Err(SdpError::NotReceiving(attr))
            );
        }
        assert_eq!(
            negotiate("v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\n"),
            Err(SdpError::NotReceiving("inactive"))
        );
        // A broken rtpmap for a codec we do not use does not spoil the answer.
        assert_eq!(
            negotiate(&format!(
                "{base}m=audio 4000 RTP/AVP 8 99\r\na=rtpmap:99 opus\r\na=rtpmap:x y\r\n"
            ))
            .map(|n| (n.law, n.pt)),
            Ok((Law::Alaw, 8))
        );
        assert_eq!(
            negotiate("v=0\r\nm=audio 4000 RTP/AVP 0\r\n"),
            Err(SdpError::NoConnection)
        );
        assert!(matches!(
            negotiate("v=0\r\nthis is not sdp\r\n"),
            Err(SdpError::BadLine { line: 2, .. })
        ));
        assert!(matches!(
            negotiate(&format!("{base}m=audio x RTP/AVP 0\r\n")),
            Err(SdpError::BadField {
                what: "media port",
                ..
            })
        ));
        assert!(matches!(
            negotiate(&format!("{base}m=audio 4000 RTP/AVP 300\r\n")),
            Err(SdpError::BadField {
                what: "payload type",
                ..
            })
        ));
    }

    #[test]
    fn a_handset_answers_our_offer_with_its_preferred_law() {
        let o = offer(7, LOCAL, 40000);
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let (text, n) = answer(&o, 9, peer, 50000, &[Law::Alaw, Law::Ulaw]).unwrap();
        assert_eq!((n.law, n.pt, n.telephone_event), (Law::Alaw, 8, Some(101)));
        assert_eq!(n.remote, (LOCAL, 40000));
        // And our side reads that answer back the same way.
        let back = negotiate(&text).unwrap();
        assert_eq!(
            (back.law, back.pt, back.telephone_event),
            (Law::Alaw, 8, Some(101))
        );
        assert_eq!(back.remote, (peer, 50000));
    }

    #[test]
    fn session_level_direction_applies_unless_the_stream_overrides() {
        let t = "v=0\r\nc=IN IP4 198.51.100.1\r\na=sendonly\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert_eq!(parse_audio(t).unwrap().direction, Direction::SendOnly);
        let t = "v=0\r\nc=IN IP4 198.51.100.1\r\na=sendonly\r\nm=audio 4000 RTP/AVP 0\r\na=inactive\r\n";
        assert_eq!(parse_audio(t).unwrap().direction, Direction::Inactive);
        let t = "v=0\r\nc=IN IP4 198.51.100.1\r\na=recvonly\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert_eq!(negotiate(t).unwrap().direction, Direction::RecvOnly);
    }

    #[test]
    fn sections_before_the_audio_one_do_not_leak_into_it() {
        // A video section's c= and direction are its own; even a c= we
        // could not read there does not matter.
        let t = "v=0\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
                 m=video 5000 RTP/AVP 96\r\nc=IN IP4 203.0.113.9\r\na=inactive\r\n\
                 m=image 6000 udptl t38\r\nc=IN IP4 bad.host\r\n\
                 m=audio 4000 RTP/AVP 0\r\n";
        let n = negotiate(t).unwrap();
        assert_eq!(n.remote, ("192.0.2.1".parse().unwrap(), 4000));
        assert_eq!(n.direction, Direction::SendRecv);
    }

    #[test]
    fn srtp_mismatched_addresses_and_wideband_are_refused() {
        let base = "v=0\r\nc=IN IP4 198.51.100.1\r\n";
        assert!(matches!(
            negotiate(&format!("{base}m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x\r\n")),
            Err(SdpError::BadField { what, .. }) if what.contains("SRTP")
        ));
        assert!(matches!(
            negotiate("v=0\r\nc=IN IP4 2001:db8::1\r\nm=audio 4000 RTP/AVP 0\r\n"),
            Err(SdpError::BadField { .. })
        ));
        assert_eq!(
            negotiate(&format!(
                "{base}m=audio 4000 RTP/AVP 96\r\na=rtpmap:96 PCMU/16000\r\n"
            )),
            Err(SdpError::NoCommonCodec(vec![96])),
            "PCMU at 16 kHz is not G.711"
        );
        let v6 = negotiate("v=0\r\nc=IN IP6 2001:db8::1\r\nm=audio 4000 RTP/AVPF 8\r\n").unwrap();
        assert_eq!(v6.remote.0, "2001:db8::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_hold_address_is_inactive_and_a_fractional_ptime_is_read() {
        let t = "v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\na=ptime:20.0\r\n";
        assert_eq!(parse_audio(t).unwrap().direction, Direction::Inactive);
        assert_eq!(parse_audio(t).unwrap().ptime, Some(20));
    }

    #[test]
    fn an_answer_mirrors_the_offered_direction() {
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        for (offered, answered) in [
            ("sendrecv", "a=sendrecv"),
            ("sendonly", "a=recvonly"),
            ("recvonly", "a=sendonly"),
            ("inactive", "a=inactive"),
        ] {
            let o = offer(1, LOCAL, 4000).replace("a=sendrecv", &format!("a={offered}"));
            let (text, _) = answer(&o, 2, peer, 5000, &[Law::Ulaw]).unwrap();
            assert!(text.contains(answered), "{offered}: {text}");
        }
    }
}
