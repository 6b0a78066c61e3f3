//! Randomness as an input: every code, token, id, password, SIP tag and RTP
//! SSRC the daemon makes is drawn from a [`Random`] handed to the service
//! or engine that makes it. Production uses the OS CSPRNG; tests may use a
//! seeded ChaCha generator (also a CSPRNG) to repeat a run exactly.

use crate::clock::Millis;
use rand::rngs::{OsRng, StdRng};
use rand::{CryptoRng, Rng, RngCore, SeedableRng};
use std::sync::{Arc, Mutex};

/// A cryptographically secure random source. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct Random(Kind);

#[derive(Clone)]
enum Kind {
    Os,
    Seeded(Arc<Mutex<StdRng>>),
}

impl std::fmt::Debug for Random {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Kind::Os => "Random(os)",
            Kind::Seeded(_) => "Random(seeded)",
        })
    }
}

impl Random {
    /// The operating system's CSPRNG (production).
    pub fn os() -> Self {
        Random(Kind::Os)
    }

    /// A ChaCha generator from `seed`: the same draws every run (tests only;
    /// a known seed makes every secret predictable).
    pub fn seeded(seed: u64) -> Self {
        Random(Kind::Seeded(Arc::new(Mutex::new(StdRng::seed_from_u64(
            seed,
        )))))
    }

    /// A generator to draw from (`gen`, `gen_range`, `fill`, …).
    pub fn rng(&self) -> Draw<'_> {
        Draw(self)
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&self, buf: &mut [u8]) {
        self.rng().fill_bytes(buf);
    }

    /// `bytes` random bytes in lower-case hex.
    pub fn hex(&self, bytes: usize) -> String {
        let mut b = vec![0u8; bytes];
        self.fill(&mut b);
        hex::encode(b)
    }

    /// An opaque id with a type prefix, e.g. `vf_019a…`: the creation time
    /// `now` in milliseconds (48 bits), then 96 random bits. Time first, so
    /// new rows go to the end of the primary-key index instead of dirtying a
    /// random page of it per insert (the store's write cost stays flat as
    /// tables grow); the random part keeps ids unguessable.
    pub fn id(&self, prefix: &str, now: Millis) -> String {
        let rand: [u8; 12] = self.rng().gen();
        format!(
            "{prefix}_{:012x}{}",
            (now.max(0) as u64) & 0xffff_ffff_ffff,
            hex::encode(rand)
        )
    }
}

/// A borrowed [`Random`] as a `rand` generator.
#[derive(Debug)]
pub struct Draw<'a>(&'a Random);

impl RngCore for Draw<'_> {
    fn next_u32(&mut self) -> u32 {
        match &self.0 .0 {
            Kind::Os => OsRng.next_u32(),
            Kind::Seeded(r) => r.lock().expect("rng lock").next_u32(),
        }
    }

    fn next_u64(&mut self) -> u64 {
        match &self.0 .0 {
            Kind::Os => OsRng.next_u64(),
            Kind::Seeded(r) => r.lock().expect("rng lock").next_u64(),
        }
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        match &self.0 .0 {
            Kind::Os => OsRng.fill_bytes(dest),
            Kind::Seeded(r) => r.lock().expect("rng lock").fill_bytes(dest),
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        match &self.0 .0 {
            Kind::Os => OsRng.try_fill_bytes(dest),
            Kind::Seeded(r) => r.lock().expect("rng lock").try_fill_bytes(dest),
        }
    }
}

// Both sources are CSPRNGs (the OS generator, ChaCha12).
impl CryptoRng for Draw<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_lead_with_their_time_and_differ() {
        let r = Random::os();
        let a = r.id("vf", 0x0123_4567_89ab);
        assert!(a.starts_with("vf_0123456789ab"), "{a}");
        assert_eq!(a.len(), "vf_".len() + 12 + 24);
        assert_ne!(a, r.id("vf", 0x0123_4567_89ab));
        let later = r.id("vf", 0x0123_4567_89ac);
        assert!(later > a, "later ids sort after earlier ones");
        // Same millisecond: the random parts still differ.
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| r.id("x", 5)).collect();
        assert_eq!(ids.len(), 1000);
    }

    #[test]
    fn a_seeded_source_repeats_and_clones_share_it() {
        let (a, b) = (Random::seeded(7), Random::seeded(7));
        assert_eq!(a.hex(16), b.hex(16));
        let c = a.clone();
        let second = c.hex(16);
        assert_eq!(second, b.hex(16), "the clone drew a's second value");
        assert_ne!(a.hex(16), second, "and a went on after it");
        assert_ne!(Random::os().hex(16), Random::os().hex(16));
    }
}
