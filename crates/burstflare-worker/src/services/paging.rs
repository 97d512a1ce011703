//! Cursor pagination shared by every list endpoint: `?limit=` parsing,
//! opaque keyset cursors over `(created_at, id)`, and cutting one page from a
//! query that fetched one row more than the limit.

use burstflare_api::{DEFAULT_PAGE_SIZE, ErrorCode, MAX_PAGE_SIZE};
use burstflare_domain::ids::InvalidId;
use serde_json::json;

use crate::error::{ApiError, ApiResult};
use crate::store::After;

/// A 400 `invalid_query` naming the parameter.
pub fn bad_query(param: &str, message: String) -> ApiError {
    ApiError::new(400, ErrorCode::InvalidQuery, message).with_details(json!({ "param": param }))
}

/// Parses `?limit=`.
pub fn parse_limit(raw: Option<&str>) -> ApiResult<u32> {
    match raw {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
            _ => Err(bad_query(
                "limit",
                format!("limit {s:?} must be an integer from 1 to {MAX_PAGE_SIZE}"),
            )),
        },
    }
}

/// The cursor of a row in a `(created_at, id)`-ordered list.
pub fn encode_keyset(created_at: i64, id: &str) -> String {
    hex::encode(format!("{created_at}:{id}"))
}

/// Reads a cursor from [`encode_keyset`]; the id must be a valid `I`.
pub fn decode_keyset<I: std::str::FromStr<Err = InvalidId>>(raw: &str) -> ApiResult<After> {
    let bad = || {
        bad_query(
            "cursor",
            format!("cursor {raw:?} is not one this server issued"),
        )
    };
    let text = hex::decode(raw)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad)?;
    let (at, id) = text.split_once(':').ok_or_else(bad)?;
    id.parse::<I>().map_err(|_| bad())?;
    Ok(After {
        created_at: at.parse().map_err(|_| bad())?,
        id: id.to_owned(),
    })
}

/// Cuts `rows` (fetched with `limit + 1`) to one page and returns the cursor
/// of the next page, if there is one.
pub fn cut_page<R>(rows: &mut Vec<R>, limit: u32, cursor: impl Fn(&R) -> String) -> Option<String> {
    if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(cursor)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use burstflare_domain::{SessionId, TokenId};

    use super::*;

    #[test]
    fn keyset_cursors_round_trip_and_reject_foreign_ids() {
        let id = SessionId::from_random([3; 16]);
        let cursor = encode_keyset(42, id.as_str());
        assert_eq!(
            decode_keyset::<SessionId>(&cursor).ok(),
            Some(After {
                created_at: 42,
                id: id.to_string()
            })
        );
        let err = decode_keyset::<TokenId>(&cursor).err();
        assert_eq!(
            err.map(|e| (e.status, e.details["param"].as_str().map(str::to_owned))),
            Some((400, Some("cursor".to_owned())))
        );
        assert!(decode_keyset::<SessionId>("zz").is_err());
    }

    #[test]
    fn pages_are_cut_at_the_limit() {
        let mut rows = vec![1, 2, 3];
        assert_eq!(cut_page(&mut rows, 2, |r| r.to_string()), Some("2".into()));
        assert_eq!(rows, [1, 2]);
        assert_eq!(cut_page(&mut rows, 2, |r| r.to_string()), None);
        assert!(parse_limit(Some("0")).is_err() && parse_limit(Some("201")).is_err());
        assert_eq!(parse_limit(None).ok(), Some(DEFAULT_PAGE_SIZE));
    }
}
