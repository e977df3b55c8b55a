//! Wire helpers: strict JSON bodies with field errors, query parsing, cursors, times.

use axum::body::Bytes;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};
use sluice_core::clock::{parse_rfc3339, to_rfc3339, Micros};

use crate::error::{ApiError, ApiResult};

/// Default page size.
pub const DEFAULT_LIMIT: i64 = 50;
/// Largest page size.
pub const MAX_LIMIT: i64 = 500;

/// Longest string accepted anywhere in a JSON body (a PEM bundle fits; a flood does not).
pub const MAX_STRING: usize = 16 << 10;
/// Longest sink URL.
pub const MAX_URL: usize = 2048;

/// Parses a JSON body, naming the offending field on failure (unknown, missing, wrong type,
/// `null` where a value is required, a string longer than [`MAX_STRING`]). The body must be
/// one JSON object and nothing after it.
pub fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::field("body", "a JSON object is required"));
    }
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::field("body", "must be a JSON object"));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value: Value = serde::Deserialize::deserialize(&mut *de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| {
            let problem = e.to_string();
            ApiError::field("body", problem.split(" at line").next().unwrap_or(&problem))
        })?;
    if let Some(path) = overlong_string(&value, "") {
        return Err(ApiError::field(
            &path,
            format!("must be at most {MAX_STRING} bytes"),
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.inner().to_string();
        let path = e.path().to_string();
        let field = if let Some(name) = between(&inner, "unknown field `", "`") {
            name
        } else if let Some(name) = between(&inner, "missing field `", "`") {
            name
        } else if path == "." {
            "body".to_string()
        } else {
            path
        };
        ApiError::field(&field, inner)
    })
}

/// The path of the first string (value or key) in `v` longer than [`MAX_STRING`].
fn overlong_string(v: &Value, at: &str) -> Option<String> {
    let here = || {
        if at.is_empty() {
            "body".to_string()
        } else {
            at.to_string()
        }
    };
    match v {
        Value::String(s) if s.len() > MAX_STRING => Some(here()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, x)| overlong_string(x, &format!("{at}[{i}]"))),
        Value::Object(m) => m.iter().find_map(|(k, x)| {
            let path = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            if k.len() > MAX_STRING {
                return Some(here());
            }
            overlong_string(x, &path)
        }),
        _ => None,
    }
}

/// Deserializes a field that may be absent (`None`) but, when present, must hold a value:
/// `null` is refused rather than read as "unchanged".
pub fn non_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// A resource name's rules: 1 to 200 characters, no control characters, no surrounding spaces.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    let ok = !name.is_empty()
        && name.chars().count() <= 200
        && name.trim() == name
        && !name.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err("must be 1 to 200 characters without control characters or surrounding spaces")
    }
}

fn between(s: &str, start: &str, end: &str) -> Option<String> {
    let a = s.find(start)? + start.len();
    let b = s[a..].find(end)? + a;
    Some(s[a..b].to_string())
}

/// Deserializes a field that may be absent (outer `None`), `null` (`Some(None)`) or a value.
pub fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A page size from `?limit=`.
pub fn limit(raw: Option<&str>) -> Result<i64, ApiError> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_query(
                "limit",
                format!("must be an integer from 1 to {MAX_LIMIT}"),
            )),
        },
    }
}

/// An RFC 3339 time from the query.
pub fn time(name: &str, raw: Option<&str>) -> Result<Option<Micros>, ApiError> {
    raw.map(|s| {
        parse_rfc3339(s).ok_or_else(|| ApiError::bad_query(name, "must be an RFC 3339 time"))
    })
    .transpose()
}

/// Encodes a cursor from its parts.
pub fn encode_cursor(parts: &str) -> String {
    URL_SAFE_NO_PAD.encode(parts)
}

/// Decodes a cursor made by [`encode_cursor`].
pub fn decode_cursor(raw: &str) -> Result<String, ApiError> {
    URL_SAFE_NO_PAD
        .decode(raw)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ApiError::bad_query("cursor", "not a cursor returned by this API"))
}

/// Decodes a `<integer>:<text>` cursor (a time or version, then an id).
pub fn decode_pair_cursor(raw: &str) -> Result<(i64, String), ApiError> {
    let s = decode_cursor(raw)?;
    let bad = || ApiError::bad_query("cursor", "not a cursor returned by this API");
    let (n, rest) = s.split_once(':').ok_or_else(bad)?;
    Ok((n.parse().map_err(|_| bad())?, rest.to_string()))
}

/// A list answer `{"items": [...], "next_cursor": ...}`; a full page carries the cursor of its
/// last row (made by `cursor`), a shorter one `null`.
pub fn page<T>(
    rows: &[T],
    limit: i64,
    item: impl Fn(&T) -> Value,
    cursor: impl Fn(&T) -> String,
) -> Value {
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| encode_cursor(&cursor(r))))
        .flatten();
    json!({ "items": rows.iter().map(item).collect::<Vec<_>>(), "next_cursor": next })
}

/// An RFC 3339 string of a ledger time.
pub fn ts(us: Micros) -> String {
    to_rfc3339(us)
}

/// An optional UUID query parameter.
pub fn uuid_query(
    q: &std::collections::HashMap<String, String>,
    name: &str,
) -> Result<Option<uuid::Uuid>, ApiError> {
    q.get(name)
        .map(|p| uuid::Uuid::parse_str(p).map_err(|_| ApiError::bad_query(name, "must be a UUID")))
        .transpose()
}

/// `?limit=` and `?cursor=` of a listing of id-ordered rows.
pub fn id_page(
    q: &std::collections::HashMap<String, String>,
) -> Result<(i64, Option<uuid::Uuid>), ApiError> {
    Ok((limit(q.get("limit").map(String::as_str))?, id_cursor(q)?))
}

/// The id a `?cursor=` made by [`page`] over id-ordered rows continues after.
pub fn id_cursor(
    q: &std::collections::HashMap<String, String>,
) -> Result<Option<uuid::Uuid>, ApiError> {
    q.get("cursor")
        .map(|c| {
            uuid::Uuid::parse_str(&decode_cursor(c)?)
                .map_err(|_| ApiError::bad_query("cursor", "not a cursor returned by this API"))
        })
        .transpose()
}

/// The answer to deleting a resource that channels may still use: 204, 404 naming `what`, or
/// 409 with `in_use` and the channels that use it.
pub fn removal(
    outcome: sluice_store::RemoveOutcome,
    what: &'static str,
    in_use: &'static str,
) -> ApiResult<http::StatusCode> {
    match outcome {
        sluice_store::RemoveOutcome::Deleted => Ok(http::StatusCode::NO_CONTENT),
        sluice_store::RemoveOutcome::NotFound => Err(ApiError::not_found(what)),
        sluice_store::RemoveOutcome::InUse(channels) => {
            Err(ApiError::conflict(in_use, json!({ "channels": channels })))
        }
    }
}

/// Which projects a listing covers: the one asked for with `?project_id=` (404 when the caller
/// cannot see it), else every project the caller may read (`None`: all of them).
pub fn list_scope(
    caller: &crate::auth::Caller,
    asked: Option<uuid::Uuid>,
) -> Result<Option<Vec<uuid::Uuid>>, ApiError> {
    match asked {
        Some(p) => {
            caller.allow(sluice_core::access::Right::Read, Some(p), "project")?;
            Ok(Some(vec![p]))
        }
        None => Ok(caller.readable_projects()),
    }
}
