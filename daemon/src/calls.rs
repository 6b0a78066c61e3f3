//! The call queue's worker: claims stored calls (with a lease, like the
//! outbox), places them through a [`CallPlacer`], runs the voice or
//! flash-call script on each, and stores the outcome (with a voice call's
//! SMS fallback in the same transaction).

use crate::clock::Clock;
use crate::flashcall::{FlashScript, FlashTiming};
use crate::queue::{self, Held, Queue, WorkerConfig};
use crate::random::Random;
use crate::sip::script::{Action, Clip, Ended, Input, Outcome, VoiceScript, VoiceTiming};
use crate::sip::{CallEvent, CallPlacer, CallSpec, Command, PlaceError};
use crate::store::{
    CallJob, CallKind, CallResult, CallState, Claimed, Extension, Lease, MessageState, Millis,
    OutboxMessage, Store, StoreError, StoreResult,
};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn, Instrument};
use verigate_codecs::media::g711::Law;
use verigate_prompts::{EncodedPrompts, Part, Prompt, PromptError, PromptSet, Reading};

/// Prompt sets of every voice locale, in both laws, encoded once.
#[derive(Debug, Default)]
pub struct Prompts {
    sets: HashMap<(String, Law), EncodedPrompts>,
}

impl Prompts {
    /// Loads `locales` from `dir` (one folder per locale); refuses a set
    /// with a missing or malformed file, naming it.
    pub fn load(dir: &Path, locales: &[String]) -> Result<Self, PromptError> {
        let mut sets = HashMap::new();
        for l in locales {
            let set = PromptSet::load(dir, l)?;
            for law in [Law::Ulaw, Law::Alaw] {
                sets.insert((l.clone(), law), set.encode(law));
            }
        }
        Ok(Self { sets })
    }

    fn get(&self, locale: &str, law: Law) -> Option<&EncodedPrompts> {
        self.sets.get(&(locale.to_string(), law))
    }
}

/// Worker settings.
#[derive(Debug, Clone)]
pub struct CallSettings {
    /// Voice timing.
    pub voice: VoiceTiming,
    /// Flash-call timing.
    pub flash: FlashTiming,
    /// Placement attempts on a temporary failure.
    pub max_attempts: u32,
    /// Delay before a retry when the trunk named none.
    pub retry_delay: Duration,
    /// Calls claimed per round.
    pub batch: u32,
    /// Pause when nothing is due.
    pub idle_poll: Duration,
    /// Pauses of the reading.
    pub reading: Reading,
    /// Sender address of fallback SMS.
    pub sms_sender: String,
    /// How long shutdown waits for CANCEL/BYE of the calls in progress.
    pub end_grace: Duration,
}

/// Call settings the worker reads for each call, replaced on SIGHUP.
#[derive(Debug, Clone)]
pub struct LiveSettings(Arc<std::sync::RwLock<Arc<CallSettings>>>);

impl LiveSettings {
    /// Settings starting as `s`.
    pub fn new(s: CallSettings) -> Self {
        LiveSettings(Arc::new(std::sync::RwLock::new(Arc::new(s))))
    }

    /// The current settings.
    pub fn get(&self) -> Arc<CallSettings> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Calls claimed from now on use `s` (the worker's batch, poll and
    /// lease stay as they started).
    pub fn set(&self, s: CallSettings) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(s);
    }
}

impl CallSettings {
    /// A claimed call is another worker's again after this: longer than
    /// any call can last.
    fn lease(&self) -> Duration {
        self.voice.ring_timeout
            + self.voice.max_duration
            + self.flash.ring_timeout
            + Duration::from_secs(120)
    }
}

/// Why a call is stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Its verification closed (approved, cancelled, expired).
    Closed,
    /// The daemon shuts down: an unanswered call goes back to the queue.
    Shutdown,
    /// Its lease was taken over (this process stalled past it): the call
    /// is ended and nothing recorded; the new holder owns the record.
    Lost,
}

/// Calls being run, by call id, with their stop signal.
type Running = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Stop>>>>;

/// The call queue: each claimed call is placed and run to its outcome.
struct Calls {
    ctx: Arc<Ctx>,
}

#[async_trait::async_trait]
impl Queue for Calls {
    type Job = CallJob;
    const NAME: &'static str = "calls";

    async fn sweep(&self, now: Millis) {
        match self.ctx.store.expire_calls(now).await {
            Ok(expired) => {
                for c in expired {
                    crate::metrics::call(c.kind.as_str(), CallState::Expired.as_str());
                }
            }
            Err(e) => warn!(error = %e, "cannot expire calls"),
        }
    }

    async fn claim(
        &self,
        now: Millis,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<Claimed<CallJob>>> {
        self.ctx.store.claim_calls(now, limit, lease_ms).await
    }

    async fn extend(&self, leases: &[Lease], until: Millis) -> StoreResult<Vec<Extension>> {
        self.ctx.store.extend_calls(leases, until).await
    }

    async fn work(&self, job: Claimed<CallJob>, held: Held) {
        let (tx, rx) = mpsc::unbounded_channel();
        self.ctx
            .running
            .lock()
            .expect("running lock")
            .insert(job.id.clone(), tx.clone());
        let one = self.ctx.run_one(job.job, held.lease, rx);
        tokio::pin!(one);
        // Shutdown and a lost lease reach the call like a hangup does.
        tokio::select! {
            _ = &mut one => return,
            _ = held.stop.cancelled() => { let _ = tx.send(Stop::Shutdown); }
            _ = held.lost.cancelled() => { let _ = tx.send(Stop::Lost); }
        }
        one.await;
    }
}

/// Runs the call queue until `shutdown`, then ends the calls in progress
/// (CANCEL or BYE) and waits for their outcomes to be stored.
pub async fn run(
    store: Arc<dyn Store>,
    placer: Arc<dyn CallPlacer>,
    prompts: Arc<Prompts>,
    settings: LiveSettings,
    mut hangups: mpsc::UnboundedReceiver<String>,
    (clock, rng): (Clock, Random),
    shutdown: CancellationToken,
) {
    let running: Running = Arc::default();
    let live = settings;
    let settings = live.get();
    let worker = WorkerConfig {
        batch: settings.batch,
        lease: settings.lease(),
        idle_poll: settings.idle_poll,
        // Trunks bound the calls at once (a full trunk answers Busy).
        max_in_flight: usize::MAX,
        // CANCEL/BYE complete within 64·T1; past that the leases hand the
        // calls' records back.
        drain: settings.end_grace,
    };
    let ctx = Arc::new(Ctx {
        store,
        placer,
        prompts,
        settings: live,
        running: running.clone(),
        clock: clock.clone(),
        rng,
    });
    // A closed verification hangs its call up.
    let forward = tokio::spawn(async move {
        while let Some(id) = hangups.recv().await {
            if let Some(tx) = running.lock().expect("running lock").get(&id) {
                let _ = tx.send(Stop::Closed);
            }
        }
    });
    queue::run(Arc::new(Calls { ctx }), worker, clock, shutdown).await;
    forward.abort();
}

struct Ctx {
    store: Arc<dyn Store>,
    placer: Arc<dyn CallPlacer>,
    prompts: Arc<Prompts>,
    settings: LiveSettings,
    running: Running,
    clock: Clock,
    rng: Random,
}

enum Script {
    Voice(VoiceScript),
    Flash(FlashScript),
}

impl Script {
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Script::Voice(s) => s.poll_timeout(),
            Script::Flash(s) => s.poll_timeout(),
        }
    }
    fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        match self {
            Script::Voice(s) => s.handle_timeout(now),
            Script::Flash(s) => s.handle_timeout(now),
        }
    }
    fn handle(&mut self, now: Instant, i: Input) -> (Vec<Action>, Option<Outcome>) {
        match self {
            Script::Voice(s) => s.handle(now, i),
            Script::Flash(s) => s.handle(now, i),
        }
    }
}

impl Ctx {
    /// Places the call and records its outcome, in the call's span: its
    /// log lines carry the id, and it records the trunk once placed and the
    /// outcome once stored.
    async fn run_one(&self, job: CallJob, lease: Lease, stop: mpsc::UnboundedReceiver<Stop>) {
        let span = tracing::info_span!(
            "call",
            id = %job.id,
            kind = job.kind.as_str(),
            verification = job.verification_id.as_deref(),
            trunk = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        self.place_and_record(job, lease, stop)
            .instrument(span)
            .await
    }

    async fn place_and_record(
        &self,
        job: CallJob,
        lease: Lease,
        stop: mpsc::UnboundedReceiver<Stop>,
    ) {
        let (outcome, stopped) = self.call(&job, stop).await;
        self.running.lock().expect("running lock").remove(&job.id);
        if stopped == Some(Stop::Lost) {
            tracing::Span::current().record("outcome", "lease lost");
            warn!(call = %job.id, "the call was claimed again meanwhile; ended here, recorded by its new holder");
            return;
        }
        let now = self.clock.now_ms();
        // A call cut short by shutdown before it was answered or rang is
        // placed again after the restart, not recorded as cancelled.
        let outcome = match outcome {
            Placed::Done(o)
                if stopped == Some(Stop::Shutdown) && o.state == CallState::Canceled =>
            {
                Placed::Interrupted
            }
            other => other,
        };
        let result = match &outcome {
            Placed::Interrupted => CallResult {
                state: CallState::Queued,
                sip_code: None,
                detail: Some("cut short by a shutdown before it rang; will be placed again".into()),
                retry_at: Some(now),
                not_placed: true,
                fallback: None,
            },
            Placed::Later(d) => CallResult {
                state: CallState::Queued,
                sip_code: None,
                detail: Some("every trunk for the number was busy; will retry".into()),
                retry_at: Some(now + d.as_millis() as i64),
                not_placed: true,
                fallback: None,
            },
            Placed::Done(o) => match o
                .retry
                .filter(|_| job.attempts < self.settings.get().max_attempts)
            {
                Some(ra) => CallResult {
                    state: CallState::Queued,
                    sip_code: o.sip_code,
                    detail: Some(format!("{}; will retry", o.detail)),
                    retry_at: Some(
                        now.saturating_add(
                            i64::try_from(
                                ra.unwrap_or(self.settings.get().retry_delay).as_millis(),
                            )
                            .unwrap_or(i64::MAX),
                        ),
                    ),
                    not_placed: false,
                    fallback: None,
                },
                None => CallResult {
                    state: o.state,
                    sip_code: o.sip_code,
                    detail: Some(o.detail.clone()),
                    retry_at: None,
                    not_placed: false,
                    fallback: self.fallback(&job, o.state, now),
                },
            },
        };
        match self.store.finish_call(&lease, &result, now).await {
            Ok(after) => {
                tracing::Span::current().record("outcome", after.state.as_str());
                if after.state.is_final() {
                    crate::metrics::call(job.kind.as_str(), after.state.as_str());
                    info!(
                        call = %job.id,
                        kind = job.kind.as_str(),
                        state = after.state.as_str(),
                        sip = ?after.sip_code,
                        fallback = result.fallback.is_some(),
                        "call ended"
                    );
                }
            }
            Err(StoreError::LeaseLost(why)) => {
                tracing::Span::current().record("outcome", "lease lost");
                warn!(call = %job.id, %why, "the call was claimed again meanwhile; its outcome here is dropped")
            }
            Err(e) => {
                warn!(call = %job.id, error = %e, "cannot record the call's outcome; it will be claimed again after its lease")
            }
        }
    }

    /// The SMS a failed voice call falls back to, if the start asked for one.
    fn fallback(&self, job: &CallJob, state: CallState, now: i64) -> Option<OutboxMessage> {
        let failed = matches!(
            state,
            CallState::Busy | CallState::NoAnswer | CallState::Failed
        );
        let text = job.fallback_text.clone().filter(|_| failed)?;
        Some(OutboxMessage {
            id: self.rng.id("msg", now),
            verification_id: job.verification_id.clone(),
            service: job.service.clone(),
            to: job.to.clone(),
            from: self.settings.get().sms_sender.clone(),
            text,
            state: MessageState::Queued,
            attempts: 0,
            next_attempt_at: now,
            expires_at: job.expires_at,
            smsc: None,
            message_ids: Vec::new(),
            last_error: None,
            created_at: now,
            updated_at: now,
        })
    }

    /// Places and runs the call; also says why it was stopped, if it was.
    async fn call(
        &self,
        job: &CallJob,
        mut stop: mpsc::UnboundedReceiver<Stop>,
    ) -> (Placed, Option<Stop>) {
        let spec = CallSpec {
            to: job.to.clone(),
            caller: job.caller.clone(),
        };
        let mut call = match self.placer.place(spec).await {
            Ok(c) => {
                tracing::Span::current().record("trunk", c.trunk.as_str());
                c
            }
            Err(PlaceError::Busy { retry_in }) => {
                return (
                    Placed::Later(retry_in.unwrap_or(Duration::from_secs(1))),
                    None,
                );
            }
            Err(e) => {
                let failed = Outcome {
                    state: CallState::Failed,
                    sip_code: None,
                    detail: e.to_string(),
                    retry: None,
                };
                return (Placed::Done(failed), None);
            }
        };
        let now = Instant::now();
        let mut script = match job.kind {
            CallKind::Voice => Script::Voice(VoiceScript::new(now, self.settings.get().voice)),
            CallKind::FlashCall => Script::Flash(FlashScript::new(now, self.settings.get().flash)),
        };
        let mut law = None;
        let mut stopped: Option<Stop> = None;
        // No audio to play (no prompts in the locale and law, or no code):
        // the call is hung up and recorded as failed, not as read.
        let mut no_audio = false;
        loop {
            let deadline = script.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            let (actions, outcome) = tokio::select! {
                ev = call.events.recv() => {
                    let input = match ev {
                        Some(CallEvent::Ringing) => Input::Ringing,
                        Some(CallEvent::EarlyMedia) => Input::EarlyMedia,
                        Some(CallEvent::Answered(l)) => {
                            law = Some(l);
                            Input::Answered
                        }
                        Some(CallEvent::Media(crate::sip::media::MediaEvent::Drained)) => Input::Drained,
                        Some(CallEvent::Media(crate::sip::media::MediaEvent::Dtmf(k))) => Input::Dtmf(k),
                        Some(CallEvent::Ended(e)) => Input::Ended(e),
                        None => Input::Ended(Ended::NoResponse("the call's driver stopped".into())),
                    };
                    script.handle(Instant::now(), input)
                }
                _ = sleep => (script.handle_timeout(Instant::now()), None),
                s = stop.recv(), if stopped.is_none() => {
                    // A closed channel (never, while the call is listed) stops it too.
                    stopped = Some(s.unwrap_or(Stop::Shutdown));
                    script.handle(Instant::now(), Input::Stop)
                }
            };
            for a in actions {
                let cmd = match a {
                    Action::End => Command::End,
                    Action::Clear => Command::Clear,
                    Action::Play(clip) => match self.audio(job, law, clip) {
                        Some(audio) => Command::Play(audio),
                        None => {
                            warn!(call = %job.id, locale = %job.locale, "no prompts or code for the call; hanging up");
                            no_audio = true;
                            Command::End
                        }
                    },
                };
                let _ = call.commands.send(cmd);
            }
            if let Some(mut o) = outcome {
                if no_audio && o.state == CallState::Answered {
                    o.state = CallState::Failed;
                    o.detail = format!(
                        "answered, but there was nothing to play (no prompts for locale {:?} or no code)",
                        job.locale
                    );
                }
                return (Placed::Done(o), stopped);
            }
        }
    }

    /// The clip's audio as shared prompt clips and pauses (no copy per call).
    fn audio(&self, job: &CallJob, law: Option<Law>, clip: Clip) -> Option<Vec<Part>> {
        let p = self.prompts.get(&job.locale, law?)?;
        match clip {
            Clip::Code => p
                .code_parts(job.code.as_deref()?, &self.settings.get().reading)
                .ok(),
            Clip::Goodbye => Some(vec![Part::Clip(p.shared_clip(Prompt::Goodbye))]),
        }
    }
}

enum Placed {
    /// No trunk could take it now.
    Later(Duration),
    /// Shutdown ended it before it was answered or rang.
    Interrupted,
    /// The call happened (or failed).
    Done(Outcome),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::script::Ended;
    use crate::sip::{PlaceError, PlacedCall};
    use crate::store::sqlite::SqliteStore;

    /// A phone that answers in A-law, then hangs up when told to end (and
    /// reports what it was asked to play).
    #[derive(Debug, Default)]
    struct Answering {
        played: Arc<Mutex<Vec<usize>>>,
    }

    #[async_trait::async_trait]
    impl CallPlacer for Answering {
        async fn place(&self, _: CallSpec) -> Result<PlacedCall, PlaceError> {
            let (ev_tx, events) = mpsc::unbounded_channel();
            let (commands, mut cmd_rx) = mpsc::unbounded_channel();
            let played = self.played.clone();
            ev_tx.send(CallEvent::Answered(Law::Alaw)).unwrap();
            tokio::spawn(async move {
                while let Some(c) = cmd_rx.recv().await {
                    match c {
                        Command::Play(parts) => {
                            played.lock().unwrap().push(parts.len());
                            let _ = ev_tx
                                .send(CallEvent::Media(crate::sip::media::MediaEvent::Drained));
                        }
                        Command::End => {
                            let _ = ev_tx.send(CallEvent::Ended(Ended::Hangup));
                            return;
                        }
                        _ => {}
                    }
                }
            });
            Ok(PlacedCall {
                events,
                commands,
                trunk: "fake".into(),
                call_id: "fake-call".into(),
            })
        }
    }

    fn settings() -> CallSettings {
        CallSettings {
            voice: VoiceTiming {
                ring_timeout: Duration::from_secs(30),
                dtmf_wait: Duration::from_millis(10),
                max_duration: Duration::from_secs(60),
                max_repeats: 0,
            },
            flash: FlashTiming {
                ring_timeout: Duration::from_secs(10),
                ring_hold: Duration::ZERO,
            },
            max_attempts: 1,
            retry_delay: Duration::from_secs(1),
            batch: 10,
            idle_poll: Duration::from_millis(10),
            reading: Reading::default(),
            sms_sender: "VERIGATE".into(),
            end_grace: Duration::from_secs(5),
        }
    }

    fn job(locale: &str) -> CallJob {
        let now = crate::clock::unix_ms();
        CallJob {
            id: Random::os().id("call", now),
            verification_id: None,
            service: "vg:test".into(),
            kind: CallKind::Voice,
            to: "+447400100999".into(),
            caller: None,
            code: Some("365882".into()),
            fallback_text: None,
            locale: locale.into(),
            state: CallState::Queued,
            sip_code: None,
            detail: None,
            attempts: 0,
            next_attempt_at: now,
            expires_at: now + 60_000,
            created_at: now,
            updated_at: now,
        }
    }

    async fn run_one(prompts: Prompts, locale: &str) -> (CallJob, Vec<usize>) {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.unwrap());
        let placer = Arc::new(Answering::default());
        let played = placer.played.clone();
        let j = job(locale);
        store.enqueue_call(&j, None).await.unwrap();
        let claimed = store
            .claim_calls(crate::clock::unix_ms(), 1, 60_000)
            .await
            .unwrap();
        let ctx = Ctx {
            store: store.clone(),
            placer,
            prompts: Arc::new(prompts),
            settings: LiveSettings::new(settings()),
            running: Arc::default(),
            clock: Clock::system(),
            rng: Random::os(),
        };
        let (_tx, rx) = mpsc::unbounded_channel();
        ctx.run_one(claimed[0].job.clone(), claimed[0].lease.clone(), rx)
            .await;
        let after = store.get_call(&j.id).await.unwrap().unwrap();
        let played = played.lock().unwrap().clone();
        (after, played)
    }

    #[tokio::test]
    async fn an_answered_call_reads_the_code_then_says_goodbye() {
        let prompts = Prompts::load(&verigate_prompts::bundled_dir(), &["en".into()]).unwrap();
        let (c, played) = run_one(prompts, "en").await;
        assert_eq!((c.state, c.sip_code), (CallState::Answered, Some(200)));
        assert_eq!(
            c.code, None,
            "the code is forgotten once the call has an outcome"
        );
        assert_eq!(played.len(), 2, "the reading, then goodbye: {played:?}");
    }

    #[tokio::test]
    async fn a_call_has_a_span_with_its_id_trunk_and_outcome() {
        let (log, _guard) = crate::span_log::SpanLog::install();
        let prompts = Prompts::load(&verigate_prompts::bundled_dir(), &["en".into()]).unwrap();
        let (c, _) = run_one(prompts, "en").await;
        let spans = log.named("call");
        assert_eq!(spans.len(), 1, "{spans:?}");
        let s = &spans[0];
        assert_eq!(s["id"], c.id);
        assert_eq!(s.get("verification"), c.verification_id.as_ref());
        assert_eq!(s["kind"], "voice");
        assert_eq!(s["trunk"], "fake");
        assert_eq!(s["outcome"], "answered");
    }

    #[tokio::test]
    async fn an_answered_call_with_nothing_to_play_is_failed_not_read() {
        // No prompt set for the call's locale: it is hung up, and the
        // record must not claim the code was read.
        let (c, played) = run_one(Prompts::default(), "fr").await;
        assert!(played.is_empty());
        assert_eq!(c.state, CallState::Failed, "{:?}", c.detail);
        assert!(c.detail.unwrap().contains("nothing to play"));
    }
}
