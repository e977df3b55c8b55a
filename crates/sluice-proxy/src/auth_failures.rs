//! Failed source authentication. A client address that keeps presenting wrong credentials to
//! a channel is answered 429 before they are checked (a Basic check may cost a password hash),
//! until its window (a minute by default) is over; an address asking for channels that do not
//! exist counts the same, so a 429 tells a caller nothing about which channels exist.
//! Operators see a channel's first failure in the event log at once, and when its window ends
//! one more entry counting all of them by the type of credential presented, naming the
//! addresses and how many requests were refused.
//!
//! Kept in the node's memory: in a cluster each node counts what reaches it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::json;
use sluice_store::{EventLog, Severity, Source};
use uuid::Uuid;

/// Most client addresses listed in one log entry.
const LISTED_CLIENTS: usize = 20;
/// Most (address, channel) pairs remembered; past it the oldest windows are dropped first.
const MAX_TRACKED: usize = 100_000;

/// One channel's failures in its current window.
#[derive(Default)]
struct Tally {
    failures: u64,
    by_type: BTreeMap<&'static str, u64>,
    clients: BTreeSet<Arc<str>>,
    refused: u64,
}

#[derive(Default)]
struct State {
    /// Failures per (client address, channel) since the window's start.
    by_client: HashMap<(Arc<str>, Uuid), (Instant, u32)>,
    /// The channels with failures in their open window.
    by_channel: HashMap<Uuid, Tally>,
}

/// The failure counts of one node.
pub struct AuthFailures {
    /// Failures a client may make on one channel in a window before it is refused.
    limit: u32,
    /// The window failures are counted in.
    window: Duration,
    events: Option<EventLog>,
    state: Mutex<State>,
    /// Whether any client is being counted (the common case, none, skips the lock).
    counting: AtomicBool,
}

impl AuthFailures {
    /// Refuses a client after `limit` failures on a channel in a `window` (`0`: never
    /// refuses); the entries go to `events`.
    pub fn new(limit: u32, window: Duration, events: Option<EventLog>) -> Arc<Self> {
        Arc::new(Self {
            limit,
            window,
            events,
            state: Mutex::new(State::default()),
            counting: AtomicBool::new(false),
        })
    }

    /// Seconds until `client` may try `channel` again, if it is refused now.
    pub fn retry_after(&self, client: &Arc<str>, channel: Uuid) -> Option<u64> {
        if self.limit == 0 || !self.counting.load(Ordering::Relaxed) {
            return None;
        }
        let mut state = self.state.lock();
        let (start, n) = *state.by_client.get(&(client.clone(), channel))?;
        let left = self.window.checked_sub(start.elapsed())?;
        if n < self.limit {
            return None;
        }
        if let Some(t) = state.by_channel.get_mut(&channel) {
            t.refused += 1;
        }
        Some(left.as_secs().max(1))
    }

    /// Counts a failure of `client` on `channel`: wrong credentials of the types `presented`
    /// (logged), or `None` for a channel that does not exist (counted only).
    pub fn failed(
        self: &Arc<Self>,
        client: &Arc<str>,
        channel: Uuid,
        presented: Option<&[&'static str]>,
    ) {
        let now = Instant::now();
        let mut state = self.state.lock();
        if state.by_client.len() >= MAX_TRACKED {
            state
                .by_client
                .retain(|_, (start, _)| now.duration_since(*start) < self.window);
            if state.by_client.len() >= MAX_TRACKED {
                state.by_client.clear();
            }
        }
        let entry = state
            .by_client
            .entry((client.clone(), channel))
            .or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        entry.1 += 1;
        self.counting.store(true, Ordering::Relaxed);
        let Some(presented) = presented else { return };
        let opened = !state.by_channel.contains_key(&channel);
        let tally = state.by_channel.entry(channel).or_default();
        tally.failures += 1;
        for kind in if presented.is_empty() {
            &["none"][..]
        } else {
            presented
        } {
            *tally.by_type.entry(kind).or_insert(0) += 1;
        }
        if tally.clients.len() < LISTED_CLIENTS {
            tally.clients.insert(client.clone());
        }
        drop(state);
        if opened {
            if let Some(events) = &self.events {
                events.emit(
                    Severity::Warn,
                    Source::Auth,
                    Some(channel),
                    "a caller failed source authentication",
                    json!({ "client": &**client, "presented": presented }),
                );
            }
            let this = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(this.window).await;
                this.flush(channel);
            });
        }
    }

    /// Writes the ended window of `channel` to the event log (unless it held a single failure,
    /// logged already) and forgets what it counted.
    fn flush(&self, channel: Uuid) {
        let now = Instant::now();
        let tally = {
            let mut state = self.state.lock();
            state
                .by_client
                .retain(|_, (start, _)| now.duration_since(*start) < self.window);
            if state.by_client.is_empty() {
                self.counting.store(false, Ordering::Relaxed);
            }
            state.by_channel.remove(&channel)
        };
        let (Some(tally), Some(events)) = (tally, &self.events) else {
            return;
        };
        if tally.failures < 2 {
            return; // its one failure is already logged
        }
        let failures = tally.failures;
        events.emit(
            Severity::Warn,
            Source::Auth,
            Some(channel),
            format!(
                "{failures} failed source authentication attempts in {} s",
                self.window.as_secs()
            ),
            json!({
                "failures": failures,
                "by_type": tally.by_type,
                "clients": tally.clients.iter().map(|c| &**c).collect::<Vec<_>>(),
                "refused_429": tally.refused,
            }),
        );
    }
}
