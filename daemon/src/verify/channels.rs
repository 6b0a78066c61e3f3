//! What the call channels need at start time: which voice locales exist
//! and the flash-call settings (`flashcall::settings`).

use crate::config::Config;
use crate::flashcall::{FlashSettings, PoolError};

/// The call channels' settings (absent channels are refused at start).
#[derive(Debug, Clone, Default)]
pub struct CallChannels {
    /// Locales voice calls read codes in; empty when no trunk is configured.
    pub voice_locales: Vec<String>,
    /// None when no trunk or no pool is configured.
    pub flash: Option<FlashSettings>,
    /// Why the call channels are unavailable, if they are.
    pub unavailable: Option<String>,
}

impl CallChannels {
    /// From a validated configuration.
    pub fn from_config(c: &Config) -> Result<Self, PoolError> {
        if c.sip_trunk.is_empty() {
            return Ok(CallChannels {
                unavailable: Some("no SIP trunk is configured ([[sip_trunk]])".into()),
                ..Default::default()
            });
        }
        Ok(CallChannels {
            voice_locales: c.voice.locales.clone(),
            flash: FlashSettings::from_config(c)?,
            unavailable: None,
        })
    }
}
