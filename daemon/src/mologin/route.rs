//! Which service handles a mobile-originated SMS: by the short code it was
//! sent to and, optionally, a keyword it starts with. MO login routes with
//! it; the number registry's short code is taken before MO login sees an MO
//! (`inbound::MoHandlers`).

/// Who handles a routed MO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// MO-SMS login.
    MoLogin,
}

#[derive(Debug, Clone)]
struct Route {
    short_code: String,
    /// Upper-case keyword the text must start with (none: any text).
    keyword: Option<String>,
    handler: Handler,
}

/// The routes, most specific first: a keyword route wins over the short
/// code's catch-all.
#[derive(Debug, Clone, Default)]
pub struct MoRouter {
    routes: Vec<Route>,
}

impl MoRouter {
    /// Routes MOs to `short_code` (starting with `keyword`, if given) to `handler`.
    pub fn add(&mut self, short_code: &str, keyword: Option<&str>, handler: Handler) {
        self.routes.push(Route {
            short_code: short_code.to_string(),
            keyword: keyword.map(str::to_ascii_uppercase),
            handler,
        });
        // Keyword routes before catch-alls, longer keywords first.
        self.routes
            .sort_by_key(|r| std::cmp::Reverse(r.keyword.as_ref().map_or(0, |k| k.len() + 1)));
    }

    /// The handler for an MO to `dest` with `text`, if any route takes it.
    /// The destination must be the short code exactly (a leading "+" aside):
    /// a suffix match would take MOs to any number ending in it.
    pub fn route(&self, dest: &str, text: &str) -> Option<Handler> {
        let dest = dest.trim_start_matches('+');
        let head = text.trim_start().to_uppercase();
        self.routes
            .iter()
            .find(|r| {
                dest == r.short_code
                    && r.keyword
                        .as_ref()
                        .is_none_or(|k| head.starts_with(k.as_str()))
            })
            .map(|r| r.handler)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_short_code_and_keyword() {
        let mut r = MoRouter::default();
        r.add("7799", None, Handler::MoLogin);
        assert_eq!(r.route("7799", "LOGIN ABCD2345"), Some(Handler::MoLogin));
        assert_eq!(r.route("+7799", "anything"), Some(Handler::MoLogin));
        // Not a suffix match: a number ending in the short code is not it.
        assert_eq!(r.route("+447799", "anything"), None);
        assert_eq!(r.route("17799", "LOGIN ABCD2345"), None);
        assert_eq!(r.route("8800", "LOGIN ABCD2345"), None);
        let mut k = MoRouter::default();
        k.add("7799", Some("login"), Handler::MoLogin);
        assert_eq!(k.route("7799", " login x"), Some(Handler::MoLogin));
        assert_eq!(k.route("7799", "UNBIND ALL"), None);
    }
}
