//! The audit trail: who changed what, filtered by resource and actor, each change shown as the
//! fields it touched, before and after.

use std::collections::{BTreeMap, HashMap};

use askama::Template;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::format;
use super::view::{render, Layout, UiResult, Viewer};
use crate::config_history::audit_page;
use crate::{wire, AdminState};

/// Entries on a page.
const PAGE: i64 = 50;

/// One changed field.
pub struct Change {
    pub field: String,
    pub before: String,
    pub after: String,
}

struct EntryView {
    at: String,
    actor: String,
    action: String,
    resource: String,
    resource_type: String,
    resource_id: String,
    changes: Vec<Change>,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    layout: Layout,
    entries: Vec<EntryView>,
    resource_type: String,
    resource_id: String,
    actor: String,
    older: String,
}

/// `path → value` of every leaf of `v` (objects by dotted key; arrays and scalars as JSON).
fn leaves(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&path, child, out);
            }
        }
        Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// The fields that differ between `before` and `after`, by path.
pub fn diff(before: Option<&Value>, after: Option<&Value>) -> Vec<Change> {
    let (mut b, mut a) = (BTreeMap::new(), BTreeMap::new());
    if let Some(v) = before {
        leaves("", v, &mut b);
    }
    if let Some(v) = after {
        leaves("", v, &mut a);
    }
    let mut fields: Vec<&String> = b.keys().chain(a.keys()).collect();
    fields.sort();
    fields.dedup();
    fields
        .into_iter()
        .filter(|f| b.get(*f) != a.get(*f))
        .map(|f| Change {
            field: if f.is_empty() {
                "(value)".into()
            } else {
                f.clone()
            },
            before: b.get(f).cloned().unwrap_or_default(),
            after: a.get(f).cloned().unwrap_or_default(),
        })
        .collect()
}

/// `GET /ui/audit?resource_type=&resource_id=&actor=&cursor=`
pub async fn page(
    State(state): State<AdminState>,
    viewer: Viewer,
    Query(q): Query<HashMap<String, String>>,
) -> UiResult<Response> {
    let rows = audit_page(&state, &viewer.caller, &q, PAGE).await?;
    let value = |k: &str| q.get(k).cloned().unwrap_or_default();
    let older = match rows.last() {
        Some(last) if rows.len() as i64 == PAGE => {
            let mut next = url::form_urlencoded::Serializer::new(String::new());
            for k in ["resource_type", "resource_id", "actor"] {
                if let Some(v) = q.get(k).filter(|v| !v.is_empty()) {
                    next.append_pair(k, v);
                }
            }
            next.append_pair(
                "cursor",
                &wire::encode_cursor(&format!("{}:{}", last.at, last.id)),
            );
            format!("/ui/audit?{}", next.finish())
        }
        _ => String::new(),
    };
    let project = viewer.pick_project(None).map(|p| p.id);
    let page = AuditPage {
        layout: viewer.layout("Audit trail", "audit", project),
        entries: rows
            .iter()
            .map(|e| EntryView {
                at: format::when(e.at),
                actor: e.actor.clone(),
                action: e.action.clone(),
                resource: format!("{} {}", e.resource_type, e.resource_id),
                resource_type: e.resource_type.clone(),
                resource_id: e.resource_id.clone(),
                changes: diff(e.before.as_ref(), e.after.as_ref()),
            })
            .collect(),
        resource_type: value("resource_type"),
        resource_id: value("resource_id"),
        actor: value("actor"),
        older,
    };
    Ok(render(&page)?.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_diff_names_each_changed_field_by_its_path() {
        let before =
            json!({ "name": "a", "timeouts": { "connect_ms": 5, "idle_ms": 1 }, "ids": [1] });
        let after = json!({ "name": "b", "timeouts": { "connect_ms": 5, "idle_ms": 2 }, "ids": [1], "new": true });
        let changes = diff(Some(&before), Some(&after));
        let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["name", "new", "timeouts.idle_ms"]);
        assert_eq!(
            (changes[0].before.as_str(), changes[0].after.as_str()),
            ("a", "b")
        );
        assert_eq!(changes[1].before, "");
        assert_eq!(diff(None, Some(&json!({ "x": 1 })))[0].after, "1");
    }
}
