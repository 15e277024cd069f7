//! One budget for the operator's API-server traffic: a tower layer on the kube [`kube::Client`]
//! that bounds the requests in flight and, when they are all taken, serves waiting requests
//! highest priority first (see [`Priority`]; FIFO within one), so creates of DeprovisionRequests
//! go before status writes, those before other work, then SubjectAccessReviews, then Events; a
//! request that has waited its [`starving`] bound goes next whatever its priority: work (a
//! status write, a barrier, a review, a probe) waits at most [`WORK_WAITS`], under every
//! caller's own timeout (3 s for a barrier or `/readyz`, 4 s for a verification), and Events at
//! most [`EVENTS_WAIT`].
//! Events take a slot only while few requests are in flight (a quarter of the limit, at least
//! one), so in a burst they wait for a quiet moment (at most [`EVENTS_WAIT`]) instead of taking slots
//! from the work; they only announce what the status records. Watches and the leader Lease bypass
//! it. Queue depths and waits are exported (`budget_queued`, `budget_wait_seconds`).
//!
//! The API server answers 429 to every request of an identity once its queues are full (API
//! Priority and Fairness), each then retried after a second or more; bounding what is in flight
//! here keeps those queues short, and the priorities decide what goes first.

mod classify;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tower::{BoxError, Layer, Service, ServiceExt};

pub use classify::{Priority, classify};

use crate::metrics::{Metrics, PriorityLabels};

/// How long a request of work waits at most behind requests of higher priority.
pub const WORK_WAITS: Duration = Duration::from_secs(1);

/// How long an Event waits at most for a quiet moment.
pub const EVENTS_WAIT: Duration = Duration::from_secs(5);

/// How long a request of this priority waits at most before it goes next whatever its priority.
pub fn starving(priority: Priority) -> Duration {
    match priority {
        Priority::Event => EVENTS_WAIT,
        _ => WORK_WAITS,
    }
}

/// The bounded set of API requests in flight, shared by every clone of the client.
pub struct Budget {
    state: Mutex<State>,
    metrics: Arc<Metrics>,
}

struct State {
    limit: usize,
    in_flight: usize,
    /// Requests waiting for a slot, per priority (index: `Priority as usize`), oldest first.
    waiting: [VecDeque<(Instant, oneshot::Sender<Permit>)>; 5],
}

/// A slot of the budget, given back when dropped.
pub struct Permit(Arc<Budget>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.release();
    }
}

impl Budget {
    /// A budget of `limit` requests in flight (at least one).
    pub fn new(limit: usize, metrics: Arc<Metrics>) -> Arc<Budget> {
        let state = State { limit: limit.max(1), in_flight: 0, waiting: Default::default() };
        Arc::new(Budget { state: Mutex::new(state), metrics })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// Waits for a slot: at once while fewer than its [`room`] are in flight, else after every
    /// request of a higher priority (and those of this one queued before) got theirs.
    pub async fn acquire(self: &Arc<Self>, priority: Priority) -> Permit {
        let labels = PriorityLabels { priority: priority.as_str() };
        let started = Instant::now();
        let rx = {
            let mut st = self.lock();
            if st.in_flight < room(priority as usize, st.limit) {
                st.in_flight += 1;
                drop(st);
                self.metrics.budget_wait_seconds.get_or_create(&labels).observe(0.0);
                return Permit(self.clone());
            }
            let (tx, rx) = oneshot::channel();
            st.waiting[priority as usize].push_back((started, tx));
            rx
        };
        let queued = Queued::new(&self.metrics, labels.clone());
        let permit = rx.await;
        drop(queued);
        self.metrics.budget_wait_seconds.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
        match permit {
            Ok(p) => p,
            // Only when the budget's queue was dropped, which a waiter's own `Arc` prevents: take
            // a slot anyway rather than never send the request.
            Err(_) => {
                self.lock().in_flight += 1;
                Permit(self.clone())
            }
        }
    }

    /// Gives a slot back: straight to the next waiter ([`next`]), if any.
    fn release(self: &Arc<Self>) {
        let mut st = self.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
        while let Some(i) = next(&st.waiting, Instant::now(), st.in_flight, st.limit) {
            let Some((_, tx)) = st.waiting[i].pop_front() else { break };
            st.in_flight += 1;
            match tx.send(Permit(self.clone())) {
                Ok(()) => return,
                // That waiter gave up; its permit must not release again (the lock is held). Only
                // a count of the budget's `Arc` is lost, and the budget lives as long as the client.
                Err(unwanted) => {
                    std::mem::forget(unwanted);
                    st.in_flight -= 1;
                }
            }
        }
    }
}

/// How many requests may be in flight for one of this priority (index: `Priority as usize`) to
/// start (pure): the limit, but for Events a quarter of it (at least one).
fn room(priority: usize, limit: usize) -> usize {
    match priority == Priority::Event as usize {
        true => (limit / 4).max(1),
        false => limit,
    }
}

/// Which queue is served next when `in_flight` of `limit` are taken (pure): the one whose oldest
/// request has waited past its [`starving`] bound the longest, if any has; else the highest
/// priority with a request waiting and [`room`] to start.
fn next<T>(waiting: &[VecDeque<(Instant, T)>], now: Instant, in_flight: usize, limit: usize) -> Option<usize> {
    if in_flight >= limit {
        return None;
    }
    let fronts = waiting.iter().enumerate().filter_map(|(i, q)| q.front().map(|(since, _)| (i, *since)));
    let starving = fronts.clone().filter(|(i, since)| now.duration_since(*since) >= starving(Priority::ALL[*i]));
    let room = fronts.filter(|(i, _)| in_flight < room(*i, limit));
    starving.min_by_key(|(_, since)| *since).or_else(|| room.min_by_key(|(i, _)| *i)).map(|(i, _)| i)
}

/// Counts a request in `budget_queued` while it waits (also when it gives up waiting).
struct Queued<'a> {
    metrics: &'a Metrics,
    labels: PriorityLabels,
}

impl<'a> Queued<'a> {
    fn new(metrics: &'a Metrics, labels: PriorityLabels) -> Queued<'a> {
        metrics.budget_queued.get_or_create(&labels).inc();
        Queued { metrics, labels }
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.metrics.budget_queued.get_or_create(&self.labels).dec();
    }
}

/// The layer putting a service behind a [`Budget`]. The service it wraps must be cheap to clone
/// (put a `tower::buffer::Buffer` under it): a request takes its slot before it is sent.
#[derive(Clone)]
pub struct BudgetLayer(pub Arc<Budget>);

impl<S> Layer<S> for BudgetLayer {
    type Service = BudgetService<S>;

    fn layer(&self, inner: S) -> BudgetService<S> {
        BudgetService { inner, budget: self.0.clone() }
    }
}

/// See [`BudgetLayer`].
#[derive(Clone)]
pub struct BudgetService<S> {
    inner: S,
    budget: Arc<Budget>,
}

impl<S, B> Service<Request<Body>> for BudgetService<S>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    type Response = Response<B>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<B>, BoxError>> + Send>>;

    /// Always ready: readiness of the inner service is awaited once the request has its slot.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let priority = classify(req.method(), req.uri().path(), req.uri().query());
        let budget = self.budget.clone();
        let inner = self.inner.clone();
        Box::pin(async move {
            // Held until the response's head has come (the body of an answer is small, a watch's
            // never ends, and watches bypass the budget).
            let _permit = match priority {
                Some(p) => Some(budget.acquire(p).await),
                None => None,
            };
            inner.oneshot(req).await.map_err(Into::into)
        })
    }
}

#[cfg(test)]
mod tests;
