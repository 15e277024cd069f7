//! Scans of time-bound access that could not be made (the view cannot answer): said in the log
//! once they last longer than the stated bound, so expiry never stops silently.

use std::time::Duration;

use tokio::time::Instant;

use super::BOUND;

/// Scans that could not be made: warned of once they last longer than [`BOUND`].
#[derive(Default)]
pub(super) struct Outage {
    /// Since when scans fail.
    since: Option<Instant>,
    /// Warned of.
    warned: bool,
}

impl Outage {
    /// A scan could not be made at `now`: how long they have failed, when that is to be warned
    /// of now (past [`BOUND`], once per outage).
    pub(super) fn failed(&mut self, now: Instant) -> Option<Duration> {
        let since = *self.since.get_or_insert(now);
        let failing_for = now.duration_since(since);
        if failing_for < BOUND || self.warned {
            return None;
        }
        self.warned = true;
        Some(failing_for)
    }

    /// A scan could be made at `now`: how long the outage lasted, when it was warned of.
    pub(super) fn answered(&mut self, now: Instant) -> Option<Duration> {
        let since = self.since.take()?;
        std::mem::take(&mut self.warned).then(|| now.duration_since(since))
    }
}

#[cfg(test)]
mod tests;
