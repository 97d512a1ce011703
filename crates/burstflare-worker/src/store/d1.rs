//! D1 helpers: the database handle, argument conversion and error mapping.

use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, Env};

use crate::error::{ApiError, ApiResult};

pub fn db(env: &Env) -> ApiResult<D1Database> {
    env.d1(crate::platform::DB)
        .map_err(|e| ApiError::unavailable(format!("D1 binding `DB` is missing: {e}")))
}

/// A text argument.
pub fn text(v: &str) -> JsValue {
    JsValue::from_str(v)
}

/// An integer argument (ids and times stay well within 2^53).
pub fn int(v: i64) -> JsValue {
    JsValue::from_f64(v as f64)
}

/// A nullable text argument.
pub fn opt_text(v: Option<&str>) -> JsValue {
    v.map_or(JsValue::NULL, text)
}

/// A nullable integer argument.
pub fn opt_int(v: Option<i64>) -> JsValue {
    v.map_or(JsValue::NULL, int)
}

/// Prepares `sql` with positional arguments.
pub fn stmt(db: &D1Database, sql: &str, args: &[JsValue]) -> ApiResult<D1PreparedStatement> {
    db.prepare(sql)
        .bind(args)
        .map_err(|e| ApiError::internal(format!("bind `{sql}`: {e}")))
}

/// Wraps a D1 failure with the statement that caused it.
pub fn failed(sql: &str, e: worker::Error) -> ApiError {
    ApiError::internal(format!("D1 `{sql}`: {e}"))
}

/// True when a D1 error is a UNIQUE violation on `column` (`users.email`).
pub fn is_unique_violation(e: &ApiError, column: &str) -> bool {
    e.internal
        .as_deref()
        .is_some_and(|m| m.contains("UNIQUE constraint failed") && m.contains(column))
}

/// Runs a statement that returns no rows; yields the number of rows changed.
pub async fn execute(db: &D1Database, sql: &str, args: &[JsValue]) -> ApiResult<usize> {
    let result = stmt(db, sql, args)?
        .run()
        .await
        .map_err(|e| failed(sql, e))?;
    let changes = result
        .meta()
        .ok()
        .flatten()
        .and_then(|m| m.changes)
        .unwrap_or(0);
    Ok(changes)
}

/// Fetches at most one row.
pub async fn first<T: serde::de::DeserializeOwned>(
    db: &D1Database,
    sql: &str,
    args: &[JsValue],
) -> ApiResult<Option<T>> {
    stmt(db, sql, args)?
        .first::<T>(None)
        .await
        .map_err(|e| failed(sql, e))
}

/// Fetches every row.
pub async fn all<T: serde::de::DeserializeOwned>(
    db: &D1Database,
    sql: &str,
    args: &[JsValue],
) -> ApiResult<Vec<T>> {
    let result = stmt(db, sql, args)?
        .all()
        .await
        .map_err(|e| failed(sql, e))?;
    result.results::<T>().map_err(|e| failed(sql, e))
}
