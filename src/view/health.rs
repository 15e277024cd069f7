//! One watch's health, as one state machine (pure): every watch the [`super`] view keeps
//! (bindings, policies, namespaces, unfinished requests) moves through the same states on the
//! same inputs, and every reader asks the same questions of it.
//!
//! ```text
//!            InitDone                 error (resumable)
//! Listing ─────────────▶ Live ─────────────────────────▶ Resuming
//!    ▲  ▲                 ▲  │                              │
//!    │  │ Init (relist)   │  └──── a change delivered ◀─────┘
//!    │  └─────────────────┴───────────────────────────────┐
//!    │ Init                                               │ Init
//!   Lost ◀── an event that could not be read (from any state but Listing)
//! ```
//!
//! - **Listing**: the watch has not listed yet, or lists again. Its store is not whole (or
//!   still holds the previous list): nothing read from it can be vouched for.
//! - **Live**: listed, and it has delivered since its last error. What it holds is as current as
//!   a watch is (milliseconds behind); a barrier written now will be delivered in order.
//! - **Resuming**: the watch failed and the watcher resumes from the last version it delivered,
//!   losing nothing. A barrier still proves it current (it passes only on its own event, which
//!   comes after everything before it); a reader without a barrier does not trust it.
//! - **Lost**: an event could not be read and was skipped: the store misses a change until the
//!   next list.

use std::time::{Duration, Instant};

/// Where a watch is (see the module's picture).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Not listed yet, or listing again.
    Listing,
    /// Listed, and delivering since its last error.
    Live,
    /// Failed; the watcher resumes where it was, losing nothing.
    Resuming,
    /// An event could not be read: the store misses it until the next list.
    Lost,
}

impl State {
    /// The label of this state in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Listing => "listing",
            State::Live => "live",
            State::Resuming => "resuming",
            State::Lost => "lost",
        }
    }

    /// Every state, for metrics that export one series per state.
    pub const ALL: [State; 4] = [State::Listing, State::Live, State::Resuming, State::Lost];
}

/// What a watch delivered, as the state machine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// A list begins (`Event::Init`).
    ListBegins,
    /// An object of the list (`Event::InitApply`).
    Listed,
    /// The list ended: the store now holds it whole (`Event::InitDone`).
    ListEnds,
    /// A change delivered by the watch (`Event::Apply`, `Event::Delete`).
    Change,
    /// The watch failed; `lost_an_event` when it skipped an event it could not read.
    Failed {
        /// An event was dropped (the client could not read it).
        lost_an_event: bool,
    },
}

/// The next state (pure).
pub fn next(state: State, input: Input) -> State {
    match (state, input) {
        (_, Input::ListBegins) => State::Listing,
        (State::Listing, Input::Listed) => State::Listing,
        (_, Input::ListEnds) => State::Live,
        // A change after an error: the watch resumed where it was, and every change since came
        // before this one.
        (State::Resuming | State::Live, Input::Change) => State::Live,
        (State::Lost, Input::Change) => State::Lost,
        // A list's objects come only while listing; anything else keeps the state.
        (s, Input::Listed | Input::Change) => s,
        (State::Listing, Input::Failed { .. }) => State::Listing,
        (_, Input::Failed { lost_an_event: true }) => State::Lost,
        (State::Lost, Input::Failed { .. }) => State::Lost,
        (_, Input::Failed { lost_an_event: false }) => State::Resuming,
    }
}

/// One watch's health: its state, whether it ever listed, and when it last delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// Where the watch is.
    pub state: State,
    /// Whether it has listed once (never false again: what readiness waits for).
    pub listed_once: bool,
    /// When it last delivered anything (a change, or the end of a list).
    pub last_delivered: Option<Instant>,
}

impl Default for Health {
    fn default() -> Self {
        Health { state: State::Listing, listed_once: false, last_delivered: None }
    }
}

impl Health {
    /// The health after `input`, delivered at `now` (pure).
    pub fn after(self, input: Input, now: Instant) -> Health {
        let state = next(self.state, input);
        let delivered = matches!(input, Input::Change | Input::ListEnds);
        Health {
            state,
            listed_once: self.listed_once || input == Input::ListEnds,
            last_delivered: if delivered { Some(now) } else { self.last_delivered },
        }
    }

    /// Whether a barrier written now proves the store current once its event arrives: the
    /// watch holds a whole list and loses nothing (`Live` or `Resuming`).
    pub fn can_barrier(&self) -> bool {
        matches!(self.state, State::Live | State::Resuming)
    }

    /// Whether a reader without a barrier may trust the store as it trusts a watch: `Live`.
    pub fn is_live(&self) -> bool {
        self.state == State::Live
    }

    /// Whether the watch is `Live` and delivered something within `within` before `now`: a
    /// watch that stalls without an error is not believed for long.
    pub fn is_live_within(&self, within: Duration, now: Instant) -> bool {
        self.is_live() && self.last_delivered.is_some_and(|at| now.saturating_duration_since(at) <= within)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_INPUTS: [Input; 6] = [
        Input::ListBegins,
        Input::Listed,
        Input::ListEnds,
        Input::Change,
        Input::Failed { lost_an_event: false },
        Input::Failed { lost_an_event: true },
    ];

    #[test]
    fn a_watch_lists_then_lives() {
        let t = Instant::now();
        let h = Health::default();
        assert_eq!(h.state, State::Listing);
        assert!(!h.can_barrier() && !h.is_live() && !h.listed_once);
        let h = h.after(Input::ListBegins, t).after(Input::Listed, t).after(Input::ListEnds, t);
        assert_eq!(h.state, State::Live);
        assert!(h.can_barrier() && h.is_live() && h.listed_once);
        assert_eq!(h.last_delivered, Some(t));
    }

    #[test]
    fn an_error_resumes_and_the_next_change_makes_it_live_again() {
        assert_eq!(next(State::Live, Input::Failed { lost_an_event: false }), State::Resuming);
        assert_eq!(next(State::Resuming, Input::Change), State::Live);
        let h = Health { state: State::Resuming, listed_once: true, last_delivered: None };
        assert!(h.can_barrier(), "a resuming watch loses nothing: a barrier still proves it");
        assert!(!h.is_live(), "a reader without a barrier does not trust a watch that failed");
    }

    #[test]
    fn a_lost_event_holds_until_the_next_list() {
        assert_eq!(next(State::Live, Input::Failed { lost_an_event: true }), State::Lost);
        assert_eq!(next(State::Resuming, Input::Failed { lost_an_event: true }), State::Lost);
        assert_eq!(next(State::Lost, Input::Change), State::Lost);
        assert_eq!(next(State::Lost, Input::Failed { lost_an_event: false }), State::Lost);
        assert_eq!(next(State::Lost, Input::ListBegins), State::Listing);
        assert_eq!(next(State::Listing, Input::ListEnds), State::Live);
    }

    #[test]
    fn a_relist_is_listing_until_it_ends_and_readiness_stays() {
        let t = Instant::now();
        let h = Health::default().after(Input::ListEnds, t).after(Input::ListBegins, t);
        assert_eq!(h.state, State::Listing);
        assert!(h.listed_once, "a relist does not make a replica unready");
        assert!(!h.can_barrier());
        assert_eq!(next(State::Listing, Input::Failed { lost_an_event: true }), State::Listing);
        assert_eq!(next(State::Listing, Input::Change), State::Listing);
    }

    #[test]
    fn every_input_from_every_state_is_defined_and_a_list_always_restores() {
        for s in State::ALL {
            for i in ALL_INPUTS {
                let n = next(s, i);
                if i == Input::ListEnds {
                    assert_eq!(n, State::Live, "{s:?} --{i:?}");
                }
                if i == Input::ListBegins {
                    assert_eq!(n, State::Listing, "{s:?} --{i:?}");
                }
            }
        }
    }

    #[test]
    fn a_quiet_live_watch_is_not_believed_for_long() {
        let t = Instant::now();
        let h = Health::default().after(Input::ListEnds, t);
        assert!(h.is_live_within(Duration::from_secs(1), t + Duration::from_millis(900)));
        assert!(!h.is_live_within(Duration::from_secs(1), t + Duration::from_millis(1100)));
        let resuming = h.after(Input::Failed { lost_an_event: false }, t);
        assert!(!resuming.is_live_within(Duration::from_secs(1), t));
    }
}
