//! Token-bucket rate limiting: the arithmetic, kept pure so that the Durable
//! Object holding the buckets stays a thin shell.
//!
//! A bucket holds up to `capacity` tokens and gains `refill_per_hour`
//! tokens per hour. Each request takes one; an empty bucket answers with
//! how long until a token is back (`Retry-After`, whole seconds, at least 1).

use crate::UnixMillis;

/// A limit: a burst of `capacity` requests, then `refill_per_hour`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limit {
    pub capacity: u32,
    pub refill_per_hour: u32,
}

/// A bucket's stored state.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Bucket {
    pub tokens: f64,
    pub updated_at: UnixMillis,
}

/// The decision for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed { remaining: u32 },
    Limited { retry_after_secs: u64 },
}

/// Takes one token from `bucket` (a fresh bucket is full) at `now`.
pub fn take(limit: Limit, bucket: Option<Bucket>, now: UnixMillis) -> (Decision, Bucket) {
    let capacity = f64::from(limit.capacity.max(1));
    let per_ms = f64::from(limit.refill_per_hour) / 3_600_000.0;
    let mut b = bucket.unwrap_or(Bucket {
        tokens: capacity,
        updated_at: now,
    });
    let elapsed = (now - b.updated_at).max(0) as f64;
    b.tokens = (b.tokens + elapsed * per_ms).min(capacity);
    b.updated_at = now.max(b.updated_at);
    if b.tokens >= 1.0 {
        b.tokens -= 1.0;
        let remaining = b.tokens.floor() as u32;
        (Decision::Allowed { remaining }, b)
    } else {
        let retry_after_secs = if per_ms > 0.0 {
            (((1.0 - b.tokens) / per_ms) / 1000.0).ceil().max(1.0) as u64
        } else {
            u64::MAX / 2
        };
        (Decision::Limited { retry_after_secs }, b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limit = Limit {
        capacity: 3,
        refill_per_hour: 360,
    };

    #[test]
    fn burst_then_limited_then_refills() {
        let mut b = None;
        for want in [2, 1, 0] {
            let (d, nb) = take(L, b, 0);
            assert_eq!(d, Decision::Allowed { remaining: want });
            b = Some(nb);
        }
        let (d, nb) = take(L, b, 0);
        // One token per 10 s.
        assert_eq!(
            d,
            Decision::Limited {
                retry_after_secs: 10
            }
        );
        let (d, _) = take(L, Some(nb), 4_000);
        assert_eq!(
            d,
            Decision::Limited {
                retry_after_secs: 6
            }
        );
        let (d, nb) = take(L, Some(nb), 10_000);
        assert_eq!(d, Decision::Allowed { remaining: 0 });
        // Refill never exceeds capacity.
        let (d, _) = take(L, Some(nb), 10_000_000);
        assert_eq!(d, Decision::Allowed { remaining: 2 });
    }

    #[test]
    fn clock_going_backwards_does_not_mint_tokens() {
        let (_, b) = take(L, None, 50_000);
        let (_, b) = take(L, Some(b), 50_000);
        let (_, b) = take(L, Some(b), 50_000);
        let (d, _) = take(L, Some(b), 0);
        assert!(matches!(d, Decision::Limited { .. }));
    }
}
