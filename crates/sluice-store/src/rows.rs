//! Small conversions between database values and domain types.

use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

use crate::error::{Result, StoreError};

/// Reads a UUID stored as text.
pub(crate) fn uuid(row: &AnyRow, col: &str) -> Result<Uuid> {
    let s: String = row.try_get(col)?;
    Uuid::parse_str(&s).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

/// Reads an optional UUID stored as text.
pub(crate) fn opt_uuid(row: &AnyRow, col: &str) -> Result<Option<Uuid>> {
    let s: Option<String> = row.try_get(col)?;
    s.map(|s| Uuid::parse_str(&s).map_err(|e| StoreError::Corrupt(format!("{col}: {e}"))))
        .transpose()
}

/// Reads a JSON document stored as text.
pub(crate) fn json<T: serde::de::DeserializeOwned>(row: &AnyRow, col: &str) -> Result<T> {
    let s: String = row.try_get(col)?;
    serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

/// Serialises a value as JSON text for storage.
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("domain values serialise")
}

/// Reads a flag: `BOOLEAN` on PostgreSQL, `INTEGER` 0/1 on SQLite.
pub(crate) fn flag(row: &AnyRow, col: &str) -> Result<bool> {
    match row.try_get::<bool, _>(col) {
        Ok(b) => Ok(b),
        Err(_) => Ok(row.try_get::<i64, _>(col)? != 0),
    }
}

/// Reads an optional flag (see [`flag`]).
pub(crate) fn opt_flag(row: &AnyRow, col: &str) -> Result<Option<bool>> {
    match row.try_get::<Option<bool>, _>(col) {
        Ok(b) => Ok(b),
        Err(_) => Ok(row.try_get::<Option<i64>, _>(col)?.map(|v| v != 0)),
    }
}

/// One page of `table`'s rows (`columns`) ordered by id after the id `after`, limited to rows
/// whose `scope_column` is in `scope` when given: the listing shape shared by projects,
/// channels, auth methods and credentials.
pub(crate) async fn page_by_id(
    pool: &sqlx::AnyPool,
    table: &str,
    columns: &str,
    scope_column: &str,
    scope: Option<&[Uuid]>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<AnyRow>> {
    let in_scope = match scope {
        None => String::new(),
        Some([]) => return Ok(Vec::new()),
        Some(ids) => format!(
            " AND {scope_column} IN ({})",
            (3..3 + ids.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let sql = format!("SELECT {columns} FROM {table} WHERE id > $1{in_scope} ORDER BY id LIMIT $2");
    let mut q = sqlx::query(&sql)
        .bind(after.map(|a| a.to_string()).unwrap_or_default())
        .bind(limit);
    for id in scope.unwrap_or_default() {
        q = q.bind(id.to_string());
    }
    Ok(q.fetch_all(pool).await?)
}
