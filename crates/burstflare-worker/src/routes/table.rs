//! The route table: a pure function from (method, path) to a [`Route`].
//!
//! Kept free of runtime types so that it is unit-tested natively. A path that
//! exists for other methods yields [`RouteMatch::MethodNotAllowed`] with the
//! methods it does allow.

/// Every `/api/v1` route, with its path parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Health,
    Register,
    Me,
    ListTokens,
    CreateToken,
    RevokeToken {
        token_id: String,
    },
    CreateProbe,
    GetProbe {
        probe_id: String,
    },
    ListSessions,
    CreateSession,
    GetSession {
        session_id: String,
    },
    DeleteSession {
        session_id: String,
    },
    SessionCommand {
        session_id: String,
        command: burstflare_domain::SessionCommand,
    },
    SessionEvents {
        session_id: String,
    },
    SessionSsh {
        session_id: String,
    },
    ListSshKeys,
    AddSshKey,
    RemoveSshKey {
        key_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMatch {
    Found(Route),
    MethodNotAllowed(Vec<&'static str>),
    NotFound,
}

/// Matches a request against the table. `path` is the full URL path.
pub fn match_route(method: &str, path: &str) -> RouteMatch {
    let Some(rest) = path.strip_prefix(burstflare_api::API_PREFIX) else {
        return RouteMatch::NotFound;
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let segments: Vec<&str> = rest.split('/').skip(1).collect();
    if rest.is_empty() || segments.iter().any(|s| s.is_empty()) {
        return RouteMatch::NotFound;
    }
    // Each arm lists the (method, route) pairs served at one path shape.
    let candidates: Vec<(&'static str, Route)> = match segments.as_slice() {
        ["health"] => vec![("GET", Route::Health)],
        ["auth", "register"] => vec![("POST", Route::Register)],
        ["me"] => vec![("GET", Route::Me)],
        ["auth", "tokens"] => vec![("GET", Route::ListTokens), ("POST", Route::CreateToken)],
        ["auth", "tokens", id] => {
            vec![(
                "DELETE",
                Route::RevokeToken {
                    token_id: (*id).to_owned(),
                },
            )]
        }
        ["diagnostics", "probes"] => vec![("POST", Route::CreateProbe)],
        ["diagnostics", "probes", id] => {
            vec![(
                "GET",
                Route::GetProbe {
                    probe_id: (*id).to_owned(),
                },
            )]
        }
        ["sessions"] => vec![("GET", Route::ListSessions), ("POST", Route::CreateSession)],
        ["sessions", id] => {
            let session_id = (*id).to_owned();
            vec![
                (
                    "GET",
                    Route::GetSession {
                        session_id: session_id.clone(),
                    },
                ),
                ("DELETE", Route::DeleteSession { session_id }),
            ]
        }
        ["sessions", id, verb @ ("start" | "stop" | "restart")] => {
            use burstflare_domain::SessionCommand as C;
            let command = match *verb {
                "start" => C::Start,
                "stop" => C::Stop,
                _ => C::Restart,
            };
            vec![(
                "POST",
                Route::SessionCommand {
                    session_id: (*id).to_owned(),
                    command,
                },
            )]
        }
        ["sessions", id, "events"] => {
            vec![(
                "GET",
                Route::SessionEvents {
                    session_id: (*id).to_owned(),
                },
            )]
        }
        ["sessions", id, "ssh"] => {
            vec![(
                "GET",
                Route::SessionSsh {
                    session_id: (*id).to_owned(),
                },
            )]
        }
        ["ssh-keys"] => vec![("GET", Route::ListSshKeys), ("POST", Route::AddSshKey)],
        ["ssh-keys", id] => vec![(
            "DELETE",
            Route::RemoveSshKey {
                key_id: (*id).to_owned(),
            },
        )],
        _ => return RouteMatch::NotFound,
    };
    let method = if method == "HEAD" { "GET" } else { method };
    let allowed: Vec<&'static str> = candidates.iter().map(|(m, _)| *m).collect();
    match candidates.into_iter().find(|(m, _)| *m == method) {
        Some((_, route)) => RouteMatch::Found(route),
        None => RouteMatch::MethodNotAllowed(allowed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_routes_and_params() {
        assert_eq!(
            match_route("GET", "/api/v1/health"),
            RouteMatch::Found(Route::Health)
        );
        assert_eq!(
            match_route("GET", "/api/v1/health/"),
            RouteMatch::Found(Route::Health)
        );
        assert_eq!(
            match_route("HEAD", "/api/v1/me"),
            RouteMatch::Found(Route::Me)
        );
        assert_eq!(
            match_route("DELETE", "/api/v1/auth/tokens/tok_1"),
            RouteMatch::Found(Route::RevokeToken {
                token_id: "tok_1".into()
            })
        );
    }

    #[test]
    fn session_routes() {
        use burstflare_domain::SessionCommand as C;
        assert_eq!(
            match_route("POST", "/api/v1/sessions/ses_1/restart"),
            RouteMatch::Found(Route::SessionCommand {
                session_id: "ses_1".into(),
                command: C::Restart
            })
        );
        assert_eq!(
            match_route("DELETE", "/api/v1/sessions/ses_1"),
            RouteMatch::Found(Route::DeleteSession {
                session_id: "ses_1".into()
            })
        );
        assert_eq!(
            match_route("GET", "/api/v1/sessions/ses_1/start"),
            RouteMatch::MethodNotAllowed(vec!["POST"])
        );
        assert_eq!(
            match_route("POST", "/api/v1/sessions/ses_1/pause"),
            RouteMatch::NotFound
        );
        assert_eq!(
            match_route("PUT", "/api/v1/ssh-keys"),
            RouteMatch::MethodNotAllowed(vec!["GET", "POST"])
        );
    }

    #[test]
    fn method_not_allowed_lists_methods() {
        assert_eq!(
            match_route("PUT", "/api/v1/auth/tokens"),
            RouteMatch::MethodNotAllowed(vec!["GET", "POST"])
        );
        assert_eq!(
            match_route("GET", "/api/v1/auth/register"),
            RouteMatch::MethodNotAllowed(vec!["POST"])
        );
    }

    #[test]
    fn unknown_paths() {
        for p in [
            "/",
            "/api/v1",
            "/api/v1/",
            "/api/v2/health",
            "/api/v1/nope",
            "/api/v1//health",
            "/api/v1/me/x",
        ] {
            assert_eq!(match_route("GET", p), RouteMatch::NotFound, "{p}");
        }
    }
}
