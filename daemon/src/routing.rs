//! Routing by destination prefix, shared by SMSCs and SIP trunks: the
//! longest matching prefix first, then shorter ones, then the default
//! routes (those with no prefixes) in the order they were added.

/// Destination prefixes → route indexes.
#[derive(Debug, Clone, Default)]
pub struct PrefixRoutes {
    /// (digits prefix, route), longest prefix first.
    routes: Vec<(String, usize)>,
    defaults: Vec<usize>,
}

impl PrefixRoutes {
    /// Adds route `idx` for these prefixes (digits, `+` ignored); an empty
    /// list makes it a default route.
    pub fn add(&mut self, idx: usize, prefixes: &[String]) {
        if prefixes.is_empty() {
            self.defaults.push(idx);
        }
        for p in prefixes {
            self.routes
                .push((p.trim_start_matches('+').to_string(), idx));
        }
        // Stable: among equal lengths, the order of adding.
        self.routes.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
    }

    /// The routes that would take `dest` (E.164, with or without `+`), in
    /// the order to try them.
    pub fn candidates<'a>(&'a self, dest: &'a str) -> impl Iterator<Item = usize> + 'a {
        let d = dest.trim_start_matches('+');
        self.routes
            .iter()
            .filter(move |(p, _)| d.starts_with(p.as_str()))
            .map(|(_, i)| *i)
            .chain(self.defaults.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_first_then_defaults_in_order() {
        let mut r = PrefixRoutes::default();
        r.add(0, &[]);
        r.add(1, &["+44".into()]);
        r.add(2, &["447".into()]);
        r.add(3, &[]);
        assert_eq!(
            r.candidates("+447400100200").collect::<Vec<_>>(),
            vec![2, 1, 0, 3]
        );
        assert_eq!(r.candidates("4420").collect::<Vec<_>>(), vec![1, 0, 3]);
        assert_eq!(r.candidates("+861390").collect::<Vec<_>>(), vec![0, 3]);
        let mut none = PrefixRoutes::default();
        none.add(0, &["44".into()]);
        assert_eq!(none.candidates("+33").count(), 0);
    }
}
