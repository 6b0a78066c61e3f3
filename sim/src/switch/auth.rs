//! The switch's side of digest authentication (a trunk that challenges
//! with 407): issue a challenge, check the answer with the same code the
//! daemon answers with, but from the server's inputs.

use verigate_codecs::sip::digest::Challenge;

/// The parameters of a `Digest …` credentials header.
pub fn params(header: &str) -> Option<Vec<(String, String)>> {
    let rest = header.trim().strip_prefix("Digest")?.trim_start();
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(' ' | ',' | '\t')) {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            name.push(c);
            chars.next();
        }
        if name.is_empty() {
            break;
        }
        chars.next()?; // '='
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '\\' => value.push(chars.next()?),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    Some(out)
}

/// Whether `header` answers our challenge (`realm`, one of `nonces`,
/// `algorithm`) for `user`/`password` and an INVITE.
pub fn verify(
    header: &str,
    realm: &str,
    nonces: &[String],
    algorithm: &str,
    user: &str,
    password: &str,
) -> bool {
    let Some(p) = params(header) else {
        return false;
    };
    let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let (Some(username), Some(nonce), Some(uri), Some(response)) =
        (get("username"), get("nonce"), get("uri"), get("response"))
    else {
        return false;
    };
    if username != user || get("realm") != Some(realm) || !nonces.iter().any(|n| n == nonce) {
        return false;
    }
    let Ok(ch) = Challenge::parse(&challenge(realm, nonce, algorithm)) else {
        return false;
    };
    let cnonce = get("cnonce").unwrap_or("");
    let nc = get("nc")
        .and_then(|n| u32::from_str_radix(n, 16).ok())
        .unwrap_or(1);
    let Ok(expected) = ch.answer(user, password, "INVITE", uri, cnonce, nc) else {
        return false;
    };
    params(&expected)
        .and_then(|e| e.into_iter().find(|(n, _)| n == "response").map(|(_, v)| v))
        .is_some_and(|r| r.eq_ignore_ascii_case(response))
}

/// The challenge header value.
pub fn challenge(realm: &str, nonce: &str, algorithm: &str) -> String {
    format!("Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={algorithm}, qop=\"auth\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_from_the_client_code_verifies_and_a_wrong_password_does_not() {
        for alg in ["MD5", "SHA-256"] {
            let ch = Challenge::parse(&challenge("sim", "n1", alg)).unwrap();
            let good = ch
                .answer("alice", "secret", "INVITE", "sip:+44@h", "c0ffee", 1)
                .unwrap();
            let nonces = vec!["n1".to_string()];
            assert!(
                verify(&good, "sim", &nonces, alg, "alice", "secret"),
                "{alg}"
            );
            assert!(!verify(&good, "sim", &nonces, alg, "alice", "wrong"));
            assert!(!verify(
                &good,
                "sim",
                &["n2".into()],
                alg,
                "alice",
                "secret"
            ));
        }
    }
}
