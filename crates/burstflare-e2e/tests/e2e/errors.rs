//! The JSON error envelope for routing and body errors.

use anyhow::{Context, Result, ensure};
use burstflare_api::identity::CreateWorkspaceRequest;
use burstflare_api::routes::{ROUTES, Scope};
use burstflare_api::templates::CreateTemplateRequest;
use burstflare_api::{ErrorCode, MAX_JSON_BODY_BYTES};
use burstflare_e2e::Stack;

use crate::support::{expect_envelope, fill_path};

pub async fn unknown_route_and_wrong_method(stack: &Stack) -> Result<()> {
    let http = stack.http();
    for path in [
        "/api/v1/nope",
        "/api/v1",
        "/api/v2/health",
        "/api/v1/me/extra",
    ] {
        let resp = http.get(format!("{}{path}", stack.url)).send().await?;
        let err = expect_envelope(resp, 404, ErrorCode::RouteNotFound).await?;
        ensure!(err.details["path"] == path, "{path}: {:?}", err.details);
    }
    let resp = http.get(stack.api("/auth/register")).send().await?;
    ensure!(resp.headers().get("allow").and_then(|v| v.to_str().ok()) == Some("POST"));
    let err = expect_envelope(resp, 405, ErrorCode::MethodNotAllowed).await?;
    ensure!(err.details["allowed"] == serde_json::json!(["POST"]));
    // The envelope, exactly (request ids vary).
    let resp = http.post(stack.api("/health")).send().await?;
    let body: serde_json::Value = resp.json().await?;
    insta::assert_json_snapshot!(body, { ".error.request_id" => "[request-id]" }, @r###"
    {
      "error": {
        "code": "method_not_allowed",
        "details": {
          "allowed": [
            "GET"
          ]
        },
        "message": "POST is not allowed on /api/v1/health; use GET",
        "request_id": "[request-id]"
      }
    }
    "###);
    let resp = http.put(stack.api("/auth/tokens")).send().await?;
    ensure!(resp.headers().get("allow").and_then(|v| v.to_str().ok()) == Some("GET, POST"));
    expect_envelope(resp, 405, ErrorCode::MethodNotAllowed).await?;
    let resp = http.delete(stack.api("/health")).send().await?;
    expect_envelope(resp, 405, ErrorCode::MethodNotAllowed).await?;
    Ok(())
}

pub async fn malformed_and_unsupported_bodies(stack: &Stack) -> Result<()> {
    let http = stack.http();
    let url = stack.api("/auth/register");
    let json = |body: &'static str| {
        http.post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for body in [
        "{",
        "not json",
        "{\"email\": 1, \"display_name\": \"x\"}",
        "null",
        "",
    ] {
        let err = expect_envelope(json(body).await?, 400, ErrorCode::MalformedJson).await?;
        ensure!(!err.message.is_empty(), "{body:?}");
    }
    let resp = http
        .post(&url)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await?;
    expect_envelope(resp, 415, ErrorCode::UnsupportedMediaType).await?;
    let resp = http.post(&url).body("{}").send().await?;
    expect_envelope(resp, 415, ErrorCode::UnsupportedMediaType).await?;
    // Authenticated routes authenticate before reading the body.
    let resp = http
        .post(stack.api("/auth/tokens"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await?;
    expect_envelope(resp, 401, ErrorCode::Unauthenticated).await?;
    let (reg, _) = stack.register("bodies").await?;
    let resp = http
        .post(stack.api("/auth/tokens"))
        .bearer_auth(
            &reg.credentials
                .as_ref()
                .context("tokens")?
                .access_token
                .token,
        )
        .header("content-type", "application/json; charset=utf-8")
        .body("{\"name\": ")
        .send()
        .await?;
    expect_envelope(resp, 400, ErrorCode::MalformedJson).await?;
    Ok(())
}

pub async fn oversized_bodies_are_413(stack: &Stack) -> Result<()> {
    let http = stack.http();
    let url = stack.api("/auth/register");
    let padding = "x".repeat(MAX_JSON_BODY_BYTES + 1);
    let big = format!("{{\"email\":\"big@example.test\",\"display_name\":\"{padding}\"}}");
    // Declared length over the limit.
    let resp = http
        .post(&url)
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await?;
    let err = expect_envelope(resp, 413, ErrorCode::PayloadTooLarge).await?;
    ensure!(err.details["limit_bytes"] == MAX_JSON_BODY_BYTES);
    // No declared length (chunked): the limit is enforced while streaming.
    let chunks: Vec<Result<String, std::io::Error>> = big
        .as_bytes()
        .chunks(8192)
        .map(|c| Ok(String::from_utf8_lossy(c).into_owned()))
        .collect();
    let stream = futures_util::stream::iter(chunks);
    let resp = http
        .post(&url)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await?;
    expect_envelope(resp, 413, ErrorCode::PayloadTooLarge).await?;
    // Nothing was created by either request.
    let resp = http
        .post(&url)
        .json(&serde_json::json!({"email": "big@example.test", "display_name": "Small"}))
        .send()
        .await?;
    ensure!(
        resp.status() == 201,
        "the email is still free: {}",
        resp.status()
    );
    Ok(())
}

pub async fn every_response_has_a_request_id(stack: &Stack) -> Result<()> {
    let http = stack.http();
    let mut ids = Vec::new();
    for path in ["/health", "/nope", "/me"] {
        let resp = http.get(stack.api(path)).send().await?;
        let id = resp
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        ensure!(
            id.starts_with("req_") && id.len() == 28,
            "{path}: request id {id:?}"
        );
        ids.push(id);
    }
    ids.dedup();
    ensure!(ids.len() == 3, "request ids are unique: {ids:?}");
    Ok(())
}

/// Every route in the catalogue: unauthenticated calls, unknown tokens and
/// refresh tokens used as bearer tokens are 401 (except the public routes),
/// and every JSON-taking route rejects malformed, mistyped, mislabelled and
/// oversized bodies with the envelope.
pub async fn every_route_rejects_unauthenticated_and_bad_bodies(stack: &Stack) -> Result<()> {
    let http = stack.http();
    let (reg, client) = stack.register("every-route").await?;
    let creds = reg.credentials.clone().context("registration tokens")?;
    let token = creds.access_token.token.clone();
    let team = client
        .create_workspace(&CreateWorkspaceRequest {
            name: "Every route".into(),
        })
        .await?;
    let template = client
        .create_template(&CreateTemplateRequest {
            name: "every-route".into(),
            workspace_id: Some(team.id.clone()),
            description: None,
        })
        .await?;
    // Session routes with a body check access first: a real session.
    let session = client
        .create_session(&burstflare_api::sessions::CreateSessionRequest {
            name: "every-route".into(),
            ..Default::default()
        })
        .await?;
    let big = format!("{{\"name\":\"{}\"}}", "x".repeat(MAX_JSON_BODY_BYTES));
    for spec in ROUTES {
        let path = fill_path(
            spec.path,
            &[
                ("workspace_id", team.id.as_str()),
                ("user_id", reg.user.id.as_str()),
                ("template_id", template.id.as_str()),
                ("session_id", session.id.as_str()),
            ],
        );
        let method = reqwest::Method::from_bytes(spec.method.as_bytes())?;
        let url = stack.api(&path);
        let what = format!("{} {path}", spec.method);
        if spec.scope != Scope::Public {
            let resp = http.request(method.clone(), &url).send().await?;
            expect_envelope(resp, 401, ErrorCode::Unauthenticated)
                .await
                .context(what.clone())?;
            for bad in ["bf_pat_nope", creds.refresh_token.as_str()] {
                let resp = http
                    .request(method.clone(), &url)
                    .bearer_auth(bad)
                    .send()
                    .await?;
                expect_envelope(resp, 401, ErrorCode::InvalidToken)
                    .await
                    .context(what.clone())?;
            }
        }
        if !spec.body {
            continue;
        }
        let call = |body: String, content_type: &'static str| {
            http.request(method.clone(), &url)
                .bearer_auth(&token)
                .header("content-type", content_type)
                .body(body)
                .send()
        };
        for (body, content_type, status, code) in [
            (
                "{\"oops\"".to_owned(),
                "application/json",
                400,
                ErrorCode::MalformedJson,
            ),
            (
                "[1, 2]".to_owned(),
                "application/json",
                400,
                ErrorCode::MalformedJson,
            ),
            (
                "{}".to_owned(),
                "text/plain",
                415,
                ErrorCode::UnsupportedMediaType,
            ),
            (
                big.clone(),
                "application/json",
                413,
                ErrorCode::PayloadTooLarge,
            ),
        ] {
            expect_envelope(call(body, content_type).await?, status, code)
                .await
                .context(what.clone())?;
        }
    }
    Ok(())
}
