//! Limits that keep the endpoint available: requests in flight, unauthenticated calls per source
//! address, and requests recorded per minute (an authenticated caller cannot grow etcd without
//! bound). Fixed one-minute windows: simple, and exact enough for a ceiling.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Sources remembered at once; past it, sources whose window ended are forgotten.
const MAX_SOURCES: usize = 10_000;

/// At most `limit` events per minute.
#[derive(Debug)]
pub struct PerMinute {
    limit: u32,
    state: Mutex<(Instant, u32)>,
}

impl PerMinute {
    /// A window allowing `limit` events a minute.
    pub fn new(limit: u32) -> Self {
        PerMinute { limit, state: Mutex::new((Instant::now(), 0)) }
    }

    /// The limit.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Counts one event; false when the minute's budget is spent.
    pub fn take(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        take(&mut s, self.limit, Instant::now())
    }

    /// Uncounts an event taken for something that did not happen (a call that attached).
    pub fn give_back(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.1 = s.1.saturating_sub(1);
    }
}

fn take(state: &mut (Instant, u32), limit: u32, now: Instant) -> bool {
    if now.duration_since(state.0) >= WINDOW {
        *state = (now, 0);
    }
    if state.1 >= limit {
        return false;
    }
    state.1 += 1;
    true
}

/// At most `limit` events per minute from each source address.
#[derive(Debug)]
pub struct PerSource {
    limit: u32,
    sources: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl PerSource {
    /// A window allowing `limit` events a minute per source.
    pub fn new(limit: u32) -> Self {
        PerSource { limit, sources: Mutex::new(HashMap::new()) }
    }

    /// Counts one event from `ip`; false when that source's budget is spent.
    pub fn take(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        if sources.len() >= MAX_SOURCES && !sources.contains_key(&ip) {
            sources.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let state = sources.entry(ip).or_insert((now, 0));
        take(state, self.limit, now)
    }
}

#[cfg(test)]
mod tests;
