//! Notification webhooks: each health flip is POSTed as JSON to every configured URL, from a
//! background task, with retries and exponential backoff. Nothing waits for a delivery.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

/// How deliveries are attempted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Where notifications go.
    pub urls: Vec<String>,
    /// Attempts per delivery, the first included.
    pub attempts: u32,
    /// Wait before the second attempt; doubled before each further one.
    pub first_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// Time allowed for one attempt.
    pub timeout: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            attempts: 6,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Sends notifications to the configured webhooks; cheap to clone.
#[derive(Debug, Clone)]
pub struct Notifier {
    cfg: Arc<WebhookConfig>,
    client: reqwest::Client,
}

impl Notifier {
    /// A notifier for `cfg`.
    ///
    /// # Panics
    /// If the HTTP client cannot be built (the TLS backend failed to initialise).
    pub fn new(cfg: WebhookConfig) -> Self {
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .user_agent(concat!("sluice-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("building the webhook HTTP client");
        Self {
            cfg: Arc::new(cfg),
            client,
        }
    }

    /// Queues `payload` for every URL and returns at once.
    pub fn notify(&self, payload: Value) {
        for url in &self.cfg.urls {
            tokio::spawn(deliver(
                self.client.clone(),
                self.cfg.clone(),
                url.clone(),
                payload.clone(),
            ));
        }
    }
}

/// The wait before attempt `n` (1-based, `n >= 2`).
fn backoff(cfg: &WebhookConfig, n: u32) -> Duration {
    let factor = 2u32.saturating_pow(n.saturating_sub(2));
    cfg.first_backoff
        .saturating_mul(factor)
        .min(cfg.max_backoff)
}

async fn deliver(client: reqwest::Client, cfg: Arc<WebhookConfig>, url: String, payload: Value) {
    for attempt in 1..=cfg.attempts.max(1) {
        if attempt > 1 {
            tokio::time::sleep(backoff(&cfg, attempt)).await;
        }
        match client.post(&url).json(&payload).send().await {
            Ok(res) if res.status().is_success() => {
                tracing::debug!(%url, attempt, "webhook delivered");
                return;
            }
            Ok(res) => {
                tracing::warn!(%url, attempt, status = res.status().as_u16(), "webhook refused")
            }
            Err(e) => tracing::warn!(%url, attempt, error = %e, "webhook failed"),
        }
    }
    tracing::error!(%url, attempts = cfg.attempts, "webhook gave up");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let cfg = WebhookConfig {
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
            ..Default::default()
        };
        let waits: Vec<u64> = (2..=6).map(|n| backoff(&cfg, n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 5, 5]);
    }
}
