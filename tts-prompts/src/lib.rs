//! The prompts verigate speaks on voice calls, per locale (`en`, `zh`), and
//! the code that turns a verification code into G.711 audio.
//!
//! A locale is a directory of 8 kHz mono 16-bit PCM WAV files: `0.wav` …
//! `9.wav`, `code_is.wav`, `repeat.wav`, `press_1.wav`, `goodbye.wav`
//! (`regenerate.sh` makes them with espeak-ng). A set is checked whole when
//! it is loaded, so a missing or malformed file stops start-up with a clear
//! error instead of a silent call; it is encoded to G.711 once, and every
//! call reuses the bytes.
//!
//! [`recognise`] does the reverse for the simulated handset: it finds the
//! prompts in the audio a call carried, so tests assert the code the phone
//! heard.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;
use verigate_codecs::media::g711::{Law, FRAME_SAMPLES};

/// The prompts every locale has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prompt {
    /// A digit, 0–9 (a larger value is a bug: debug builds panic, release
    /// builds read 9).
    Digit(u8),
    /// "Your verification code is".
    CodeIs,
    /// "I repeat".
    Repeat,
    /// "Press 1 to hear it again".
    Press1,
    /// "Goodbye".
    Goodbye,
}

impl Prompt {
    /// Every prompt, in file order.
    pub const ALL: [Prompt; 14] = [
        Prompt::Digit(0),
        Prompt::Digit(1),
        Prompt::Digit(2),
        Prompt::Digit(3),
        Prompt::Digit(4),
        Prompt::Digit(5),
        Prompt::Digit(6),
        Prompt::Digit(7),
        Prompt::Digit(8),
        Prompt::Digit(9),
        Prompt::CodeIs,
        Prompt::Repeat,
        Prompt::Press1,
        Prompt::Goodbye,
    ];

    fn index(self) -> usize {
        match self {
            Prompt::Digit(d) => {
                debug_assert!(d <= 9, "Prompt::Digit({d})");
                usize::from(d.min(9))
            }
            Prompt::CodeIs => 10,
            Prompt::Repeat => 11,
            Prompt::Press1 => 12,
            Prompt::Goodbye => 13,
        }
    }

    /// The file name in a locale directory.
    pub fn file_name(self) -> String {
        match self {
            Prompt::Digit(d) => format!("{d}.wav"),
            Prompt::CodeIs => "code_is.wav".into(),
            Prompt::Repeat => "repeat.wav".into(),
            Prompt::Press1 => "press_1.wav".into(),
            Prompt::Goodbye => "goodbye.wav".into(),
        }
    }
}

/// Why a prompt set cannot be used (all are the operator's to fix: the
/// files or the configured directory).
#[derive(Debug, Error)]
pub enum PromptError {
    /// No directory for the locale.
    #[error("prompts: no directory {dir} for locale {locale:?}")]
    UnknownLocale {
        /// The locale.
        locale: String,
        /// Where it was looked for.
        dir: PathBuf,
    },
    /// A prompt file is missing.
    #[error("prompts: {path} is missing (each locale needs 0.wav–9.wav, code_is.wav, repeat.wav, press_1.wav, goodbye.wav)")]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// A prompt file is not a WAV we can read.
    #[error("prompts: {path} is not a readable WAV file: {why}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What the WAV reader said.
        why: String,
    },
    /// A WAV in the wrong format.
    #[error("prompts: {path} is {found}; prompts must be 8000 Hz mono 16-bit PCM (tts-prompts/regenerate.sh makes them)")]
    WrongFormat {
        /// The file.
        path: PathBuf,
        /// What it is.
        found: String,
    },
    /// A WAV with no sound.
    #[error("prompts: {path} holds no audio")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A WAV too short or too quiet to be a spoken prompt.
    #[error("prompts: {path} is {why}; a prompt must be at least 0.1 s of audible speech")]
    NotSpeech {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Two prompts with the same audio: a listener could not tell them apart.
    #[error("prompts: {a} and {b} are the same recording")]
    Duplicate {
        /// One file.
        a: PathBuf,
        /// The other.
        b: PathBuf,
    },
    /// A code with something other than digits.
    #[error("only digits can be read out, not {0:?}")]
    NotDigits(String),
}

/// The prompts of one locale, as 16-bit samples.
#[derive(Debug, Clone)]
pub struct PromptSet {
    locale: String,
    clips: Vec<Vec<i16>>,
}

/// The prompts directory shipped in this repository.
pub fn bundled_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl PromptSet {
    /// Loads and checks every prompt of `locale` from `root/locale/`.
    pub fn load(root: &Path, locale: &str) -> Result<Self, PromptError> {
        let dir = root.join(locale);
        if locale.is_empty() || locale.contains(['/', '\\', '.']) || !dir.is_dir() {
            return Err(PromptError::UnknownLocale {
                locale: locale.to_string(),
                dir,
            });
        }
        let mut clips: Vec<Vec<i16>> = Vec::with_capacity(Prompt::ALL.len());
        for p in Prompt::ALL {
            let path = dir.join(p.file_name());
            let clip = read_wav(&path)?;
            check_speech(&path, &clip)?;
            if let Some(i) = clips.iter().position(|c| *c == clip) {
                return Err(PromptError::Duplicate {
                    a: dir.join(Prompt::ALL[i].file_name()),
                    b: path,
                });
            }
            clips.push(clip);
        }
        Ok(Self {
            locale: locale.to_string(),
            clips,
        })
    }

    /// The locale.
    pub fn locale(&self) -> &str {
        &self.locale
    }

    /// One prompt's samples.
    pub fn samples(&self, p: Prompt) -> &[i16] {
        &self.clips[p.index()]
    }

    /// The set encoded in `law` (done once; calls share the result).
    pub fn encode(&self, law: Law) -> EncodedPrompts {
        EncodedPrompts {
            law,
            clips: self
                .clips
                .iter()
                .map(|c| {
                    let mut out = Vec::with_capacity(c.len());
                    law.encode_into(c, &mut out);
                    Arc::from(out)
                })
                .collect(),
        }
    }
}

fn read_wav(path: &Path) -> Result<Vec<i16>, PromptError> {
    let reader = match hound::WavReader::open(path) {
        Ok(r) => r,
        Err(hound::Error::IoError(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PromptError::Missing {
                path: path.to_path_buf(),
            })
        }
        Err(e) => {
            return Err(PromptError::Malformed {
                path: path.to_path_buf(),
                why: e.to_string(),
            })
        }
    };
    let spec = reader.spec();
    if spec.sample_rate != 8000
        || spec.channels != 1
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
    {
        return Err(PromptError::WrongFormat {
            path: path.to_path_buf(),
            found: format!(
                "{} Hz, {} channel(s), {}-bit {:?}",
                spec.sample_rate, spec.channels, spec.bits_per_sample, spec.sample_format
            ),
        });
    }
    let samples: Result<Vec<i16>, _> = reader.into_samples::<i16>().collect();
    let samples = samples.map_err(|e| PromptError::Malformed {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    if samples.is_empty() {
        return Err(PromptError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(samples)
}

/// Shortest prompt: 0.1 s at 8 kHz.
const MIN_SAMPLES: usize = 800;
/// Quietest peak a spoken prompt may have (about -36 dBFS).
const MIN_PEAK: i32 = 500;

/// Refuses a clip that cannot be a spoken prompt (a file truncated to
/// nothing, or digital silence), which would make calls silent and the
/// simulated handset hear digits in the pauses.
fn check_speech(path: &Path, clip: &[i16]) -> Result<(), PromptError> {
    let peak = clip.iter().map(|s| i32::from(*s).abs()).max().unwrap_or(0);
    let why = if clip.len() < MIN_SAMPLES {
        format!("only {} ms long", clip.len() / 8)
    } else if peak < MIN_PEAK {
        format!("nearly silent (peak {peak} of 32767)")
    } else {
        return Ok(());
    };
    Err(PromptError::NotSpeech {
        path: path.to_path_buf(),
        why,
    })
}

/// Pauses of a code reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// Between digits.
    pub digit_gap_ms: u32,
    /// After "your verification code is" and "I repeat".
    pub phrase_gap_ms: u32,
    /// Between the two readings, and before "press 1".
    pub repeat_gap_ms: u32,
}

impl Default for Reading {
    fn default() -> Self {
        Self {
            digit_gap_ms: 350,
            phrase_gap_ms: 500,
            repeat_gap_ms: 1000,
        }
    }
}

/// A prompt set in one G.711 law. Clips are shared: a reading queued as
/// [`Part`]s costs no audio copy per call.
#[derive(Debug, Clone)]
pub struct EncodedPrompts {
    law: Law,
    clips: Vec<Arc<[u8]>>,
}

/// One piece of a reading: a shared clip or a pause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// A prompt's encoded bytes.
    Clip(Arc<[u8]>),
    /// Silence of this many milliseconds.
    Silence(u32),
}

impl EncodedPrompts {
    /// The law.
    pub fn law(&self) -> Law {
        self.law
    }

    /// One prompt's bytes.
    pub fn clip(&self, p: Prompt) -> &[u8] {
        &self.clips[p.index()]
    }

    /// One prompt's bytes, shared.
    pub fn shared_clip(&self, p: Prompt) -> Arc<[u8]> {
        self.clips[p.index()].clone()
    }

    fn digits(&self, out: &mut Vec<Part>, code: &[u8], r: &Reading) {
        for (i, d) in code.iter().enumerate() {
            if i > 0 {
                out.push(Part::Silence(r.digit_gap_ms));
            }
            out.push(Part::Clip(self.shared_clip(Prompt::Digit(d - b'0'))));
        }
    }

    /// "Your verification code is 1 2 3 4 5 6. I repeat: 1 2 3 4 5 6.
    /// Press 1 to hear it again." as shared clips and pauses, from the
    /// first word to the last.
    pub fn code_parts(&self, code: &str, r: &Reading) -> Result<Vec<Part>, PromptError> {
        if code.is_empty() || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PromptError::NotDigits(code.to_string()));
        }
        let code = code.as_bytes();
        let mut out = vec![
            Part::Clip(self.shared_clip(Prompt::CodeIs)),
            Part::Silence(r.phrase_gap_ms),
        ];
        self.digits(&mut out, code, r);
        out.push(Part::Silence(r.repeat_gap_ms));
        out.push(Part::Clip(self.shared_clip(Prompt::Repeat)));
        out.push(Part::Silence(r.phrase_gap_ms));
        self.digits(&mut out, code, r);
        out.push(Part::Silence(r.repeat_gap_ms));
        out.push(Part::Clip(self.shared_clip(Prompt::Press1)));
        Ok(out)
    }

    /// [`EncodedPrompts::code_parts`] as one buffer of bytes (callers pad
    /// to whole frames with [`frames`]).
    pub fn code_message(&self, code: &str, r: &Reading) -> Result<Vec<u8>, PromptError> {
        let mut out = Vec::new();
        for part in self.code_parts(code, r)? {
            match part {
                Part::Clip(c) => out.extend_from_slice(&c),
                Part::Silence(ms) => out.resize(out.len() + ms as usize * 8, self.law.silence()),
            }
        }
        Ok(out)
    }
}

/// Cuts audio bytes into 20 ms frames, the last padded with silence.
pub fn frames(bytes: &[u8], law: Law) -> Vec<[u8; FRAME_SAMPLES]> {
    bytes
        .chunks(FRAME_SAMPLES)
        .map(|c| {
            let mut f = [law.silence(); FRAME_SAMPLES];
            f[..c.len()].copy_from_slice(c);
            f
        })
        .collect()
}

/// The prompts found, in order, in audio a call carried (`heard`: the
/// G.711 payloads in sequence order, in the prompts' law). Exact matching:
/// the audio must be the bytes [`EncodedPrompts`] produced, as on a
/// loss-free lab network.
pub fn recognise(prompts: &EncodedPrompts, heard: &[u8]) -> Vec<Prompt> {
    const KEY: usize = 8;
    let mut found = Vec::new();
    let mut i = 0;
    'scan: while i + KEY <= heard.len() {
        // Longest first, so a prompt that begins like a shorter one wins.
        let mut candidates: Vec<Prompt> = Prompt::ALL
            .into_iter()
            .filter(|p| {
                let c = prompts.clip(*p);
                c.len() >= KEY && heard[i..].starts_with(&c[..KEY])
            })
            .collect();
        candidates.sort_by_key(|p| std::cmp::Reverse(prompts.clip(*p).len()));
        for p in candidates {
            let c = prompts.clip(p);
            if heard[i..].starts_with(c) {
                found.push(p);
                i += c.len();
                continue 'scan;
            }
        }
        i += 1;
    }
    found
}

/// The digits of a recognised reading: those after the first "code is", up
/// to "I repeat" (or the end).
pub fn digits_heard(prompts: &[Prompt]) -> String {
    prompts
        .iter()
        .skip_while(|p| **p != Prompt::CodeIs)
        .skip(1)
        .take_while(|p| **p != Prompt::Repeat)
        .filter_map(|p| match p {
            Prompt::Digit(d) => Some(char::from(b'0' + d)),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_locales_load() {
        for locale in ["en", "zh"] {
            let set = PromptSet::load(&bundled_dir(), locale).unwrap();
            for p in Prompt::ALL {
                // At least 0.15 s of sound each.
                assert!(set.samples(p).len() > 1200, "{locale} {p:?}");
            }
        }
    }

    #[test]
    fn a_code_read_out_is_heard_back_in_both_laws_and_locales() {
        for locale in ["en", "zh"] {
            let set = PromptSet::load(&bundled_dir(), locale).unwrap();
            for law in [Law::Ulaw, Law::Alaw] {
                let enc = set.encode(law);
                let audio = enc.code_message("365882", &Reading::default()).unwrap();
                // As the handset gets it: whole frames, then some silence.
                let mut heard: Vec<u8> = frames(&audio, law).concat();
                heard.extend(std::iter::repeat_n(law.silence(), 800));
                let prompts = recognise(&enc, &heard);
                assert_eq!(digits_heard(&prompts), "365882", "{locale} {law:?}");
                assert_eq!(
                    prompts
                        .iter()
                        .filter(|p| matches!(p, Prompt::Digit(_)))
                        .count(),
                    12,
                    "read twice"
                );
                assert_eq!(prompts.last(), Some(&Prompt::Press1));
            }
        }
    }

    #[test]
    fn a_reading_as_parts_shares_the_clips_and_sounds_like_the_message() {
        let enc = PromptSet::load(&bundled_dir(), "en")
            .unwrap()
            .encode(Law::Alaw);
        let r = Reading::default();
        let a = enc.code_parts("365882", &r).unwrap();
        let b = enc.code_parts("365882", &r).unwrap();
        // Two calls' readings point at the same clip bytes: no copy per call.
        let clips = |parts: &[Part]| -> Vec<Arc<[u8]>> {
            parts
                .iter()
                .filter_map(|p| match p {
                    Part::Clip(c) => Some(c.clone()),
                    Part::Silence(_) => None,
                })
                .collect()
        };
        assert_eq!(
            clips(&a).len(),
            15,
            "code is, 6 digits, I repeat, 6 digits, press 1"
        );
        assert!(clips(&a)
            .iter()
            .zip(clips(&b))
            .all(|(x, y)| Arc::ptr_eq(x, &y)));
        assert!(Arc::ptr_eq(
            &clips(&a)[1],
            &enc.shared_clip(Prompt::Digit(3))
        ));
        assert!(a.contains(&Part::Silence(r.digit_gap_ms)));
        // Played out, the parts are the message the handset recognises.
        let heard = enc.code_message("365882", &r).unwrap();
        let total: usize = a
            .iter()
            .map(|p| match p {
                Part::Clip(c) => c.len(),
                Part::Silence(ms) => *ms as usize * 8,
            })
            .sum();
        assert_eq!(total, heard.len());
        assert!(enc.code_parts("36x", &r).is_err());
    }

    #[test]
    fn a_prompt_that_begins_like_a_shorter_one_is_heard_whole() {
        // 14 distinct clips; "1" is "0" followed by more sound.
        let mut clips: Vec<Vec<u8>> = (0..14u8).map(|i| vec![i + 1; 40]).collect();
        clips[1] = [clips[0].clone(), vec![99; 40]].concat();
        let enc = EncodedPrompts {
            law: Law::Ulaw,
            clips: clips.into_iter().map(Arc::from).collect(),
        };
        let mut heard = enc.clip(Prompt::CodeIs).to_vec();
        heard.extend_from_slice(enc.clip(Prompt::Digit(1)));
        heard.extend_from_slice(enc.clip(Prompt::Digit(0)));
        assert_eq!(
            recognise(&enc, &heard),
            [Prompt::CodeIs, Prompt::Digit(1), Prompt::Digit(0)]
        );
        assert_eq!(digits_heard(&recognise(&enc, &heard)), "10");
    }

    #[test]
    fn frames_are_whole_and_padded_with_silence() {
        let f = frames(&[1u8; 170], Law::Alaw);
        assert_eq!(f.len(), 2);
        assert_eq!(&f[1][..10], &[1u8; 10]);
        assert!(f[1][10..].iter().all(|b| *b == 0xD5));
    }

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vg-prompts-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("xx")).unwrap();
        for p in Prompt::ALL {
            std::fs::copy(
                bundled_dir().join("en").join(p.file_name()),
                d.join("xx").join(p.file_name()),
            )
            .unwrap();
        }
        d
    }

    #[test]
    fn broken_sets_are_refused_with_the_file_and_the_fault() {
        let e = PromptSet::load(&bundled_dir(), "fr")
            .unwrap_err()
            .to_string();
        assert!(e.contains("locale \"fr\""), "{e}");
        let e = PromptSet::load(&bundled_dir(), "../en")
            .unwrap_err()
            .to_string();
        assert!(e.contains("locale"), "{e}");

        let d = scratch("missing");
        std::fs::remove_file(d.join("xx/7.wav")).unwrap();
        let e = PromptSet::load(&d, "xx").unwrap_err().to_string();
        assert!(e.contains("7.wav is missing"), "{e}");

        let d = scratch("garbage");
        std::fs::write(d.join("xx/goodbye.wav"), b"not a wav").unwrap();
        let e = PromptSet::load(&d, "xx").unwrap_err().to_string();
        assert!(e.contains("goodbye.wav is not a readable WAV"), "{e}");

        let d = scratch("format");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(d.join("xx/repeat.wav"), spec).unwrap();
        w.write_sample(1i16).unwrap();
        w.finalize().unwrap();
        let e = PromptSet::load(&d, "xx").unwrap_err().to_string();
        assert!(
            e.contains("repeat.wav is 16000 Hz") && e.contains("8000 Hz mono"),
            "{e}"
        );

        let d = scratch("silent");
        let mut w = hound::WavWriter::create(
            d.join("xx/0.wav"),
            hound::WavSpec {
                sample_rate: 8000,
                ..spec
            },
        )
        .unwrap();
        for _ in 0..1600 {
            w.write_sample(3i16).unwrap();
        }
        w.finalize().unwrap();
        let e = PromptSet::load(&d, "xx").unwrap_err().to_string();
        assert!(e.contains("0.wav is nearly silent"), "{e}");

        let d = scratch("short");
        let mut w = hound::WavWriter::create(
            d.join("xx/5.wav"),
            hound::WavSpec {
                sample_rate: 8000,
                ..spec
            },
        )
        .unwrap();
        for i in 0..400 {
            w.write_sample(if i % 2 == 0 { 8000i16 } else { -8000 })
                .unwrap();
        }
        w.finalize().unwrap();
        let e = PromptSet::load(&d, "xx").unwrap_err().to_string();
        assert!(e.contains("5.wav is only 50 ms long"), "{e}");

        let d = scratch("duplicate");
        std::fs::copy(d.join("xx/3.wav"), d.join("xx/8.wav")).unwrap();
        let e = PromptSet::load(&d, "xx").unwrap_err().to_string();
        assert!(
            e.contains("3.wav and") && e.contains("8.wav are the same recording"),
            "{e}"
        );

        let d = scratch("empty");
        let spec = hound::WavSpec {
            sample_rate: 8000,
            ..spec
        };
        hound::WavWriter::create(d.join("xx/code_is.wav"), spec)
            .unwrap()
            .finalize()
            .unwrap();
        let e = PromptSet::load(&d, "xx").unwrap_err().to_string();
        assert!(e.contains("code_is.wav holds no audio"), "{e}");
        for tag in [
            "missing",
            "garbage",
            "format",
            "silent",
            "short",
            "duplicate",
            "empty",
        ] {
            let _ = std::fs::remove_dir_all(
                std::env::temp_dir().join(format!("vg-prompts-{tag}-{}", std::process::id())),
            );
        }
    }

    #[test]
    fn only_digits_are_read() {
        let enc = PromptSet::load(&bundled_dir(), "en")
            .unwrap()
            .encode(Law::Ulaw);
        assert!(enc.code_message("12a4", &Reading::default()).is_err());
        assert!(enc.code_message("", &Reading::default()).is_err());
    }
}
