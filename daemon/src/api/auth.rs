//! Request context: the calling service (Bearer API key), the client IP,
//! and the Idempotency-Key header.

use super::problem::{Problem, ProblemCode};
use crate::app::AppState;
use crate::store::Service;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

/// The service whose API key authenticated the request.
#[derive(Debug, Clone)]
pub struct Caller(pub Service);

#[axum::async_trait]
impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let Some(key) = bearer_token(&parts.headers) else {
            return Err(Problem::unauthorized(
                "send the API key as `Authorization: Bearer <key>`",
            ));
        };
        let hash = state.api_key_hash(key);
        let now = state.clock.now_ms();
        let ClientIp(ip) = match ClientIp::from_request_parts(parts, state).await {
            Ok(ip) => ip,
            Err(never) => match never {},
        };
        let generation = match state.callers.get(&hash) {
            Ok(svc) => return Ok(Caller(svc)),
            Err(generation) => generation,
        };
        // Whoever guessed wrong too often from here is stopped before the
        // store is asked again.
        if let Some(retry) = ip.and_then(|ip| state.auth_failures.blocked(ip, now)) {
            return Err(Problem::rate_limited(
                "too many requests with a wrong API key from this address",
                retry,
            ));
        }
        // One answer for unknown keys, revoked keys and keys of a removed
        // service: the caller learns nothing about which services exist.
        let invalid = || {
            if let Some(ip) = ip {
                state.auth_failures.failed(ip, now);
            }
            Problem::unauthorized("the API key is not valid")
        };
        let rec = state.store.find_api_key(&hash).await?.ok_or_else(invalid)?;
        let svc = state
            .store
            .get_service(&rec.service)
            .await?
            .ok_or_else(invalid)?;
        state.callers.put(generation, hash, svc.clone());
        Ok(Caller(svc))
    }
}

/// The key of `Authorization: Bearer <key>` (scheme case-insensitive).
pub(super) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, key) = v.split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
}

/// The client's IP: the peer address, or the first `X-Forwarded-For`
/// entry when the deployment trusts its proxy. None when neither is known.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

#[axum::async_trait]
impl FromRequestParts<AppState> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        if state.trust_forwarded_for {
            if let Some(ip) = forwarded_for(&parts.headers) {
                return Ok(ClientIp(Some(ip)));
            }
        }
        let peer = ConnectInfo::<SocketAddr>::from_request_parts(parts, state)
            .await
            .ok()
            .map(|ConnectInfo(addr)| addr.ip());
        Ok(ClientIp(peer))
    }
}

/// The last `X-Forwarded-For` entry (`ip` or `ip:port`) over all such
/// headers: the address our own proxy saw. Earlier entries come from the
/// client and can be anything, so trusting them would let a caller pick
/// its own rate-limit bucket. (One trusted proxy in front of verigate.)
fn forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    let last = headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()?
        .to_str()
        .ok()?
        .rsplit(',')
        .next()?
        .trim();
    last.parse::<IpAddr>()
        .ok()
        .or_else(|| last.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// The `Idempotency-Key` header, if sent (1–255 printable ASCII characters).
#[derive(Debug, Clone)]
pub struct IdempotencyKey(pub Option<String>);

/// Longest accepted Idempotency-Key.
pub const IDEMPOTENCY_KEY_MAX: usize = 255;

#[axum::async_trait]
impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let mut values = parts.headers.get_all("idempotency-key").iter();
        let Some(v) = values.next() else {
            return Ok(IdempotencyKey(None));
        };
        let bad = |why: &str| {
            Problem::new(
                ProblemCode::InvalidIdempotencyKey,
                format!("Idempotency-Key {why}: use 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters"),
            )
        };
        if values.next().is_some() {
            return Err(bad("was sent more than once"));
        }
        let b = v.as_bytes();
        if b.is_empty() {
            return Err(bad("is empty"));
        }
        if b.len() > IDEMPOTENCY_KEY_MAX {
            return Err(bad("is too long"));
        }
        if !b.iter().all(|c| (0x20..=0x7e).contains(c)) {
            return Err(bad("has characters that are not printable ASCII"));
        }
        // All bytes are ASCII, so this cannot fail.
        let s = v.to_str().map_err(|_| bad("is not ASCII"))?;
        Ok(IdempotencyKey(Some(s.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer_token(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  abc "),
        );
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer_token(&h), None);
    }

    #[test]
    fn forwarded_for_takes_the_entry_our_proxy_added() {
        let mut h = HeaderMap::new();
        // A client-supplied entry first, our proxy's last.
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("198.51.100.9, 203.0.113.5"),
        );
        assert_eq!(forwarded_for(&h), "203.0.113.5".parse().ok());
        h.append("x-forwarded-for", HeaderValue::from_static("192.0.2.7"));
        assert_eq!(forwarded_for(&h), "192.0.2.7".parse().ok());
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("[2001:db8::1]:443"),
        );
        assert_eq!(forwarded_for(&h), "2001:db8::1".parse().ok());
        h.insert("x-forwarded-for", HeaderValue::from_static("garbage"));
        assert_eq!(forwarded_for(&h), None);
    }
}
