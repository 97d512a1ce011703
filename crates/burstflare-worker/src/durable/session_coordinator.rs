//! `SessionCoordinator`: one Durable Object per session, SQLite storage.
//!
//! It will be the single writer of a session's lifecycle (the sessions
//! issue). For now it answers `GET /ping` (read the counter) and `POST /ping`
//! (increment it), backed by its SQLite storage, which proves the binding,
//! the storage backend and the Worker → DO call path.
//!
//! DO SQLite tables (documented in `docs/storage.md`):
//! * `counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)`

use serde::{Deserialize, Serialize};
use worker::{DurableObject, Env, Method, Request, Response, State, durable_object};

use crate::error::{ApiError, ApiResult};
use crate::platform::SESSIONS;

#[durable_object]
pub struct SessionCoordinator {
    state: State,
}

/// Reply to a ping.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pong {
    pub object_id: String,
    pub count: i64,
}

#[derive(Deserialize)]
struct Count {
    value: i64,
}

impl SessionCoordinator {
    fn pings(&self, increment: bool) -> worker::Result<i64> {
        let sql = self.state.storage().sql();
        sql.exec(
            "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
            None,
        )?;
        let cursor = if increment {
            sql.exec(
                "INSERT INTO counters (name, value) VALUES ('pings', 1) \
                 ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
                None,
            )?
        } else {
            sql.exec(
                "SELECT COALESCE((SELECT value FROM counters WHERE name = 'pings'), 0) AS value",
                None,
            )?
        };
        let rows: Vec<Count> = cursor.to_array()?;
        Ok(rows.first().map_or(0, |r| r.value))
    }
}

impl DurableObject for SessionCoordinator {
    fn new(state: State, _env: Env) -> Self {
        Self { state }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        let increment = match (req.method(), req.path().as_str()) {
            (Method::Get, "/ping") => false,
            (Method::Post, "/ping") => true,
            _ => return Response::error("not found", 404),
        };
        let count = self.pings(increment)?;
        Response::from_json(&Pong {
            object_id: self.state.id().to_string(),
            count,
        })
    }
}

/// Pings the `SessionCoordinator` named `name` (incrementing its counter when asked).
pub async fn ping(env: &Env, name: &str, increment: bool) -> ApiResult<Pong> {
    let stub = env
        .durable_object(SESSIONS)
        .and_then(|ns| ns.get_by_name(name))
        .map_err(|e| ApiError::unavailable(format!("Durable Object binding `{SESSIONS}`: {e}")))?;
    let method = if increment { Method::Post } else { Method::Get };
    let mut init = worker::RequestInit::new();
    init.with_method(method);
    let req = Request::new_with_init("https://session-coordinator/ping", &init)?;
    let mut resp = stub.fetch_with_request(req).await?;
    if resp.status_code() != 200 {
        return Err(ApiError::internal(format!(
            "SessionCoordinator ping answered {}",
            resp.status_code()
        )));
    }
    Ok(resp.json::<Pong>().await?)
}
