//! The flash call, sans-IO: dial from a pool number, CANCEL as soon as it
//! rings (or after a short hold), and record whether it rang. Inputs are
//! call events and the time; outputs are actions and the next deadline.

use crate::sip::script::{unreached, Action, Ended, Input, Outcome};
use crate::store::CallState;
use std::time::{Duration, Instant};

/// Timing of a flash call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlashTiming {
    /// Give up if it has not rung by then.
    pub ring_timeout: Duration,
    /// Let it ring this long before cancelling (zero: at once).
    pub ring_hold: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlashState {
    Dialing,
    Ringing,
    Ending,
    Done,
}

/// The flash call.
#[derive(Debug)]
pub struct FlashScript {
    t: FlashTiming,
    state: FlashState,
    deadline: Option<Instant>,
    rang: bool,
    answered: bool,
    timed_out: bool,
}

impl FlashScript {
    /// A call dialled at `now`.
    pub fn new(now: Instant, t: FlashTiming) -> Self {
        Self {
            t,
            state: FlashState::Dialing,
            deadline: Some(now + t.ring_timeout),
            rang: false,
            answered: false,
            timed_out: false,
        }
    }

    /// When to call [`FlashScript::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// A deadline passed.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        if self.deadline.is_none_or(|d| now < d) {
            return Vec::new();
        }
        self.deadline = None;
        match self.state {
            FlashState::Dialing => {
                self.timed_out = true;
                self.state = FlashState::Ending;
                vec![Action::End]
            }
            FlashState::Ringing => {
                self.state = FlashState::Ending;
                vec![Action::End]
            }
            FlashState::Ending | FlashState::Done => Vec::new(),
        }
    }

    /// An event; returns the actions and, once the call is over, its outcome.
    pub fn handle(&mut self, now: Instant, input: Input) -> (Vec<Action>, Option<Outcome>) {
        match (self.state, input) {
            (FlashState::Done, _) => (Vec::new(), None),
            (_, Input::Ended(e)) => {
                self.state = FlashState::Done;
                self.deadline = None;
                let outcome = if self.answered {
                    Outcome {
                        state: CallState::Answered,
                        sip_code: Some(200),
                        detail: "answered (the 200 raced our CANCEL); hung up".into(),
                        retry: None,
                    }
                } else if self.rang {
                    Outcome {
                        state: CallState::Rang,
                        sip_code: match e {
                            Ended::Refused { code, .. } => Some(code),
                            _ => Some(487),
                        },
                        detail: "rang; cancelled".into(),
                        retry: None,
                    }
                } else {
                    unreached(&e, self.timed_out)
                };
                (Vec::new(), Some(outcome))
            }
            (FlashState::Ending, Input::Answered) => {
                // A 200 that crossed our CANCEL: the stack ACKs and BYEs it.
                self.answered = true;
                (Vec::new(), None)
            }
            (FlashState::Ending, _) => (Vec::new(), None),
            (_, Input::Stop) => {
                self.state = FlashState::Ending;
                self.deadline = None;
                (vec![Action::End], None)
            }
            (FlashState::Dialing, Input::Ringing) => {
                self.rang = true;
                if self.t.ring_hold.is_zero() {
                    self.state = FlashState::Ending;
                    self.deadline = None;
                    (vec![Action::End], None)
                } else {
                    self.state = FlashState::Ringing;
                    self.deadline = Some(now + self.t.ring_hold);
                    (Vec::new(), None)
                }
            }
            (FlashState::Dialing | FlashState::Ringing, Input::Answered) => {
                self.answered = true;
                self.state = FlashState::Ending;
                self.deadline = None;
                (vec![Action::End], None)
            }
            _ => (Vec::new(), None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flash(hold: u64) -> FlashTiming {
        FlashTiming {
            ring_timeout: Duration::from_secs(20),
            ring_hold: Duration::from_secs(hold),
        }
    }

    #[test]
    fn a_flash_call_is_cancelled_when_it_rings() {
        let t0 = Instant::now();
        let mut s = FlashScript::new(t0, flash(0));
        // Early media is not ringing.
        assert_eq!(s.handle(t0, Input::EarlyMedia), (vec![], None));
        assert_eq!(s.handle(t0, Input::Ringing), (vec![Action::End], None));
        let (_, o) = s.handle(t0, Input::Ended(Ended::Canceled));
        let o = o.unwrap();
        assert_eq!(o.state, CallState::Rang);
        assert_eq!(o.sip_code, Some(487));
    }

    #[test]
    fn a_held_ring_ends_at_the_hold_or_when_the_report_approves() {
        let t0 = Instant::now();
        let mut s = FlashScript::new(t0, flash(5));
        assert_eq!(s.handle(t0, Input::Ringing), (vec![], None));
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(5)));
        assert_eq!(
            s.handle_timeout(t0 + Duration::from_secs(5)),
            vec![Action::End]
        );
        let mut s = FlashScript::new(t0, flash(5));
        s.handle(t0, Input::Ringing);
        assert_eq!(s.handle(t0, Input::Stop), (vec![Action::End], None));
        let (_, o) = s.handle(t0, Input::Ended(Ended::Canceled));
        assert_eq!(o.unwrap().state, CallState::Rang);
    }

    #[test]
    fn a_200_racing_the_cancel_is_recorded_as_answered() {
        let t0 = Instant::now();
        let mut s = FlashScript::new(t0, flash(0));
        s.handle(t0, Input::Ringing);
        // The stack ACKs and BYEs the 200 that crossed the CANCEL.
        assert_eq!(s.handle(t0, Input::Answered), (vec![], None));
        let (_, o) = s.handle(t0, Input::Ended(Ended::Hangup));
        assert_eq!(o.unwrap().state, CallState::Answered);
        // Answered before we cancelled: we hang up.
        let mut s = FlashScript::new(t0, flash(0));
        assert_eq!(s.handle(t0, Input::Answered), (vec![Action::End], None));
    }

    #[test]
    fn a_flash_call_that_never_rings_is_no_answer_or_busy() {
        let t0 = Instant::now();
        let mut s = FlashScript::new(t0, flash(0));
        assert_eq!(
            s.handle_timeout(t0 + Duration::from_secs(20)),
            vec![Action::End]
        );
        let (_, o) = s.handle(t0, Input::Ended(Ended::Canceled));
        assert_eq!(o.unwrap().state, CallState::NoAnswer);
        let mut s = FlashScript::new(t0, flash(0));
        let (_, o) = s.handle(
            t0,
            Input::Ended(Ended::Refused {
                code: 486,
                retry_after: None,
            }),
        );
        assert_eq!(o.unwrap().state, CallState::Busy);
    }
}
