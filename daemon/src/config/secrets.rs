//! Secrets in the config file: each may be read from a file (`<key>_file`)
//! or an environment variable (`<key>_env`) instead of written inline, and
//! outside lab mode a secret that is a known lab or example value, or too
//! short to resist guessing, is refused.

use super::Config;

/// Where secrets live: (section or list of tables, key).
const SECRET_KEYS: &[(&str, &str)] = &[
    ("api", "admin_token"),
    ("smsc", "password"),
    ("sip_trunk", "password"),
    ("voice_gateway", "k1"),
    ("service", "api_key"),
    ("service", "webhook_secret"),
    ("bindings", "registry_api_key"),
    ("bindings", "registry_secret"),
    ("txrelay.front_ends", "api_key"),
    ("store", "url"),
];

/// Fewest characters of a secret outside lab mode.
pub const MIN_SECRET_LEN: usize = 16;

/// Secrets shipped in this repository's lab config, examples, docs and
/// tests, and the usual defaults: anyone can read them, so they protect
/// nothing.
const KNOWN_VALUES: &[&str] = &[
    "secret",
    "password",
    "passw0rd",
    "changeme",
    "admin",
    "test",
    "lab-secret",
    "lab-key-change-me",
    "lab-k1-change-me-0123456789",
    "lab-webhook-secret-0123",
    "lab-registry-secret-0123",
    "lab-front-end-key-0123",
    "123321",
    "123456",
    "change-me-at-least-16-chars",
    "example-key",
    "at-least-16-characters",
    "verigate",
];

/// Whether `v` is a value published with verigate or a common default.
pub fn is_known_value(v: &str) -> bool {
    let l = v.to_ascii_lowercase();
    KNOWN_VALUES.contains(&l.as_str()) || l.contains("change-me") || l.contains("changeme")
}

/// Replaces every `<key>_file` and `<key>_env` of [`SECRET_KEYS`] in `root`
/// by `<key>` holding what it names (variables read through `env`); each
/// problem names its key. (`api.admin_token_file` keeps its own meaning:
/// where a generated token is written; so `api` takes `admin_token_env` only.)
pub fn resolve_with(root: &mut toml::Value, env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(top) = root.as_table_mut() else {
        return problems;
    };
    for &(section, key) in SECRET_KEYS {
        // A dotted section is a table inside a table.
        let mut parts = section.split('.');
        let first = parts.next().expect("split gives one part");
        let mut here = top.get_mut(first);
        for part in parts {
            here = here
                .and_then(|v| v.as_table_mut())
                .and_then(|t| t.get_mut(part));
        }
        let tables: Vec<(String, &mut toml::Table)> = match here {
            Some(toml::Value::Table(t)) => vec![(section.to_string(), t)],
            Some(toml::Value::Array(a)) => a
                .iter_mut()
                .enumerate()
                .filter_map(|(i, v)| v.as_table_mut().map(|t| (format!("{section}[{i}]"), t)))
                .collect(),
            _ => Vec::new(),
        };
        for (at, t) in tables {
            let from_file = if section == "api" {
                None
            } else {
                t.remove(&format!("{key}_file"))
            };
            let from_env = t.remove(&format!("{key}_env"));
            let given = [t.contains_key(key), from_file.is_some(), from_env.is_some()];
            if given.iter().filter(|g| **g).count() > 1 {
                problems.push(format!(
                    "{at}.{key}: give one of {key}, {key}_file and {key}_env"
                ));
                continue;
            }
            let value = match (from_file, from_env) {
                (Some(toml::Value::String(path)), _) => match std::fs::read_to_string(&path) {
                    // A file written by `echo` ends in a newline the secret does not have.
                    Ok(text) => text.trim_end_matches(['\n', '\r']).to_string(),
                    Err(e) => {
                        problems.push(format!("{at}.{key}_file = {path:?}: cannot read it: {e}"));
                        continue;
                    }
                },
                (_, Some(toml::Value::String(var))) => match env(&var) {
                    Some(v) => v,
                    None => {
                        problems.push(format!(
                            "{at}.{key}_env = {var:?}: the environment variable is not set"
                        ));
                        continue;
                    }
                },
                (Some(_), _) => {
                    problems.push(format!("{at}.{key}_file: must be a path (a string)"));
                    continue;
                }
                (_, Some(_)) => {
                    problems.push(format!(
                        "{at}.{key}_env: must be a variable name (a string)"
                    ));
                    continue;
                }
                (None, None) => continue,
            };
            t.insert(key.to_string(), toml::Value::String(value));
        }
    }
    problems
}

/// Secrets that would be refused outside lab mode (see the module docs).
pub fn problems(c: &Config, p: &mut Vec<String>) {
    if c.lab.is_lab() {
        return;
    }
    let fix = "choose your own, read it from a file (<key>_file) or the environment \
               (<key>_env), or set lab = true for a lab";
    let mut check = |key: String, v: &str, min_len: usize| {
        if is_known_value(v) {
            p.push(format!(
                "{key}: is a lab or example value anyone can read; {fix}"
            ));
        } else if v.chars().count() < min_len {
            p.push(format!(
                "{key}: must be at least {min_len} characters outside lab mode; {fix}"
            ));
        }
    };
    if !c.api.admin_token.is_empty() {
        check("api.admin_token".into(), &c.api.admin_token, MIN_SECRET_LEN);
    }
    for (i, s) in c.smsc.iter().enumerate() {
        // SMPP 3.4 caps a bind password at 8 octets: only known values are refused.
        if !s.password.is_empty() {
            check(format!("smsc[{i}] ({}).password", s.name), &s.password, 0);
        }
    }
    for (i, t) in c.sip_trunk.iter().enumerate() {
        if !t.password.is_empty() {
            check(
                format!("sip_trunk[{i}] ({}).password", t.name),
                &t.password,
                MIN_SECRET_LEN,
            );
        }
    }
    for (i, g) in c.voice_gateway.iter().enumerate() {
        check(
            format!("voice_gateway[{i}] ({}).k1", g.sn),
            &g.k1,
            MIN_SECRET_LEN,
        );
    }
    for (i, b) in c.bindings.iter().enumerate() {
        for (key, v) in [
            ("registry_api_key", &b.registry_api_key),
            ("registry_secret", &b.registry_secret),
        ] {
            check(
                format!("bindings[{i}] ({}).{key}", b.service),
                v,
                MIN_SECRET_LEN,
            );
        }
    }
    for (i, f) in c.txrelay.front_ends.iter().enumerate() {
        check(
            format!("txrelay.front_ends[{i}] ({}).api_key", f.name),
            &f.api_key,
            MIN_SECRET_LEN,
        );
    }
    for (i, s) in c.service.iter().enumerate() {
        if let Some(k) = &s.api_key {
            check(
                format!("service[{i}] ({}).api_key", s.code),
                k,
                MIN_SECRET_LEN,
            );
        }
        if let Some(w) = &s.webhook_secret {
            check(
                format!("service[{i}] ({}).webhook_secret", s.code),
                w,
                MIN_SECRET_LEN,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(text: &str, env: &[(&str, &str)]) -> (toml::Value, Vec<String>) {
        let mut v: toml::Value = toml::from_str(text).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let p = resolve_with(&mut v, &|n| {
            env.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone())
        });
        (v, p)
    }

    #[test]
    fn secrets_are_read_from_files_and_the_environment() {
        let dir = std::env::temp_dir().join(format!("vg-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("k1");
        std::fs::write(&f, "from-a-file-0123456789\n").unwrap();
        let text = format!(
            "[api]\nadmin_token_env = \"ADMIN\"\n[[smsc]]\npassword_env = \"SMPP\"\n\
             [[voice_gateway]]\nk1_file = {:?}\n[[service]]\napi_key = \"inline\"\n",
            f.display().to_string()
        );
        let (v, p) = resolved(&text, &[("ADMIN", "tok"), ("SMPP", "pw")]);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(v["api"]["admin_token"].as_str(), Some("tok"));
        assert_eq!(v["smsc"][0]["password"].as_str(), Some("pw"));
        assert_eq!(
            v["voice_gateway"][0]["k1"].as_str(),
            Some("from-a-file-0123456789")
        );
        assert_eq!(v["service"][0]["api_key"].as_str(), Some("inline"));
        assert!(v["smsc"][0].get("password_env").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_variable_or_file_or_two_sources_name_the_key() {
        let (_, p) = resolved(
            "[[smsc]]\npassword_env = \"NOPE\"\n[[voice_gateway]]\nk1_file = \"/nonexistent/k1\"\n\
             [[service]]\napi_key = \"a\"\napi_key_env = \"B\"\n",
            &[],
        );
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0]
            .starts_with("smsc[0].password_env = \"NOPE\": the environment variable is not set"));
        assert!(p[1].starts_with("voice_gateway[0].k1_file = \"/nonexistent/k1\": cannot read it"));
        assert!(
            p[2].contains("service[0].api_key: give one of api_key, api_key_file and api_key_env")
        );
    }

    #[test]
    fn published_values_are_known() {
        for v in [
            "secret",
            "lab-key-change-me",
            "123321",
            "Change-Me-Please-0123456",
        ] {
            assert!(is_known_value(v), "{v}");
        }
        assert!(!is_known_value("q8WvN3x7Lr2ZpK5tY9cB"));
    }
}
