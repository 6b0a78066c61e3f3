//! HTTP/SIP digest authentication for the client side (RFC 7616 as SIP
//! uses it, RFC 3261 §22): MD5 and SHA-256, with or without `-sess`, qop
//! `auth` or none. rsipstack 0.7.14 cannot answer `algorithm=SHA-256`, so
//! the call engine answers challenges with this. The client nonce is an
//! input (the caller draws it), so responses are reproducible in tests.

use std::fmt::Write as _;

use md5::Md5;
use sha2::{Digest as _, Sha256};
use thiserror::Error;

/// Why a challenge cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DigestError {
    /// Not a `Digest` challenge.
    #[error("not a Digest challenge: {0:?}")]
    NotDigest(String),
    /// A required parameter is missing.
    #[error("Digest challenge without {0}")]
    Missing(&'static str),
    /// An algorithm we do not implement.
    #[error("Digest algorithm {0:?} is not supported (MD5, MD5-sess, SHA-256, SHA-256-sess are)")]
    Algorithm(String),
    /// Only `auth-int` offered (needs the body hash; switches do not ask it of INVITEs in practice).
    #[error("Digest challenge offers qop {0:?}; only \"auth\" is supported")]
    Qop(String),
    /// Unbalanced quotes or a malformed parameter.
    #[error("malformed Digest challenge: {0}")]
    Malformed(String),
    /// `-sess` needs the client nonce, which is only sent with a qop.
    #[error(
        "Digest challenge asks for {0} without qop=\"auth\"; the server could not check the answer"
    )]
    SessWithoutQop(String),
    /// A value that cannot go into a header (control characters).
    #[error("{0} contains control characters and cannot be sent in a header")]
    Unsendable(&'static str),
}

/// Hash function of a challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// MD5 (the default when none is named).
    Md5,
    /// SHA-256.
    Sha256,
}

/// A parsed `WWW-Authenticate` / `Proxy-Authenticate` Digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Protection space.
    pub realm: String,
    /// Server nonce.
    pub nonce: String,
    /// Echoed back unchanged.
    pub opaque: Option<String>,
    /// Hash.
    pub algorithm: Algorithm,
    /// `-sess` variant.
    pub sess: bool,
    /// Whether `qop=auth` is used (else the RFC 2069 form).
    pub qop_auth: bool,
    /// The algorithm as the server spelled it (echoed back).
    pub algorithm_token: Option<String>,
    /// Set when the nonce was stale (retry with the same credentials).
    pub stale: bool,
}

/// Splits `k=v, k="v, w"` parameters, up to the start of the next
/// challenge (`Scheme k=v`) if the header value holds several; returns the
/// parameters and what follows.
/// Parameters of one challenge, and the rest of the header value if
/// another challenge follows.
type Params<'a> = (Vec<(String, String)>, Option<&'a str>);

fn params(s: &str) -> Result<Params<'_>, DigestError> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let (k, after) = rest
            .split_once('=')
            .ok_or_else(|| DigestError::Malformed(format!("{rest:?} has no '='")))?;
        if k.trim().contains(char::is_whitespace) {
            // "Digest realm=…": the next challenge begins here.
            return Ok((out, Some(rest)));
        }
        let key = k.trim().to_ascii_lowercase();
        if out.iter().any(|(k, _)| *k == key) {
            return Err(DigestError::Malformed(format!("{key} is given twice")));
        }
        let after = after.trim_start();
        let (value, tail) = if let Some(q) = after.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    _ => v.push(c),
                }
            }
            let end =
                end.ok_or_else(|| DigestError::Malformed(format!("unterminated quote in {key}")))?;
            (v, &q[end..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        out.push((key, value));
        rest = tail.trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok((out, None))
}

impl Challenge {
    /// Parses a challenge header value holding one challenge
    /// (`Digest realm="…", nonce="…", …`).
    pub fn parse(header: &str) -> Result<Self, DigestError> {
        let (c, next) = Self::parse_one(header)?;
        match next {
            None => c,
            Some(_) => Err(DigestError::Malformed(
                "several challenges in one header value; use Challenge::preferred".into(),
            )),
        }
    }

    /// The challenge to answer among header values that may each hold
    /// several (RFC 7616 §3.7: the client picks the strongest it supports):
    /// SHA-256 before MD5. Errors only if none can be answered, with the
    /// reason the first Digest challenge was refused.
    pub fn preferred(headers: &[&str]) -> Result<Self, DigestError> {
        let mut usable = Vec::new();
        let mut first_error = None;
        for h in headers {
            let mut rest = Some(*h);
            while let Some(r) = rest {
                let (c, next) = Self::parse_one(r)?;
                match c {
                    Ok(c) => usable.push(c),
                    Err(DigestError::NotDigest(_)) => {}
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
                rest = next;
            }
        }
        usable.sort_by_key(|c| c.algorithm != Algorithm::Sha256);
        usable.into_iter().next().ok_or_else(|| {
            first_error.unwrap_or_else(|| DigestError::NotDigest(headers.join(", ")))
        })
    }

    /// The first challenge of `header` (or why it cannot be answered), and
    /// where the next begins. Only broken syntax is an error of its own.
    #[allow(clippy::type_complexity)]
    fn parse_one(header: &str) -> Result<(Result<Self, DigestError>, Option<&str>), DigestError> {
        let h = header.trim();
        let (scheme, rest) = h.split_once(char::is_whitespace).unwrap_or((h, ""));
        let (params, next) = params(rest)?;
        if !scheme.eq_ignore_ascii_case("digest") {
            return Ok((Err(DigestError::NotDigest(scheme.to_string())), next));
        }
        Ok((Self::from_params(params), next))
    }

    fn from_params(params: Vec<(String, String)>) -> Result<Self, DigestError> {
        let mut realm = None;
        let mut nonce = None;
        let mut opaque = None;
        let mut algorithm_token = None;
        let mut qop = None;
        let mut stale = false;
        for (k, v) in params {
            match k.as_str() {
                "realm" => realm = Some(v),
                "nonce" => nonce = Some(v),
                "opaque" => opaque = Some(v),
                "algorithm" => algorithm_token = Some(v),
                "qop" => qop = Some(v),
                "stale" => stale = v.eq_ignore_ascii_case("true"),
                _ => {}
            }
        }
        if algorithm_token
            .as_deref()
            .is_some_and(|a| !a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(DigestError::Algorithm(algorithm_token.unwrap_or_default()));
        }
        let (algorithm, sess) = match algorithm_token
            .as_deref()
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            None | Some("MD5") => (Algorithm::Md5, false),
            Some("MD5-SESS") => (Algorithm::Md5, true),
            // RFC 7616's spelling, and the one some stacks write.
            Some("SHA-256") | Some("SHA256") => (Algorithm::Sha256, false),
            Some("SHA-256-SESS") | Some("SHA256-SESS") => (Algorithm::Sha256, true),
            Some(_) => return Err(DigestError::Algorithm(algorithm_token.unwrap_or_default())),
        };
        let qop_auth = match qop {
            None => false,
            Some(q) => {
                if q.split(',').any(|t| t.trim().eq_ignore_ascii_case("auth")) {
                    true
                } else {
                    return Err(DigestError::Qop(q));
                }
            }
        };
        if sess && !qop_auth {
            return Err(DigestError::SessWithoutQop(
                algorithm_token.unwrap_or_default(),
            ));
        }
        Ok(Self {
            realm: realm.ok_or(DigestError::Missing("realm"))?,
            nonce: nonce.ok_or(DigestError::Missing("nonce"))?,
            opaque,
            algorithm,
            sess,
            qop_auth,
            algorithm_token,
            stale,
        })
    }

    fn h(&self, data: &str) -> String {
        match self.algorithm {
            Algorithm::Md5 => hex(&Md5::digest(data.as_bytes())),
            Algorithm::Sha256 => hex(&Sha256::digest(data.as_bytes())),
        }
    }

    /// The `Authorization` / `Proxy-Authorization` value for a request of
    /// `method` to `uri`, with client nonce `cnonce` and nonce count `nc`.
    /// Refuses values that would break the header (control characters).
    pub fn answer(
        &self,
        username: &str,
        password: &str,
        method: &str,
        uri: &str,
        cnonce: &str,
        nc: u32,
    ) -> Result<String, DigestError> {
        for (what, v) in [
            ("the username", username),
            ("the request URI", uri),
            ("the client nonce", cnonce),
            ("the method", method),
            ("the realm", self.realm.as_str()),
            ("the nonce", self.nonce.as_str()),
            ("the opaque value", self.opaque.as_deref().unwrap_or("")),
            (
                "the algorithm",
                self.algorithm_token.as_deref().unwrap_or(""),
            ),
        ] {
            if v.chars().any(char::is_control) {
                return Err(DigestError::Unsendable(what));
            }
        }
        let mut ha1 = self.h(&format!("{username}:{}:{password}", self.realm));
        if self.sess {
            ha1 = self.h(&format!("{ha1}:{}:{cnonce}", self.nonce));
        }
        let ha2 = self.h(&format!("{method}:{uri}"));
        let nc = format!("{nc:08x}");
        let response = if self.qop_auth {
            self.h(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", self.nonce))
        } else {
            self.h(&format!("{ha1}:{}:{ha2}", self.nonce))
        };
        let q = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let mut out = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{response}\"",
            q(username),
            q(&self.realm),
            q(&self.nonce),
            q(uri)
        );
        if let Some(a) = &self.algorithm_token {
            let _ = write!(out, ", algorithm={a}");
        }
        if self.qop_auth {
            let _ = write!(out, ", qop=auth, nc={nc}, cnonce=\"{}\"", q(cnonce));
        }
        if let Some(o) = &self.opaque {
            let _ = write!(out, ", opaque=\"{}\"", q(o));
        }
        Ok(out)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response_of(auth: &str) -> &str {
        let i = auth.find("response=\"").unwrap() + 10;
        &auth[i..i + auth[i..].find('"').unwrap()]
    }

    /// RFC 7616 §3.9.1: the same request answered with SHA-256 and MD5.
    #[test]
    fn rfc7616_examples() {
        let base = r#"realm="http-auth@example.org", qop="auth, auth-int", nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let sha = Challenge::parse(&format!("Digest {base}, algorithm=SHA-256")).unwrap();
        assert_eq!(
            (sha.algorithm, sha.sess, sha.qop_auth),
            (Algorithm::Sha256, false, true)
        );
        let a = sha
            .answer(
                "Mufasa",
                "Circle of Life",
                "GET",
                "/dir/index.html",
                cnonce,
                1,
            )
            .unwrap();
        assert_eq!(
            response_of(&a),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        assert!(
            a.contains("algorithm=SHA-256") && a.contains("nc=00000001"),
            "{a}"
        );
        assert!(
            a.contains("opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""),
            "{a}"
        );
        let md5 = Challenge::parse(&format!("Digest {base}, algorithm=MD5")).unwrap();
        let a = md5
            .answer(
                "Mufasa",
                "Circle of Life",
                "GET",
                "/dir/index.html",
                cnonce,
                1,
            )
            .unwrap();
        assert_eq!(response_of(&a), "8ca523f5e9506fed4657c9700eebdbec");
    }

    /// RFC 2617 §3.5 (MD5, algorithm not named).
    #[test]
    fn rfc2617_example() {
        let c = Challenge::parse(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .unwrap();
        let a = c
            .answer(
                "Mufasa",
                "Circle Of Life",
                "GET",
                "/dir/index.html",
                "0a4f113b",
                1,
            )
            .unwrap();
        assert_eq!(response_of(&a), "6629fae49393a05397450978507c4ef1");
        assert!(!a.contains("algorithm="), "not named in the challenge: {a}");
    }

    #[test]
    fn sip_challenges_without_qop_and_stale_ones() {
        let c =
            Challenge::parse(r#"Digest realm="sip.example.com", nonce="abc", stale=TRUE"#).unwrap();
        assert!(c.stale && !c.qop_auth);
        let a = c
            .answer(
                "alice",
                "secret",
                "INVITE",
                "sip:+15550001@sip.example.com",
                "x",
                1,
            )
            .unwrap();
        // RFC 2069 form: H(HA1:nonce:HA2), no qop/nc/cnonce.
        let ha1 = hex(&Md5::digest(b"alice:sip.example.com:secret"));
        let ha2 = hex(&Md5::digest(b"INVITE:sip:+15550001@sip.example.com"));
        let want = hex(&Md5::digest(format!("{ha1}:abc:{ha2}").as_bytes()));
        assert_eq!(response_of(&a), want);
        assert!(!a.contains("qop"), "{a}");
    }

    /// MD5-sess against an independent implementation: python-requests
    /// 2.34 `HTTPDigestAuth` answered this challenge with this cnonce.
    #[test]
    fn md5_sess_matches_an_independent_implementation() {
        let c = Challenge::parse(
            r#"Digest realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", qop="auth", algorithm=MD5-sess"#,
        )
        .unwrap();
        let a = c
            .answer(
                "Mufasa",
                "Circle of Life",
                "GET",
                "/dir/index.html",
                "3dc668e0547feaf4",
                1,
            )
            .unwrap();
        assert_eq!(response_of(&a), "31ed23817bd75ff7d58c8d6130337a73");
    }

    #[test]
    fn sess_variants_hash_the_nonces_into_ha1() {
        let c =
            Challenge::parse(r#"Digest realm="r", nonce="n", qop="auth", algorithm=SHA-256-sess"#)
                .unwrap();
        assert!(c.sess);
        let a = c.answer("u", "p", "INVITE", "sip:x@y", "cn", 2).unwrap();
        let h = |s: String| hex(&Sha256::digest(s.as_bytes()));
        let ha1 = h(format!("{}:n:cn", h("u:r:p".into())));
        let ha2 = h("INVITE:sip:x@y".into());
        assert_eq!(
            response_of(&a),
            h(format!("{ha1}:n:00000002:cn:auth:{ha2}"))
        );
    }

    #[test]
    fn several_challenges_pick_the_strongest_and_parse_alone_refuses_them() {
        let both = r#"Digest realm="a", nonce="n1", algorithm=MD5, Digest realm="b", nonce="n2", algorithm=SHA-256"#;
        assert!(matches!(
            Challenge::parse(both),
            Err(DigestError::Malformed(_))
        ));
        let c = Challenge::preferred(&[both]).unwrap();
        assert_eq!(
            (c.realm.as_str(), c.nonce.as_str(), c.algorithm),
            ("b", "n2", Algorithm::Sha256)
        );
        // Across header lines, skipping schemes we do not do.
        let c = Challenge::preferred(&[
            r#"Basic realm="x""#,
            r#"Digest realm="r", nonce="n", algorithm=MD5"#,
        ])
        .unwrap();
        assert_eq!(c.algorithm, Algorithm::Md5);
        assert_eq!(
            Challenge::preferred(&[r#"Digest realm="r", nonce="n", algorithm=SHA-512-256"#]),
            Err(DigestError::Algorithm("SHA-512-256".into())),
            "the reason the only Digest challenge was refused"
        );
        assert!(matches!(
            Challenge::preferred(&[r#"Basic realm="x""#]),
            Err(DigestError::NotDigest(_))
        ));
    }

    #[test]
    fn sess_without_qop_repeated_parameters_and_header_injection_are_refused() {
        assert_eq!(
            Challenge::parse(r#"Digest realm="r", nonce="n", algorithm=MD5-sess"#),
            Err(DigestError::SessWithoutQop("MD5-sess".into()))
        );
        assert!(matches!(
            Challenge::parse(r#"Digest realm="r", nonce="n", nonce="m""#),
            Err(DigestError::Malformed(m)) if m.contains("nonce is given twice")
        ));
        let c = Challenge::parse(r#"Digest realm="r", nonce="n""#).unwrap();
        assert_eq!(
            c.answer("u\r\nVia: evil", "p", "INVITE", "sip:x@y", "c", 1),
            Err(DigestError::Unsendable("the username"))
        );
        let c = Challenge::parse("Digest realm=\"r\", nonce=\"n\u{7}\"").unwrap();
        assert_eq!(
            c.answer("u", "p", "INVITE", "sip:x@y", "c", 1),
            Err(DigestError::Unsendable("the nonce"))
        );
        assert!(matches!(
            Challenge::parse(r#"Digest realm="r", nonce="n", algorithm="MD5, x=1""#),
            Err(DigestError::Algorithm(_))
        ));
    }

    #[test]
    fn challenges_we_cannot_answer_say_why() {
        assert!(matches!(
            Challenge::parse("Basic realm=\"x\""),
            Err(DigestError::NotDigest(_))
        ));
        assert_eq!(
            Challenge::parse("Digest nonce=\"n\""),
            Err(DigestError::Missing("realm"))
        );
        assert_eq!(
            Challenge::parse("Digest realm=\"r\""),
            Err(DigestError::Missing("nonce"))
        );
        assert_eq!(
            Challenge::parse("Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512-256"),
            Err(DigestError::Algorithm("SHA-512-256".into()))
        );
        assert_eq!(
            Challenge::parse("Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\""),
            Err(DigestError::Qop("auth-int".into()))
        );
        assert!(matches!(
            Challenge::parse("Digest realm=\"r, nonce=n"),
            Err(DigestError::Malformed(_))
        ));
    }
}
