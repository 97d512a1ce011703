//! The audit log. The router writes one record for every mutating request
//! (whatever its outcome) from what the request left in [`Ctx`]'s audit note:
//! the actor, the workspace acted in (the actor's personal workspace for
//! account-level actions) and the target. Admins and owners read a
//! workspace's log.

use burstflare_api::identity::{AuditEvent, AuditOutcome};
use burstflare_api::{Page, timestamp};
use burstflare_domain::policy::Action;
use burstflare_domain::{AuditId, UserId};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::new_id;
use super::paging::{bad_query, cut_page, decode_keyset, encode_keyset, parse_limit};
use super::workspaces::Membership;
use crate::error::ApiResult;
use crate::routes::Ctx;
use crate::store::audit::{self as store, AuditRow, Filter};

/// Writes the record of one mutating request. Failing to audit is logged,
/// never turned into a failure of the request itself.
pub async fn record(
    ctx: &Ctx,
    action: &str,
    request_id: &str,
    status: u16,
    error_code: Option<String>,
) {
    let mut note = ctx.audit_note();
    // Account-level actions go to the actor's personal workspace.
    if note.workspace_id.is_none()
        && let Some(actor) = &note.actor_id
        && let Ok(Some(user)) = crate::store::users::find(&ctx.env, actor).await
    {
        note.workspace_id = user.personal_workspace_id;
    }
    let id = match new_id(AuditId::from_random) {
        Ok(id) => id,
        Err(e) => {
            worker::console_error!("audit id: {:?}", e.internal);
            return;
        }
    };
    let row = AuditRow {
        id: id.to_string(),
        workspace_id: note.workspace_id,
        actor_id: note.actor_id,
        action: action.to_owned(),
        target_type: note.target.as_ref().map(|(t, _)| (*t).to_owned()),
        target_id: note.target.map(|(_, id)| id),
        outcome: AuditOutcome::of_status(status).as_str().to_owned(),
        status: i64::from(status),
        error_code,
        ip: ctx.ip.clone(),
        user_agent: ctx.user_agent.clone(),
        request_id: request_id.to_owned(),
        created_at: ctx.now,
    };
    if let Err(e) = store::insert(&ctx.env, &row).await {
        worker::console_error!(
            "audit {request_id} {action}: {}",
            e.internal.as_deref().unwrap_or(&e.message)
        );
    }
}

/// Query of `GET /workspaces/{id}/audit`.
pub struct Query {
    pub action: Option<String>,
    pub actor: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

fn parse_time(name: &str, raw: Option<&str>) -> ApiResult<Option<i64>> {
    raw.map(|r| {
        OffsetDateTime::parse(r, &Rfc3339)
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
            .map_err(|_| {
                bad_query(
                    name,
                    format!("{r:?} must be an RFC 3339 time (2026-11-27T10:00:00Z)"),
                )
            })
    })
    .transpose()
}

fn to_api(r: &AuditRow) -> ApiResult<AuditEvent> {
    use super::parse_id;
    Ok(AuditEvent {
        id: parse_id(&r.id, "id")?,
        workspace_id: r
            .workspace_id
            .as_deref()
            .map(|w| parse_id(w, "workspace_id"))
            .transpose()?,
        actor_id: r.actor_id.as_deref().and_then(|a| a.parse().ok()),
        action: r.action.clone(),
        target_type: r.target_type.clone(),
        target_id: r.target_id.clone(),
        outcome: match r.outcome.as_str() {
            "success" => AuditOutcome::Success,
            "denied" => AuditOutcome::Denied,
            _ => AuditOutcome::Failed,
        },
        status: u16::try_from(r.status).unwrap_or(0),
        error_code: r.error_code.clone(),
        ip: r.ip.clone(),
        user_agent: r.user_agent.clone(),
        request_id: r.request_id.clone(),
        created_at: timestamp(r.created_at),
    })
}

pub async fn list(ctx: &Ctx, m: &Membership, q: Query) -> ApiResult<Page<AuditEvent>> {
    m.allow(Action::ReadAudit)?;
    let limit = parse_limit(q.limit.as_deref())?;
    if let Some(a) = &q.actor {
        a.parse::<UserId>()
            .map_err(|e| bad_query("actor", e.to_string()))?;
    }
    if let Some(a) = &q.action {
        let ok = !a.is_empty()
            && a.len() <= 64
            && a.bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_' || b == b'*');
        if !ok {
            return Err(bad_query(
                "action",
                format!("{a:?} is not an action name (session.start, session.*)"),
            ));
        }
    }
    let filter = Filter {
        workspace_id: m.id(),
        action: q.action.as_deref(),
        actor_id: q.actor.as_deref(),
        since: parse_time("since", q.since.as_deref())?,
        until: parse_time("until", q.until.as_deref())?,
        after: q
            .cursor
            .as_deref()
            .map(decode_keyset::<AuditId>)
            .transpose()?,
        limit: limit + 1,
    };
    let mut rows = store::list(&ctx.env, &filter).await?;
    let next_cursor = cut_page(&mut rows, limit, |r| encode_keyset(r.created_at, &r.id));
    let items = rows.iter().map(to_api).collect::<ApiResult<Vec<_>>>()?;
    Ok(Page { items, next_cursor })
}
