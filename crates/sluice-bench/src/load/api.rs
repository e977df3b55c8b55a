//! The few admin API calls the load generator makes: finding or creating its channel.

use anyhow::{bail, Context as _};
use serde::Deserialize;
use serde_json::{json, Value};

/// A channel as the API returns it (only the fields the loader needs).
#[derive(Debug, Deserialize)]
struct Channel {
    id: Value,
    name: String,
    #[serde(default)]
    sink_url: Option<String>,
}

impl Channel {
    fn id(&self) -> String {
        match &self.id {
            Value::String(id) => id.clone(),
            other => other.to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct ChannelPage {
    items: Vec<Channel>,
    next_cursor: Option<String>,
}

/// Returns the id of the channel called `name`, creating it (pointing at `sink_url`) if absent.
pub async fn ensure_channel(
    client: &reqwest::Client,
    target: &str,
    token: &str,
    name: &str,
    sink_url: &str,
) -> anyhow::Result<String> {
    let url = format!("{}/api/v1/channels", target.trim_end_matches('/'));
    let mut cursor: Option<String> = None;
    loop {
        let mut request = client
            .get(&url)
            .bearer_auth(token)
            .query(&[("limit", "500")]);
        if let Some(cursor) = &cursor {
            request = request.query(&[("cursor", cursor)]);
        }
        let page: ChannelPage = checked(request.send().await, "listing channels")
            .await?
            .json()
            .await
            .context("decoding the channel list")?;
        if let Some(channel) = page.items.iter().find(|c| c.name == name) {
            if channel
                .sink_url
                .as_deref()
                .is_some_and(|url| url != sink_url)
            {
                tracing::warn!(
                    channel = name,
                    sink_url = channel.sink_url.as_deref(),
                    "existing bench channel points at another sink; using it anyway"
                );
            }
            return Ok(channel.id());
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let created: Channel = checked(
        client
            .post(&url)
            .bearer_auth(token)
            .json(&json!({ "name": name, "sink_url": sink_url }))
            .send()
            .await,
        "creating the bench channel",
    )
    .await?
    .json()
    .await
    .context("decoding the created channel")?;
    Ok(created.id())
}

async fn checked(
    sent: reqwest::Result<reqwest::Response>,
    what: &str,
) -> anyhow::Result<reqwest::Response> {
    let response = sent.with_context(|| format!("{what}: request failed"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        bail!("{what}: the API answered {status}: {}", body.trim());
    }
    Ok(response)
}
