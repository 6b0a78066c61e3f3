//! What happens on a call, sans-IO: the inputs and actions every call
//! script shares, and the voice reading (answer → code read twice →
//! "press 1" → wait for a key → goodbye → BYE). The flash call's script is
//! in `flashcall::script`. Inputs are call events and the time; outputs are
//! actions and the next deadline, so every path is tested on virtual time.

use crate::store::CallState;
use std::time::{Duration, Instant};

/// How a call ended, as the SIP side saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// An answered call was hung up (by us or by them).
    Hangup,
    /// Our CANCEL took effect (the INVITE got 487).
    Canceled,
    /// The far end or the network answered the INVITE with this final status.
    Refused {
        /// SIP status (4xx–6xx).
        code: u16,
        /// Its Retry-After, if any.
        retry_after: Option<Duration>,
    },
    /// No final answer at all (Timer B, or the transport failed).
    NoResponse(String),
}

/// What the script hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// 180, or 183 without SDP: the phone is ringing.
    Ringing,
    /// 183 with SDP: early media (an announcement; not proof of ringing).
    EarlyMedia,
    /// 200 OK: answered, media up.
    Answered,
    /// The far end pressed a key (RFC 4733 event ended).
    Dtmf(char),
    /// The queued audio has been sent.
    Drained,
    /// Stop now (the verification closed, or shutdown).
    Stop,
    /// The call is over.
    Ended(Ended),
}

/// Audio the voice script plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clip {
    /// The whole reading: code twice and "press 1 to hear it again".
    Code,
    /// "Goodbye".
    Goodbye,
}

/// What the driver does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Queue audio.
    Play(Clip),
    /// Drop queued audio.
    Clear,
    /// End the call: CANCEL before answer, BYE after.
    End,
}

/// A call's outcome, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Final state.
    pub state: CallState,
    /// SIP status, if one came.
    pub sip_code: Option<u16>,
    /// Details for operators.
    pub detail: String,
    /// Worth placing again (503, no response), with the peer's Retry-After.
    pub retry: Option<Option<Duration>>,
}

/// The outcome of a call that was neither answered nor (flash) rang.
pub(crate) fn unreached(e: &Ended, timed_out: bool) -> Outcome {
    let o = |state, sip_code, detail: String, retry| Outcome {
        state,
        sip_code,
        detail,
        retry,
    };
    match e {
        Ended::Canceled if timed_out => o(
            CallState::NoAnswer,
            Some(487),
            "not answered before the ring timeout".into(),
            None,
        ),
        Ended::Canceled => o(
            CallState::Canceled,
            Some(487),
            "cancelled before it was answered".into(),
            None,
        ),
        Ended::Hangup => o(
            CallState::Failed,
            None,
            "ended before it was answered".into(),
            None,
        ),
        Ended::Refused { code, retry_after } => match code {
            486 | 600 => o(CallState::Busy, Some(*code), "busy".into(), None),
            408 | 480 | 487 => o(
                CallState::NoAnswer,
                Some(*code),
                format!("not answered ({code})"),
                None,
            ),
            503 => o(
                CallState::Failed,
                Some(503),
                "the trunk is unavailable (503)".into(),
                Some(*retry_after),
            ),
            c => o(
                CallState::Failed,
                Some(*c),
                format!("refused with SIP {c}"),
                None,
            ),
        },
        Ended::NoResponse(why) => o(
            CallState::Failed,
            None,
            format!("no response from the trunk: {why}"),
            Some(None),
        ),
    }
}

/// Timing of a voice call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoiceTiming {
    /// Give up ringing after this.
    pub ring_timeout: Duration,
    /// Wait this long for a key after a reading.
    pub dtmf_wait: Duration,
    /// Hang up an answered call after this, whatever happens.
    pub max_duration: Duration,
    /// Times "1" replays the code.
    pub max_repeats: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VoiceState {
    Dialing,
    Reading,
    WaitingForKey,
    Goodbye,
    Ending,
    Done,
}

/// The voice reading.
#[derive(Debug)]
pub struct VoiceScript {
    t: VoiceTiming,
    state: VoiceState,
    /// The state's own timer (ringing, waiting for a key, goodbye).
    deadline: Option<Instant>,
    /// The call's hard cap, set at answer: ends it whatever the state.
    cap: Option<Instant>,
    answered: bool,
    timed_out: bool,
    repeats: u32,
    keys: String,
}

impl VoiceScript {
    /// A call dialled at `now`.
    pub fn new(now: Instant, t: VoiceTiming) -> Self {
        Self {
            t,
            state: VoiceState::Dialing,
            deadline: Some(now + t.ring_timeout),
            cap: None,
            answered: false,
            timed_out: false,
            repeats: 0,
            keys: String::new(),
        }
    }

    /// When to call [`VoiceScript::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.deadline, self.cap) {
            (Some(d), Some(c)) => Some(d.min(c)),
            (d, c) => d.or(c),
        }
    }

    /// Keys pressed (for the call record).
    pub fn keys(&self) -> &str {
        &self.keys
    }

    /// A deadline passed.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        if self.cap.is_some_and(|c| now >= c)
            && !matches!(self.state, VoiceState::Ending | VoiceState::Done)
        {
            self.state = VoiceState::Ending;
            self.deadline = None;
            self.cap = None;
            return vec![Action::End];
        }
        if self.deadline.is_none_or(|d| now < d) {
            return Vec::new();
        }
        self.deadline = None;
        match self.state {
            VoiceState::Dialing => {
                self.timed_out = true;
                self.state = VoiceState::Ending;
                vec![Action::End]
            }
            VoiceState::WaitingForKey => {
                self.state = VoiceState::Goodbye;
                // Goodbye is short; a peer that never drains it is hung up.
                self.deadline = Some(now + Duration::from_secs(10));
                vec![Action::Play(Clip::Goodbye)]
            }
            VoiceState::Reading | VoiceState::Goodbye => {
                self.state = VoiceState::Ending;
                vec![Action::End]
            }
            VoiceState::Ending | VoiceState::Done => Vec::new(),
        }
    }

    /// An event; returns the actions and, once the call is over, its outcome.
    pub fn handle(&mut self, now: Instant, input: Input) -> (Vec<Action>, Option<Outcome>) {
        match (self.state, input) {
            (VoiceState::Done, _) => (Vec::new(), None),
            (_, Input::Ended(e)) => {
                self.state = VoiceState::Done;
                self.deadline = None;
                self.cap = None;
                let outcome = if self.answered {
                    Outcome {
                        state: CallState::Answered,
                        sip_code: Some(200),
                        detail: if self.keys.is_empty() {
                            "answered; code read".into()
                        } else {
                            format!("answered; code read; keys pressed: {}", self.keys)
                        },
                        retry: None,
                    }
                } else {
                    unreached(&e, self.timed_out)
                };
                (Vec::new(), Some(outcome))
            }
            (VoiceState::Ending, _) => (Vec::new(), None),
            (_, Input::Stop) => {
                self.state = VoiceState::Ending;
                self.deadline = None;
                self.cap = None;
                (vec![Action::End], None)
            }
            (VoiceState::Dialing, Input::Answered) => {
                self.answered = true;
                self.state = VoiceState::Reading;
                // Reading has no timer of its own: the cap bounds it.
                self.deadline = None;
                self.cap = Some(now + self.t.max_duration);
                (vec![Action::Play(Clip::Code)], None)
            }
            (VoiceState::Reading, Input::Drained) => {
                self.state = VoiceState::WaitingForKey;
                self.deadline = Some(now + self.t.dtmf_wait);
                (Vec::new(), None)
            }
            (VoiceState::Reading | VoiceState::WaitingForKey, Input::Dtmf(k)) => {
                self.keys.push(k);
                if k == '1' && self.repeats < self.t.max_repeats {
                    self.repeats += 1;
                    self.state = VoiceState::Reading;
                    // The key wait is over; the cap stays where answer put it.
                    self.deadline = None;
                    (vec![Action::Clear, Action::Play(Clip::Code)], None)
                } else {
                    (Vec::new(), None)
                }
            }
            (VoiceState::Goodbye, Input::Drained) => {
                self.state = VoiceState::Ending;
                self.deadline = None;
                self.cap = None;
                (vec![Action::End], None)
            }
            _ => (Vec::new(), None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voice() -> VoiceTiming {
        VoiceTiming {
            ring_timeout: Duration::from_secs(30),
            dtmf_wait: Duration::from_secs(4),
            max_duration: Duration::from_secs(120),
            max_repeats: 2,
        }
    }

    #[test]
    fn a_voice_call_reads_waits_says_goodbye_and_hangs_up() {
        let t0 = Instant::now();
        let mut s = VoiceScript::new(t0, voice());
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(30)));
        assert_eq!(s.handle(t0, Input::Ringing), (vec![], None));
        let t1 = t0 + Duration::from_secs(3);
        assert_eq!(
            s.handle(t1, Input::Answered),
            (vec![Action::Play(Clip::Code)], None)
        );
        let t2 = t1 + Duration::from_secs(12);
        assert_eq!(s.handle(t2, Input::Drained), (vec![], None));
        assert_eq!(s.poll_timeout(), Some(t2 + Duration::from_secs(4)));
        assert!(s.handle_timeout(t2 + Duration::from_secs(3)).is_empty());
        let t3 = t2 + Duration::from_secs(4);
        assert_eq!(s.handle_timeout(t3), vec![Action::Play(Clip::Goodbye)]);
        assert_eq!(s.handle(t3, Input::Drained), (vec![Action::End], None));
        let (a, o) = s.handle(t3, Input::Ended(Ended::Hangup));
        assert!(a.is_empty());
        let o = o.unwrap();
        assert_eq!(o.state, CallState::Answered);
        assert_eq!(o.sip_code, Some(200));
    }

    #[test]
    fn pressing_1_replays_the_code_up_to_the_limit() {
        let t0 = Instant::now();
        let mut s = VoiceScript::new(t0, voice());
        s.handle(t0, Input::Answered);
        // During the reading: start over.
        assert_eq!(
            s.handle(t0, Input::Dtmf('1')),
            (vec![Action::Clear, Action::Play(Clip::Code)], None)
        );
        s.handle(t0, Input::Drained);
        // While waiting for a key.
        assert_eq!(
            s.handle(t0, Input::Dtmf('1')).0,
            vec![Action::Clear, Action::Play(Clip::Code)]
        );
        s.handle(t0, Input::Drained);
        // Other keys and a third 1 do nothing.
        assert_eq!(s.handle(t0, Input::Dtmf('5')).0, vec![]);
        assert_eq!(s.handle(t0, Input::Dtmf('1')).0, vec![]);
        let (_, o) = s.handle(t0, Input::Ended(Ended::Hangup));
        assert!(o.unwrap().detail.contains("keys pressed: 1151"));
    }

    #[test]
    fn the_call_is_capped_after_answer() {
        let t0 = Instant::now();
        let mut s = VoiceScript::new(t0, voice());
        s.handle(t0, Input::Answered);
        let cap = t0 + Duration::from_secs(120);
        assert_eq!(s.poll_timeout(), Some(cap));
        // A caller pressing 1 again and again (each press after the reading
        // ends) does not keep the call up past the cap.
        let mut t = t0;
        for _ in 0..2 {
            t += Duration::from_secs(20);
            s.handle(t, Input::Drained);
            assert_eq!(s.poll_timeout(), Some(t + Duration::from_secs(4)));
            t += Duration::from_secs(1);
            s.handle(t, Input::Dtmf('1'));
            assert_eq!(
                s.poll_timeout(),
                Some(cap),
                "the replay runs to the cap, not the key wait"
            );
        }
        assert_eq!(s.handle_timeout(t + Duration::from_secs(4)), vec![]);
        assert_eq!(s.handle_timeout(cap), vec![Action::End]);
    }

    #[test]
    fn a_key_pressed_while_waiting_replays_the_whole_code() {
        let t0 = Instant::now();
        let mut s = VoiceScript::new(t0, voice());
        s.handle(t0, Input::Answered);
        let t1 = t0 + Duration::from_secs(20);
        s.handle(t1, Input::Drained);
        let t2 = t1 + Duration::from_secs(1);
        s.handle(t2, Input::Dtmf('1'));
        // The key wait (4 s) passes during the replay: nothing happens.
        assert_eq!(s.handle_timeout(t1 + Duration::from_secs(5)), vec![]);
        // The replay ends; then the wait, then goodbye.
        let t3 = t2 + Duration::from_secs(20);
        s.handle(t3, Input::Drained);
        assert_eq!(
            s.handle_timeout(t3 + Duration::from_secs(4)),
            vec![Action::Play(Clip::Goodbye)]
        );
    }

    #[test]
    fn unanswered_voice_calls_map_to_outcomes() {
        let t0 = Instant::now();
        let cases = [
            (
                Ended::Refused {
                    code: 486,
                    retry_after: None,
                },
                CallState::Busy,
                false,
            ),
            (
                Ended::Refused {
                    code: 480,
                    retry_after: None,
                },
                CallState::NoAnswer,
                false,
            ),
            (
                Ended::Refused {
                    code: 404,
                    retry_after: None,
                },
                CallState::Failed,
                false,
            ),
            (
                Ended::Refused {
                    code: 503,
                    retry_after: Some(Duration::from_secs(7)),
                },
                CallState::Failed,
                true,
            ),
            (Ended::NoResponse("Timer B".into()), CallState::Failed, true),
        ];
        for (e, state, retry) in cases {
            let mut s = VoiceScript::new(t0, voice());
            let (_, o) = s.handle(t0, Input::Ended(e.clone()));
            let o = o.unwrap();
            assert_eq!(o.state, state, "{e:?}");
            assert_eq!(o.retry.is_some(), retry, "{e:?}");
        }
        // Ring timeout: CANCEL, and the 487 means "no answer".
        let mut s = VoiceScript::new(t0, voice());
        assert_eq!(
            s.handle_timeout(t0 + Duration::from_secs(30)),
            vec![Action::End]
        );
        let (_, o) = s.handle(t0, Input::Ended(Ended::Canceled));
        assert_eq!(o.unwrap().state, CallState::NoAnswer);
    }
}
