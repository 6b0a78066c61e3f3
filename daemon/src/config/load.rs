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
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: p.clone(),
        source,
    })?;
    load_str(&text, &p, sets)
}

/// Like [`load`] on a string; `path` is used in messages.
pub fn load_str(text: &str, path: &str, sets: &[String]) -> Result<Config, ConfigError> {
    let mut value: toml::Value = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.into(),
        message: e.to_string(),
    })?;
    for s in sets {
        apply_set(&mut value, s)?;
    }
    let cfg: Config = Config::deserialize_value(value).map_err(|e| ConfigError::Parse {
        path: path.into(),
        message: e,
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

impl Config {
    fn deserialize_value(v: toml::Value) -> Result<Config, String> {
        // Track the path so the message names the key, e.g. `api.bogus`.
        serde_path_to_error::deserialize(v).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().message().to_string();
            if path.is_empty() || path == "." {
                inner
            } else {
                format!("{path}: {inner}")
            }
        })
    }
}

/// Applies `a.b.c=value`; `value` is read as TOML (number, bool, string,
/// array) and taken as a plain string if it does not parse. Array elements
/// are addressed by index: `smsc.0.port=2776`.
fn apply_set(root: &mut toml::Value, set: &str) -> Result<(), ConfigError> {
    let (key, raw) = set.split_once('=').ok_or_else(|| {
        ConfigError::Override(format!("{set:?} must look like section.key=value"))
    })?;
    let key = key.trim();
    if key.is_empty() {
        return Err(ConfigError::Override(format!("{set:?} names no key")));
    }
    let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let parts: Vec<&str> = key.split('.').collect();
    let mut cur = root;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        cur = match cur {
            toml::Value::Table(t) => {
                if last {
                    t.insert((*part).to_string(), value);
                    return Ok(());
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
                    *el = value;
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
