//! The adaptor catalogue's maintenance page (superusers): where it reads from, what it holds,
//! its recent refreshes, and a button that refreshes now.

use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use sluice_catalog::IconShape;
use sluice_core::access::Right;

use super::format;
use super::view::{render, Layout, Submitted, UiResult, Viewer};
use crate::catalog::{Cause, RefreshReport};
use crate::AdminState;

/// Refreshes listed on the page.
const REFRESHES_SHOWN: i64 = 10;

struct RefreshRow {
    when: String,
    cause: String,
    ok: bool,
    outcome: String,
    node: String,
}

struct AdaptorRow {
    short: String,
    icon: String,
    latest: String,
    state: &'static str,
    checked: String,
}

#[derive(Template)]
#[template(path = "catalog.html")]
struct CatalogPage {
    layout: Layout,
    source: String,
    interval: String,
    leading: bool,
    counts: Vec<(&'static str, usize)>,
    last: String,
    problems: Vec<String>,
    refreshes: Vec<RefreshRow>,
    adaptors: Vec<AdaptorRow>,
    note: String,
    problem: String,
}

/// A refresh's summary in a few words.
fn outcome(summary: &Value) -> String {
    if let Some(error) = summary["error"].as_str() {
        return error.to_string();
    }
    let n = |k: &str| summary[k].as_array().map_or(0, Vec::len);
    let failed = summary["failed"].as_object().map_or(0, |m| m.len());
    let mut text = format!(
        "{} listed: {} added, {} updated, {} hidden, {} icons changed",
        summary["listed"].as_u64().unwrap_or(0),
        n("added"),
        n("updated"),
        n("hidden"),
        n("icons"),
    );
    if failed > 0 {
        text.push_str(&format!(", {failed} failed"));
    }
    text
}

async fn page(
    state: &AdminState,
    viewer: &Viewer,
    note: String,
    problem: String,
) -> UiResult<CatalogPage> {
    viewer
        .caller
        .allow(Right::ManageInstance, None, "catalog")?;
    let catalog = &state.catalog;
    let snapshot = catalog.snapshot();
    let refreshes: Vec<RefreshRow> = state
        .store
        .catalog_refreshes(REFRESHES_SHOWN)
        .await?
        .into_iter()
        .map(|r| RefreshRow {
            when: format::when(r.finished_at),
            cause: r.cause.replace('_', " "),
            ok: r.ok,
            outcome: outcome(&serde_json::from_str(&r.summary).unwrap_or_default()),
            node: r.node,
        })
        .collect();
    let last = refreshes
        .first()
        .map(|r| format!("Last refreshed {} ({}): {}.", r.when, r.cause, r.outcome))
        .unwrap_or_default();
    let c = snapshot.counts();
    let counts = vec![
        ("adaptors", c.adaptors),
        ("offered as credential types", c.offered),
        ("deprecated", c.deprecated),
        ("hidden (gone upstream)", c.hidden),
    ];
    let adaptors = snapshot
        .adaptors
        .iter()
        .map(|a| AdaptorRow {
            short: a.short.clone(),
            icon: snapshot
                .icon_url(&a.short, IconShape::Square)
                .unwrap_or_default(),
            latest: a.row.latest.clone(),
            state: match (
                a.row.hidden_at.is_some(),
                a.row.deprecated.is_some(),
                a.has_schema,
            ) {
                (true, _, _) => "hidden: gone upstream",
                (_, true, _) => "deprecated",
                (_, _, false) => "no credential schema",
                _ => "offered",
            },
            checked: format::when(a.row.checked_at),
        })
        .collect();
    let interval = catalog.refresh_interval();
    Ok(CatalogPage {
        layout: viewer.layout(
            "Catalogue",
            "admin",
            viewer.pick_project(None).map(|p| p.id),
        ),
        source: catalog.source().to_string(),
        interval: match interval.is_zero() {
            true => String::new(),
            false => format::duration(i64::try_from(interval.as_micros()).unwrap_or(i64::MAX)),
        },
        leading: catalog.leads(),
        counts,
        last,
        problems: snapshot.problems().to_vec(),
        refreshes,
        adaptors,
        note,
        problem,
    })
}

/// `GET /ui/admin/catalog`
pub async fn show(State(state): State<AdminState>, viewer: Viewer) -> UiResult<Response> {
    let page = page(&state, &viewer, String::new(), String::new()).await?;
    Ok(render(&page)?.into_response())
}

/// `POST /ui/admin/catalog/refresh`: refreshes every adaptor now and shows what changed.
pub async fn refresh(State(state): State<AdminState>, form: Submitted) -> UiResult<Response> {
    let viewer = &form.viewer;
    viewer
        .caller
        .allow(Right::ManageInstance, None, "catalog")?;
    let (note, problem) = match state.catalog.refresh(Cause::Api, None).await {
        Ok(report) => (refreshed(&report), String::new()),
        Err(e) => (String::new(), e.to_string()),
    };
    let page = page(&state, viewer, note, problem).await?;
    Ok(render(&page)?.into_response())
}

fn refreshed(report: &RefreshReport) -> String {
    let summary = serde_json::to_value(report).unwrap_or_default();
    format!("Refreshed: {}.", outcome(&summary))
}
