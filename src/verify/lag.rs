//! How far the authorizer's cache has recently lagged behind a removal, learned from the
//! answers. The authorizer reads bindings from its own watch cache; an answer given before that
//! cache saw the removal still credits the removed binding and must be asked again. Idle, the
//! cache catches up within a millisecond or two and the first answer is already true; in a burst
//! it falls tens of milliseconds behind, and every question asked at once is asked twice or more,
//! each time costing the API server a pass over the namespace's bindings. So, while other
//! verifications are asking too (the API server is busy), a verification waits about as long as
//! the lag recently was before its first question; alone, it asks at once.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// The longest first wait: past it, asking again (every 20 ms, then twice as long each time) is
/// cheaper than waiting.
pub const MAX_WAIT: Duration = Duration::from_millis(200);

/// What the first round of a verification's questions showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// No first answer credited a removed binding: the cache had caught up (perhaps earlier).
    CaughtUp,
    /// Some did; every answer was true once asked this long after the verification began
    /// asking (right after the removals).
    CaughtUpAfter(Duration),
    /// Some did until the verification stopped asking: nothing learned.
    Unknown,
}

/// The next first wait, from the current one and what a verification saw (pure).
///
/// A stale first answer moves the wait halfway to the lag it showed (at once when that is
/// longer); a first round already true shortens it by an eighth, so it follows a burst's end
/// down to no wait at all (and is tried a little shorter all along).
pub fn next_wait(current: Duration, seen: Seen) -> Duration {
    let next = match seen {
        Seen::CaughtUp => current * 7 / 8,
        Seen::CaughtUpAfter(lag) if lag > current => lag,
        Seen::CaughtUpAfter(lag) => (current + lag) / 2,
        Seen::Unknown => current,
    };
    match next < Duration::from_millis(1) {
        true => Duration::ZERO,
        false => next.min(MAX_WAIT),
    }
}

/// The learned first wait, shared by the verifications of one process.
#[derive(Debug, Default)]
pub struct AuthorizerLag {
    micros: AtomicU64,
    /// Verifications asking now.
    asking: AtomicUsize,
}

/// One verification asking (see [`AuthorizerLag::begin`]).
pub struct Asking<'a>(&'a AuthorizerLag);

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        self.0.asking.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Asking<'_> {
    /// Whether other verifications ask too (the API server is busy).
    fn among_others(&self) -> bool {
        self.0.asking.load(Ordering::Relaxed) > 1
    }

    /// How long to wait before the first question: the learned lag while other verifications
    /// ask too, none when this one is alone.
    pub fn first_wait(&self) -> Duration {
        match self.among_others() {
            true => self.0.learned(),
            false => Duration::ZERO,
        }
    }

    /// How long to wait before asking a stale question again, the first time (twice as long
    /// each time after): idle, the authorizer's cache lags by a millisecond or two, so 5 ms;
    /// while others ask, 20 ms, which spares the API server questions asked too early.
    pub fn first_pause(&self) -> Duration {
        match self.among_others() {
            true => Duration::from_millis(20),
            false => Duration::from_millis(5),
        }
    }

    /// Learns from what this verification saw.
    pub fn learn(&self, seen: Seen) {
        // Verifications finishing at once may overwrite each other's update: each is an
        // estimate, and the next one corrects it.
        let next = next_wait(self.0.learned(), seen);
        self.0.micros.store(next.as_micros() as u64, Ordering::Relaxed);
    }
}

impl AuthorizerLag {
    /// Counts a verification as asking until the guard is dropped.
    pub fn begin(&self) -> Asking<'_> {
        self.asking.fetch_add(1, Ordering::Relaxed);
        Asking(self)
    }

    /// The lag learned so far.
    pub fn learned(&self) -> Duration {
        Duration::from_micros(self.micros.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_stale_answer_raises_the_wait_to_the_lag_it_showed() {
        assert_eq!(next_wait(Duration::ZERO, Seen::CaughtUpAfter(60 * MS)), 60 * MS);
        assert_eq!(next_wait(100 * MS, Seen::CaughtUpAfter(40 * MS)), 70 * MS);
    }

    #[test]
    fn answers_true_at_once_bring_the_wait_down_to_none() {
        let mut wait = 80 * MS;
        for _ in 0..60 {
            wait = next_wait(wait, Seen::CaughtUp);
        }
        assert_eq!(wait, Duration::ZERO);
        assert_eq!(next_wait(80 * MS, Seen::CaughtUp), 70 * MS);
    }

    #[test]
    fn the_wait_is_bounded_and_unknown_changes_nothing() {
        assert_eq!(next_wait(Duration::ZERO, Seen::CaughtUpAfter(3 * 1000 * MS)), MAX_WAIT);
        assert_eq!(next_wait(30 * MS, Seen::Unknown), 30 * MS);
    }

    #[test]
    fn the_shared_wait_follows_what_is_learned_and_applies_only_under_load() {
        let lag = AuthorizerLag::default();
        let alone = lag.begin();
        assert_eq!(alone.first_wait(), Duration::ZERO);
        alone.learn(Seen::CaughtUpAfter(40 * MS));
        assert_eq!(alone.first_wait(), Duration::ZERO, "alone, a verification asks at once");
        assert_eq!(alone.first_pause(), 5 * MS);
        let other = lag.begin();
        assert_eq!(alone.first_wait(), 40 * MS);
        assert_eq!(alone.first_pause(), 20 * MS);
        other.learn(Seen::CaughtUp);
        assert_eq!(other.first_wait(), 35 * MS);
        drop(other);
        assert_eq!(alone.first_wait(), Duration::ZERO);
    }
}
