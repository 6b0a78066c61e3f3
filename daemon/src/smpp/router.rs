//! Routing by destination prefix across SMSCs (longest prefix wins).

use super::client::SmscClient;

/// Why a destination has no SMSC now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoRoute {
    /// No prefix matches and there is no default route (configuration).
    #[error("no SMSC route for this destination")]
    Unrouted,
    /// Every SMSC that would take it is disabled (temporary).
    #[error("every SMSC routing this destination is disabled")]
    Disabled,
}

/// Chooses an SMSC for a destination number.
#[derive(Debug, Clone, Default)]
pub struct Router {
    smscs: Vec<SmscClient>,
    /// Each SMSC's configured prefixes (parallel to `smscs`).
    prefixes: Vec<Vec<String>>,
    routes: crate::routing::PrefixRoutes,
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Router::default()
    }

    /// Adds an SMSC serving these prefixes (digits, `+` ignored); an empty
    /// list makes it a default route (several are tried in order).
    pub fn add(&mut self, smsc: SmscClient, prefixes: &[String]) {
        self.routes.add(self.smscs.len(), prefixes);
        self.smscs.push(smsc);
        self.prefixes.push(prefixes.to_vec());
    }

    /// The SMSC for `dest` (E.164 digits, with or without `+`): the longest
    /// matching prefix whose SMSC is enabled, then shorter ones, then the
    /// default route — so disabling an SMSC moves its traffic to the next
    /// route that would take it.
    pub fn route(&self, dest: &str) -> Result<&SmscClient, NoRoute> {
        let mut candidates = self.routes.candidates(dest).peekable();
        if candidates.peek().is_none() {
            return Err(NoRoute::Unrouted);
        }
        candidates
            .map(|i| &self.smscs[i])
            .find(|c| c.is_enabled())
            .ok_or(NoRoute::Disabled)
    }

    /// The SMSC with this configured name.
    pub fn by_name(&self, name: &str) -> Option<&SmscClient> {
        self.smscs.iter().find(|c| c.name() == name)
    }

    /// Each SMSC with the prefixes routed to it (empty: default route).
    pub fn with_prefixes(&self) -> impl Iterator<Item = (&SmscClient, &[String])> {
        self.smscs
            .iter()
            .zip(self.prefixes.iter().map(Vec::as_slice))
    }

    /// All SMSCs.
    pub fn smscs(&self) -> &[SmscClient] {
        &self.smscs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smpp::SmscConfig;

    fn client(name: &str) -> SmscClient {
        // Port 9 on loopback refuses: the binds just retry in the background.
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        SmscClient::start(
            SmscConfig::new(name, "127.0.0.1", 9, "s", "p"),
            tx,
            crate::random::Random::os(),
        )
    }

    #[tokio::test]
    async fn longest_enabled_prefix_then_default() {
        let mut r = Router::new();
        r.add(client("uk-mobile"), &["+447".into()]);
        r.add(client("uk"), &["44".into()]);
        r.add(client("world"), &[]);
        let name = |d: &str| r.route(d).map(|c| c.name().to_string());
        assert_eq!(name("+447400123456"), Ok("uk-mobile".into()));
        assert_eq!(name("442071234567"), Ok("uk".into()));
        assert_eq!(name("+8613800138000"), Ok("world".into()));
        r.by_name("uk-mobile").unwrap().set_enabled(false);
        assert_eq!(name("+447400123456"), Ok("uk".into()));
        r.by_name("uk").unwrap().set_enabled(false);
        assert_eq!(name("+447400123456"), Ok("world".into()));
        r.by_name("world").unwrap().set_enabled(false);
        assert_eq!(name("+447400123456"), Err(NoRoute::Disabled));
        // A submit handed to a disabled SMSC is refused at once.
        let rx = r
            .by_name("world")
            .unwrap()
            .submit_sm(verigate_codecs::smpp::SubmitSm::default())
            .await;
        assert_eq!(rx.await.unwrap(), Err(crate::smpp::SubmitError::Disabled));
        assert!(!r.by_name("world").unwrap().set_enabled(false), "no change");
        assert!(r.by_name("uk-mobile").unwrap().set_enabled(true));
        assert_eq!(name("+447400123456"), Ok("uk-mobile".into()));
    }

    #[tokio::test]
    async fn no_default_route_is_unrouted() {
        let mut r = Router::new();
        r.add(client("cn"), &["86".into()]);
        assert_eq!(r.route("+447400123456").err(), Some(NoRoute::Unrouted));
        assert!(r.route("+8613800138000").is_ok());
    }
}
