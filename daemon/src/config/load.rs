//! Reading a config file, applying `--set` overrides, validating.

use super::Config;
use std::path::Path;

/// Why a configuration cannot be used (the operator's file is at fault).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Not valid TOML, or a key/value does not fit the schema.
    #[error("{path}: {message}")]
    Parse {
        /// Path (or `<string>`).
        path: String,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A `--set` override is malformed or names no such key.
    #[error("--set {0}")]
    Override(String),
    /// Values parse but do not make sense together.
    #[error("{path}: invalid configuration:\n  - {}", problems.join("\n  - "))]
    Invalid {
        /// Path.
        path: String,
        /// Every problem found, each naming its key.
        problems: Vec<String>,
    },
}

/// Loads, overrides and validates a config file.
pub fn load(path: &Path, sets: &[String]) -> Result<Config, ConfigError> {
    load_with_env(path, sets, &|name| std::env::var(name).ok())
}

/// [`load`] reading `<key>_env` secrets through `env` instead of the
/// process environment (tests, tools checking a deployment's file).
pub fn load_with_env(
    path: &Path,
    sets: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: p.clone(),
        source,
    })?;
    load_str_with_env(&text, &p, sets, env)
}

/// Like [`load`] on a string; `path` is used in messages.
pub fn load_str(text: &str, path: &str, sets: &[String]) -> Result<Config, ConfigError> {
    load_str_with_env(text, path, sets, &|name| std::env::var(name).ok())
}

/// [`load_str`] with the environment given (see [`load_with_env`]).
pub fn load_str_with_env(
    text: &str,
    path: &str,
    sets: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let mut value: toml::Value = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.into(),
        message: e.to_string(),
    })?;
    let base = value.clone();
    for s in sets {
        apply_set(&mut value, s, None)?;
    }
    // Secrets named by file or variable are read before the schema sees them.
    let secret_problems = super::secrets::resolve_with(&mut value, env);
    if !secret_problems.is_empty() {
        return Err(ConfigError::Invalid {
            path: path.into(),
            problems: secret_problems,
        });
    }
    let mut result = Config::deserialize_value(value);
    if result.is_err() {
        // A value such as `verify.sender=12345` reads as a number, but the
        // key wants text: try each override taken literally as a string.
        for (i, _) in sets.iter().enumerate() {
            let mut v = base.clone();
            for (j, s) in sets.iter().enumerate() {
                apply_set(&mut v, s, Some(i == j))?;
            }
            super::secrets::resolve_with(&mut v, env);
            if let Ok(cfg) = Config::deserialize_value(v) {
                result = Ok(cfg);
                break;
            }
        }
    }
    let cfg: Config = result.map_err(|e| ConfigError::Parse {
        // With overrides the bad value may come from the command line.
        path: if sets.is_empty() {
            path.into()
        } else {
            format!("{path} with --set overrides")
        },
        message: e.to_string(),
    })?;
    let problems = cfg.problems();
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigError::Invalid {
            path: path.into(),
            problems,
        })
    }
}

/// A value that does not fit the schema, with the key it is under.
#[derive(Debug, thiserror::Error)]
#[error("{}{}", if .key.is_empty() || .key == "." { String::new() } else { format!("{}: ", .key) }, .source.message())]
struct SchemaMismatch {
    key: String,
    source: toml::de::Error,
}

impl Config {
    fn deserialize_value(v: toml::Value) -> Result<Config, SchemaMismatch> {
        // Track the path so the message names the key, e.g. `api.bogus`.
        serde_path_to_error::deserialize(v).map_err(|e| SchemaMismatch {
            key: e.path().to_string(),
            source: e.into_inner(),
        })
    }
}

/// Applies `a.b.c=value`; `value` is read as TOML (number, bool, string,
/// array) and taken as a plain string if it does not parse. Array elements
/// are addressed by index: `smsc.0.port=2776`.
///
/// `as_string`: `Some(true)` takes the value literally as a string,
/// `Some(false)`/`None` parse it (a string in the file stays a string).
fn apply_set(
    root: &mut toml::Value,
    set: &str,
    as_string: Option<bool>,
) -> Result<(), ConfigError> {
    let (key, raw) = set.split_once('=').ok_or_else(|| {
        ConfigError::Override(format!("{set:?} must look like section.key=value"))
    })?;
    let key = key.trim();
    if key.is_empty() {
        return Err(ConfigError::Override(format!("{set:?} names no key")));
    }
    let parsed = || -> toml::Value {
        toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.to_string()))
    };
    // Where the file has a string, the override is that string as written:
    // `verify.sender=12345` or a numeric password must not become a number.
    let value_for = |old: Option<&toml::Value>| match (as_string, old) {
        (Some(true), _) | (_, Some(toml::Value::String(_))) => toml::Value::String(raw.to_string()),
        _ => parsed(),
    };
    let parts: Vec<&str> = key.split('.').collect();
    let mut cur = root;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        cur = match cur {
            toml::Value::Table(t) => {
                if last {
                    let v = value_for(t.get(*part));
                    t.insert((*part).to_string(), v);
                    return Ok(());
                }
                if !t.contains_key(*part) && parts[i + 1].parse::<usize>().is_ok() {
                    return Err(ConfigError::Override(format!(
                        "{set:?}: there is no list `{}` to index; add it to the file first",
                        parts[..=i].join(".")
                    )));
                }
                t.entry((*part).to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            }
            toml::Value::Array(a) => {
                let idx: usize = part.parse().map_err(|_| {
                    ConfigError::Override(format!(
                        "{set:?}: `{}` is a list; address an element by number, e.g. {}.0",
                        parts[..i].join("."),
                        parts[..i].join(".")
                    ))
                })?;
                let len = a.len();
                let el = a.get_mut(idx).ok_or_else(|| {
                    ConfigError::Override(format!(
                        "{set:?}: `{}` has {len} element(s), no index {idx}",
                        parts[..i].join(".")
                    ))
                })?;
                if last {
                    *el = value_for(Some(el));
                    return Ok(());
                }
                el
            }
            _ => {
                return Err(ConfigError::Override(format!(
                    "{set:?}: `{}` is a value, not a section",
                    parts[..i].join(".")
                )))
            }
        };
    }
    Ok(())
}
