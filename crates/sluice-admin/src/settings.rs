//! `/api/v1/settings` (superusers): the instance settings, each with its value, its default
//! (the command line's) and whether an operator saved it; `PATCH` saves some, `null` returning
//! one to its default. The jobs read the saved values afresh (see `sluice_store::settings`).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Map, Value};
use sluice_core::access::Right;
use sluice_store::settings::{
    SettingSpec, EVENT_RETENTION_DAYS, HEALTH_INTERVAL_SECS, SETTINGS, STALE_THRESHOLD_DAYS,
};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::wire;
use crate::AdminState;

/// The command line's values of the instance settings, which saved ones override.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingDefaults {
    /// Time between health rounds (zero: none).
    pub health_interval: Duration,
    /// Days without traffic after which a channel is stale.
    pub stale_threshold_days: u32,
    /// Days event-log entries are kept.
    pub event_retention_days: u32,
}

impl SettingDefaults {
    /// The default of setting `name`, as the API shows it (seconds may have a fraction).
    fn of(&self, name: &str) -> Value {
        match name {
            HEALTH_INTERVAL_SECS if self.health_interval.subsec_nanos() == 0 => {
                json!(self.health_interval.as_secs())
            }
            HEALTH_INTERVAL_SECS => json!(self.health_interval.as_secs_f64()),
            STALE_THRESHOLD_DAYS => json!(self.stale_threshold_days),
            EVENT_RETENTION_DAYS => json!(self.event_retention_days),
            _ => Value::Null,
        }
    }
}

impl AdminState {
    /// How long a channel may go without traffic before it is stale: the saved setting, or
    /// the command line's.
    pub async fn stale_threshold(&self) -> ApiResult<Duration> {
        let days = self
            .store
            .saved_setting(STALE_THRESHOLD_DAYS)
            .await?
            .unwrap_or(u64::from(self.setting_defaults.stale_threshold_days));
        Ok(Duration::from_secs(86_400 * days))
    }
}

/// One setting as the API and the page show it.
#[derive(Debug, Clone)]
pub struct SettingView {
    /// What it is.
    pub spec: SettingSpec,
    /// The value in force.
    pub value: Value,
    /// The command line's value.
    pub default: Value,
    /// Whether an operator saved it (else the default is in force).
    pub saved: bool,
}

/// Every setting with its value in force.
pub async fn current(state: &AdminState) -> ApiResult<Vec<SettingView>> {
    let saved = state.store.saved_settings().await?;
    Ok(SETTINGS
        .iter()
        .map(|spec| {
            let default = state.setting_defaults.of(spec.name);
            let value = saved.get(spec.name).map(|v| json!(v));
            SettingView {
                spec: *spec,
                saved: value.is_some(),
                value: value.unwrap_or_else(|| default.clone()),
                default,
            }
        })
        .collect())
}

fn settings_json(views: &[SettingView]) -> Value {
    let items: Vec<Value> = views
        .iter()
        .map(|v| {
            json!({
                "name": v.spec.name,
                "description": v.spec.label,
                "value": v.value,
                "default": v.default,
                "saved": v.saved,
                "min": v.spec.min,
                "max": v.spec.max,
            })
        })
        .collect();
    json!({ "items": items })
}

/// The changes a body asks for: each named setting to a whole number in its range, or `null`
/// for its default. Unknown names and bad values are named in a 422.
pub fn changes_of(body: &Map<String, Value>) -> ApiResult<Vec<(&'static str, Option<u64>)>> {
    let mut fields = Map::new();
    let mut changes = Vec::new();
    for (name, value) in body {
        let Some(spec) = SETTINGS.iter().find(|s| s.name == name) else {
            fields.insert(name.clone(), "no such setting".into());
            continue;
        };
        match value {
            Value::Null => changes.push((spec.name, None)),
            v => match v.as_u64().filter(|n| (spec.min..=spec.max).contains(n)) {
                Some(n) => changes.push((spec.name, Some(n))),
                None => {
                    fields.insert(
                        name.clone(),
                        format!(
                            "must be a whole number from {} to {}, or null for the default",
                            spec.min, spec.max
                        )
                        .into(),
                    );
                }
            },
        }
    }
    if fields.is_empty() {
        Ok(changes)
    } else {
        Err(ApiError::fields(fields))
    }
}

/// Saves what `body` asks for, as `caller`; the settings in force after.
pub async fn save(
    state: &AdminState,
    caller: &Caller,
    body: &Map<String, Value>,
) -> ApiResult<Vec<SettingView>> {
    caller.allow(Right::ManageInstance, None, "setting")?;
    let changes = changes_of(body)?;
    state.store.save_settings(&changes, caller.actor()).await?;
    current(state).await
}

/// `GET /api/v1/settings`
pub async fn get(State(state): State<AdminState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.allow(Right::ManageInstance, None, "setting")?;
    Ok(Json(settings_json(&current(&state).await?)))
}

/// `PATCH /api/v1/settings`: `{"stale_threshold_days": 3, "health_interval_secs": null}`.
pub async fn patch(
    State(state): State<AdminState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    caller.allow(Right::ManageInstance, None, "setting")?;
    let body: Map<String, Value> = wire::parse_body(&body)?;
    Ok(Json(settings_json(&save(&state, &caller, &body).await?)))
}
