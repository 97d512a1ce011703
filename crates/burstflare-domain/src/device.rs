//! Device authorization (RFC 8628) for `burstflare login`: user codes and the
//! polling rules.
//!
//! The user code is eight letters from a 20-consonant alphabet (no vowels, so
//! no words; no look-alikes), shown as `BCDF-GHJK` and accepted in any case,
//! with or without the dash or spaces. [`poll`] decides what a poll with the
//! device code gets: `authorization_pending`, `slow_down` (polled faster than
//! the interval: the interval grows by its base value), `expired_token`,
//! `access_denied`, or the tokens.

use crate::UnixMillis;

const ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
/// Characters in a user code (without the dash).
pub const USER_CODE_LEN: usize = 8;

/// Formats a user code for display (`BCDF-GHJK`) from caller-supplied random bytes.
pub fn user_code(random: [u8; USER_CODE_LEN]) -> String {
    // 256 is not a multiple of 20; the bias (< 2^-3 per character towards the
    // first 16 letters) costs a fraction of a bit of the ~34.6 bits.
    random
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// `BCDFGHJK` → `BCDF-GHJK`.
pub fn display_user_code(canonical: &str) -> String {
    if canonical.len() == USER_CODE_LEN {
        format!("{}-{}", &canonical[..4], &canonical[4..])
    } else {
        canonical.to_owned()
    }
}

/// The canonical form of a typed user code, or `None` if it cannot be one.
pub fn normalize_user_code(typed: &str) -> Option<String> {
    let mut out = String::with_capacity(USER_CODE_LEN);
    for c in typed.chars() {
        if c == '-' || c == ' ' {
            continue;
        }
        let c = c.to_ascii_uppercase();
        if !c.is_ascii() || !ALPHABET.contains(&(c as u8)) {
            return None;
        }
        out.push(c);
    }
    (out.len() == USER_CODE_LEN).then_some(out)
}

/// Where a device authorization stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceStatus {
    Pending,
    Approved,
    Denied,
    /// Tokens were issued; the device code is spent.
    Consumed,
}

impl DeviceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Pending => "pending",
            DeviceStatus::Approved => "approved",
            DeviceStatus::Denied => "denied",
            DeviceStatus::Consumed => "consumed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => DeviceStatus::Pending,
            "approved" => DeviceStatus::Approved,
            "denied" => DeviceStatus::Denied,
            "consumed" => DeviceStatus::Consumed,
            _ => return None,
        })
    }
}

/// What a poll gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollOutcome {
    /// Not decided yet; poll again after `interval_ms`.
    Pending,
    /// Polled too fast; the interval is now `interval_ms`.
    SlowDown {
        interval_ms: i64,
    },
    Expired,
    Denied,
    /// Issue tokens (and mark the authorization consumed).
    Issue,
    /// The code was exchanged already.
    AlreadyUsed,
}

/// The stored facts a poll is decided on.
#[derive(Debug, Clone, Copy)]
pub struct PollState {
    pub status: DeviceStatus,
    pub expires_at: UnixMillis,
    pub last_polled_at: Option<UnixMillis>,
    pub interval_ms: i64,
    /// The configured base interval (the slow-down step).
    pub base_interval_ms: i64,
}

/// Decides a poll at `now`. Expiry wins over everything but a spent code;
/// an approval is handed out even to an impatient client.
pub fn poll(s: PollState, now: UnixMillis) -> PollOutcome {
    match s.status {
        DeviceStatus::Consumed => PollOutcome::AlreadyUsed,
        _ if now >= s.expires_at => PollOutcome::Expired,
        DeviceStatus::Denied => PollOutcome::Denied,
        DeviceStatus::Approved => PollOutcome::Issue,
        DeviceStatus::Pending => match s.last_polled_at {
            Some(last) if now - last < s.interval_ms => PollOutcome::SlowDown {
                interval_ms: s.interval_ms + s.base_interval_ms,
            },
            _ => PollOutcome::Pending,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(status: DeviceStatus, last: Option<i64>) -> PollState {
        PollState {
            status,
            expires_at: 1_000,
            last_polled_at: last,
            interval_ms: 100,
            base_interval_ms: 100,
        }
    }

    #[test]
    fn user_codes() {
        let c = user_code([0, 1, 2, 3, 19, 20, 255, 7]);
        assert_eq!(c, "BCDFZBTK");
        assert_eq!(display_user_code(&c), "BCDF-ZBTK");
        assert_eq!(
            normalize_user_code("bcdf-zbtk").as_deref(),
            Some("BCDFZBTK")
        );
        assert_eq!(
            normalize_user_code(" BCDF ZBTK ").as_deref(),
            Some("BCDFZBTK")
        );
        for bad in [
            "",
            "BCDF-ZBQ",
            "BCDF-ZBTKK",
            "ABCD-EFGH",
            "BCDF-ZBQ1",
            "BCDF_ZBQJ",
        ] {
            assert_eq!(normalize_user_code(bad), None, "{bad}");
        }
        for b in 0..=255u8 {
            let c = user_code([b; 8]);
            assert_eq!(normalize_user_code(&c).as_deref(), Some(c.as_str()));
        }
    }

    #[test]
    fn polling_rules() {
        use DeviceStatus as S;
        use PollOutcome as O;
        assert_eq!(poll(state(S::Pending, None), 10), O::Pending);
        assert_eq!(poll(state(S::Pending, Some(0)), 100), O::Pending);
        assert_eq!(
            poll(state(S::Pending, Some(0)), 99),
            O::SlowDown { interval_ms: 200 }
        );
        assert_eq!(poll(state(S::Pending, None), 1_000), O::Expired);
        assert_eq!(poll(state(S::Approved, Some(995)), 999), O::Issue);
        assert_eq!(poll(state(S::Approved, None), 1_000), O::Expired);
        assert_eq!(poll(state(S::Denied, None), 10), O::Denied);
        assert_eq!(poll(state(S::Denied, None), 2_000), O::Expired);
        assert_eq!(poll(state(S::Consumed, None), 10), O::AlreadyUsed);
        assert_eq!(poll(state(S::Consumed, None), 5_000), O::AlreadyUsed);
        for s in [S::Pending, S::Approved, S::Denied, S::Consumed] {
            assert_eq!(DeviceStatus::parse(s.as_str()), Some(s));
        }
    }
}
