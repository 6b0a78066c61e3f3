//! The daemon's shutdown tree: one root [`CancellationToken`] with a child
//! token and a [`TaskTracker`] per stage. Tasks are spawned into the stage
//! that stops them; on shutdown the stages are stopped in the order they
//! were made, each awaited (every task of it returned) before the next is
//! told — so the API stops taking work before the workers drain, and the
//! workers have drained before the SMPP binds and the store close.

use std::future::Future;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// One stage of shutdown: its tasks stop together.
#[derive(Debug, Clone)]
pub struct Stage {
    name: &'static str,
    token: CancellationToken,
    tasks: TaskTracker,
    /// How long its tasks may take to return once told.
    limit: Duration,
}

impl Stage {
    /// The token its tasks watch.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Runs `task` in this stage (awaited when the stage stops).
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(task)
    }
}

/// The whole tree.
#[derive(Debug, Default)]
pub struct Shutdown {
    root: CancellationToken,
    stages: Vec<Stage>,
}

impl Shutdown {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next stage, whose tasks get `limit` to return once told.
    pub fn stage(&mut self, name: &'static str, limit: Duration) -> Stage {
        let stage = Stage {
            name,
            token: self.root.child_token(),
            tasks: TaskTracker::new(),
            limit,
        };
        self.stages.push(stage.clone());
        stage
    }

    /// Stops the stages in order; says which did not finish in time (their
    /// tasks are left to the runtime's end: a queue job's lease hands it
    /// back, an unacknowledged SMPP event is redelivered).
    pub async fn run(self) -> Vec<&'static str> {
        let mut late = Vec::new();
        for s in &self.stages {
            info!(stage = s.name, "stopping");
            s.token.cancel();
            s.tasks.close();
            if tokio::time::timeout(s.limit, s.tasks.wait()).await.is_err() {
                warn!(
                    stage = s.name,
                    tasks = s.tasks.len(),
                    "still running at the end of its time; going on"
                );
                late.push(s.name);
            }
        }
        self.root.cancel();
        late
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test(start_paused = true)]
    async fn stages_stop_in_order_each_awaited_before_the_next() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut tree = Shutdown::new();
        let api = tree.stage("api", Duration::from_secs(5));
        let workers = tree.stage("workers", Duration::from_secs(5));
        for (stage, name, takes) in [(&api, "api", 3), (&workers, "workers", 1)] {
            let (token, log) = (stage.token(), log.clone());
            stage.spawn(async move {
                token.cancelled().await;
                log.lock().unwrap().push(format!("{name} told"));
                // Winding up takes a while (virtual time).
                tokio::time::sleep(Duration::from_secs(takes)).await;
                log.lock().unwrap().push(format!("{name} done"));
            });
        }
        assert!(tree.run().await.is_empty());
        assert_eq!(
            *log.lock().unwrap(),
            ["api told", "api done", "workers told", "workers done"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stage_past_its_time_is_reported_and_the_next_still_stops() {
        let mut tree = Shutdown::new();
        let stuck = tree.stage("stuck", Duration::from_secs(2));
        let next = tree.stage("next", Duration::from_secs(2));
        stuck.spawn(std::future::pending::<()>());
        let token = next.token();
        let told = next.spawn(async move { token.cancelled().await });
        assert_eq!(tree.run().await, ["stuck"]);
        told.await.unwrap();
    }
}
