//! Test-only fault injection (the `failpoints` feature, enabled for tests only): flags that make
//! the process exit, or its controller stop, at chosen moments, so tests can prove what a crash
//! there leaves behind. A build without the feature has neither the flags nor this code.

use std::time::Duration;

/// The fault-injection flags of `run`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Failpoints {
    /// Fault injection for tests: exit right after recording this many action results.
    #[arg(long, env = "DEPROVISIONER_FAILPOINT_EXIT_AFTER_RESULTS", hide = true)]
    pub exit_after_results: Option<usize>,
    /// Fault injection for tests: exit right after the call of the Nth action (1-based), before
    /// its outcome is recorded.
    #[arg(long = "exit-after-call", env = "DEPROVISIONER_FAILPOINT_EXIT_AFTER_CALL", hide = true)]
    pub exit_after_calls: Option<usize>,
    /// Fault injection for tests: the controller stops by itself after this long.
    #[arg(long, env = "DEPROVISIONER_FAILPOINT_CONTROLLER_STOPS_AFTER", hide = true,
          value_parser = |s: &str| humantime::parse_duration(s).map_err(|e| e.to_string()))]
    pub controller_stops_after: Option<Duration>,
}

impl Failpoints {
    /// Exits (code 87) when the action at this 1-based position was just called.
    pub fn after_call(&self, position: usize) {
        if self.exit_after_calls == Some(position) {
            tracing::error!("fault injection: exiting after the call of action {position} and before recording it");
            std::process::exit(87);
        }
    }

    /// Whether to exit once `results` results are recorded (see [`Failpoints::exit_recorded`]).
    pub fn exits_after_results(&self, results: usize) -> bool {
        self.exit_after_results == Some(results)
    }

    /// Exits (code 86) after results were recorded.
    pub fn exit_recorded(&self, results: usize) -> ! {
        tracing::error!("fault injection: exiting after {results} recorded result(s)");
        std::process::exit(86)
    }

    /// The controllers' future, ended after `--controller-stops-after` as if a dependency died.
    pub async fn controllers<F: Future<Output = anyhow::Result<()>>>(&self, controllers: F) -> anyhow::Result<()> {
        match self.controller_stops_after {
            Some(after) => tokio::time::timeout(after, controllers).await.unwrap_or(Ok(())),
            None => controllers.await,
        }
    }
}
