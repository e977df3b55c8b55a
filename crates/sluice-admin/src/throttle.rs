//! Throttling of failed sign-ins, per username and per client address: a few free attempts,
//! then each further one must wait twice as long as the last (up to a ceiling). Kept in the
//! node's memory: in a cluster each node throttles what reaches it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Failed attempts allowed before any delay.
const FREE_ATTEMPTS: u32 = 5;
/// The first delay; each further failure doubles it.
const FIRST_DELAY: Duration = Duration::from_secs(1);
/// The longest delay.
const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// Failures older than this are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
/// Most keys remembered; past it, forgotten failures are swept first, then everything.
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl Failures {
    /// When the next attempt may be made.
    fn open_at(&self) -> Instant {
        if self.count < FREE_ATTEMPTS {
            return self.last;
        }
        let doublings = (self.count - FREE_ATTEMPTS).min(20);
        self.last + (FIRST_DELAY * 2u32.pow(doublings)).min(MAX_DELAY)
    }
}

/// Remembers recent sign-in failures by key (a username or a client address).
#[derive(Debug, Clone, Default)]
pub struct SignInThrottle(Arc<Mutex<HashMap<String, Failures>>>);

impl SignInThrottle {
    /// How long the attempt must wait if any of `keys` is held back, `None` when it may go on.
    pub fn wait(&self, keys: &[String], now: Instant) -> Option<Duration> {
        let map = self.0.lock().expect("throttle lock");
        keys.iter()
            .filter_map(|k| map.get(k))
            .map(|f| f.open_at().saturating_duration_since(now))
            .filter(|d| !d.is_zero())
            .max()
    }

    /// Counts a failed attempt against every key.
    pub fn failed(&self, keys: &[String], now: Instant) {
        let mut map = self.0.lock().expect("throttle lock");
        if map.len() >= MAX_KEYS {
            map.retain(|_, f| now.duration_since(f.last) < FORGET_AFTER);
            if map.len() >= MAX_KEYS {
                map.clear();
            }
        }
        for k in keys {
            let f = map.entry(k.clone()).or_insert(Failures {
                count: 0,
                last: now,
            });
            if now.duration_since(f.last) >= FORGET_AFTER {
                f.count = 0;
            }
            f.count += 1;
            f.last = now;
        }
    }

    /// Forgets the failures of `keys` (after a successful sign-in).
    pub fn succeeded(&self, keys: &[String]) {
        let mut map = self.0.lock().expect("throttle lock");
        for k in keys {
            map.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_start_after_the_free_attempts_and_grow() {
        let t = SignInThrottle::default();
        let keys = vec!["user:a".to_string()];
        let now = Instant::now();
        for _ in 0..FREE_ATTEMPTS - 1 {
            t.failed(&keys, now);
        }
        assert_eq!(t.wait(&keys, now), None);
        t.failed(&keys, now);
        let first = t.wait(&keys, now).expect("held back");
        t.failed(&keys, now);
        let second = t.wait(&keys, now).expect("held back");
        assert!(second > first);
        assert_eq!(t.wait(&["user:b".to_string()], now), None);
        t.succeeded(&keys);
        assert_eq!(t.wait(&keys, now), None);
    }
}
