//! `RateLimiter`: one Durable Object per bucket key (`register:203.0.113.9`),
//! holding a token bucket ([`burstflare_domain::ratelimit`]). A Durable Object
//! processes its requests one at a time, so concurrent requests for one key
//! cannot both take the last token. The bucket is persisted (it survives
//! eviction) and an alarm deletes it once it would be full again.

use burstflare_domain::ratelimit::{Bucket, Decision, Limit, take};
use serde::{Deserialize, Serialize};
use worker::{
    DurableObject, Env, Headers, Method, Request, RequestInit, Response, State, durable_object,
};

use crate::error::{ApiError, ApiResult};
use crate::platform::{RATE_LIMITER, now};

const KEY: &str = "bucket";

#[durable_object]
pub struct RateLimiter {
    state: State,
}

/// The answer to a take.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Taken {
    pub allowed: bool,
    pub remaining: u32,
    pub retry_after_secs: u64,
}

impl RateLimiter {
    async fn take(&self, limit: Limit) -> worker::Result<Taken> {
        let storage = self.state.storage();
        let at = now();
        let bucket: Option<Bucket> = storage.get(KEY).await?;
        let (decision, bucket) = take(limit, bucket, at);
        storage.put(KEY, bucket).await?;
        // Forget the bucket once it has refilled completely.
        let per_ms = f64::from(limit.refill_per_hour.max(1)) / 3_600_000.0;
        let to_full = ((f64::from(limit.capacity) - bucket.tokens).max(0.0) / per_ms) as i64;
        storage.set_alarm(at + to_full + 1_000).await?;
        Ok(match decision {
            Decision::Allowed { remaining } => Taken {
                allowed: true,
                remaining,
                retry_after_secs: 0,
            },
            Decision::Limited { retry_after_secs } => Taken {
                allowed: false,
                remaining: 0,
                retry_after_secs,
            },
        })
    }
}

impl DurableObject for RateLimiter {
    fn new(state: State, _env: Env) -> Self {
        Self { state }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let limit: Limit = req.json().await?;
        Response::from_json(&self.take(limit).await?)
    }

    async fn alarm(&self) -> worker::Result<Response> {
        self.state.storage().delete_all().await?;
        Response::ok("ok")
    }
}

/// Takes one token from the bucket `key` under `limit`.
pub async fn take_token(env: &Env, key: &str, limit: Limit) -> ApiResult<Taken> {
    let stub = env
        .durable_object(RATE_LIMITER)
        .and_then(|ns| ns.get_by_name(key))
        .map_err(|e| {
            ApiError::unavailable(format!("Durable Object binding `{RATE_LIMITER}`: {e}"))
        })?;
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(serde_json::to_string(&limit)?.into()));
    let req = Request::new_with_init("https://rate-limiter/take", &init)?;
    let mut resp = stub.fetch_with_request(req).await?;
    if resp.status_code() != 200 {
        return Err(ApiError::internal(format!(
            "RateLimiter answered {}",
            resp.status_code()
        )));
    }
    Ok(resp.json().await?)
}
