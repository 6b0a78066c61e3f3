//! Routing by destination prefix across SMSCs (longest prefix wins).

use super::client::SmscClient;

/// Chooses an SMSC for a destination number.
#[derive(Debug, Clone, Default)]
pub struct Router {
    smscs: Vec<SmscClient>,
    /// (digits prefix, index into smscs), longest first.
    routes: Vec<(String, usize)>,
    default: Option<usize>,
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Router::default()
    }

    /// Adds an SMSC serving these prefixes (digits, `+` ignored); an empty
    /// list makes it the default route (the first such SMSC wins).
    pub fn add(&mut self, smsc: SmscClient, prefixes: &[String]) {
        let idx = self.smscs.len();
        self.smscs.push(smsc);
        if prefixes.is_empty() {
            self.default.get_or_insert(idx);
        }
        for p in prefixes {
            self.routes
                .push((p.trim_start_matches('+').to_string(), idx));
        }
        self.routes.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
    }

    /// The SMSC for `dest` (E.164 digits, with or without `+`).
    pub fn route(&self, dest: &str) -> Option<&SmscClient> {
        let d = dest.trim_start_matches('+');
        self.routes
            .iter()
            .find(|(p, _)| d.starts_with(p.as_str()))
            .map(|(_, i)| *i)
            .or(self.default)
            .map(|i| &self.smscs[i])
    }

    /// All SMSCs.
    pub fn smscs(&self) -> &[SmscClient] {
        &self.smscs
    }
}
