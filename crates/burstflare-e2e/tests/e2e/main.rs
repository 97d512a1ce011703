//! The end-to-end suite: one binary that boots the stack once, runs every
//! test against it (in parallel; tests isolate themselves by registering
//! their own users) and tears the stack down, also when tests fail.
//!
//! Tests that restart the shared stack's runner run next, one at a time.
//!
//! Tests that need a stack of their own (the schema drift test) run first,
//! alone: a second `wrangler dev` on the machine makes the first one's local
//! queue broker lose delayed retries, so the two never overlap.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a broken precondition aborts the test"
)]

mod access;
mod accounts;
mod browser;
mod builds;
mod cli;
mod errors;
mod identity;
mod persistence;
mod platform;
mod sessions;
mod support;
mod templates;

use std::sync::Arc;

use burstflare_e2e::{Stack, Tools};
use libtest_mimic::{Arguments, Failed, Trial};

type TestFn = for<'a> fn(&'a Stack) -> support::TestFuture<'a>;
type IsolatedFn = for<'a> fn(&'a Tools) -> support::TestFuture<'a>;

macro_rules! tests {
    ($($module:ident :: $name:ident),* $(,)?) => {
        vec![$( (concat!(stringify!($module), "::", stringify!($name)), (|s| Box::pin($module::$name(s))) as TestFn) ),*]
    };
}

fn main() {
    let args = Arguments::from_args();
    let all: Vec<(&str, TestFn)> = tests![
        platform::health_reports_every_binding_and_schema,
        platform::probe_exercises_r2_do_queues_and_workflow,
        platform::rejected_queue_message_lands_in_dead_letter_queue,
        platform::cron_trigger_runs_reconcile_sweep,
        platform::static_assets_are_served,
        accounts::register_creates_user_workspace_and_token,
        accounts::register_rejects_bad_and_duplicate_input,
        accounts::missing_invalid_revoked_and_expired_tokens_are_401,
        accounts::personal_tokens_create_list_paginate_revoke,
        accounts::tokens_are_isolated_between_users,
        errors::unknown_route_and_wrong_method,
        errors::malformed_and_unsupported_bodies,
        errors::oversized_bodies_are_413,
        errors::every_response_has_a_request_id,
        errors::every_route_rejects_unauthenticated_and_bad_bodies,
        cli::cli_register_whoami_tokens_and_status,
        cli::cli_errors_and_exit_codes,
        cli::cli_workspaces_invites_roles_and_audit,
        cli::cli_templates_builds_and_releases,
        identity::refresh_rotates_and_reuse_revokes_the_family,
        identity::sessions_list_revoke_logout_and_logout_all,
        identity::recovery_codes_are_one_time_and_regenerate,
        identity::passkeys_register_sign_in_and_reject_tampering,
        identity::browser_cookie_and_csrf,
        identity::device_authorization_api_rules,
        identity::cli_login_logout_and_sessions,
        identity::workspaces_roles_invites_and_rules,
        templates::templates_versions_bundles_and_lifecycle,
        builds::apt_build_promote_boot_and_rollback,
        builds::failing_setup_retries_dead_letters_and_bulk_retries,
        identity::route_table_membership_handlers_and_audit,
        platform::wrangler_deploy_dry_run_staging_and_production,
        sessions::ssh_exec_config_ssh_and_host_key_pinning,
        sessions::scp_rsync_and_port_forwarding,
        sessions::stop_start_restart_delete,
        sessions::concurrent_commands_converge,
        sessions::killed_container_fails_the_session,
        sessions::sessions_are_private_and_inputs_are_checked,
        sessions::ssh_keys_add_list_remove_and_reject_bad_keys,
        sessions::agent_restarts_sshd_when_it_dies,
        persistence::persisted_paths_survive_sleep_stop_and_restart,
        persistence::snapshots_are_incremental_restorable_and_shared,
        persistence::concurrent_wakes_start_one_container,
        persistence::idle_sessions_sleep_by_themselves,
        persistence::uploads_downloads_and_malicious_snapshots,
        persistence::platform_sigterm_takes_a_final_snapshot,
        persistence::deletes_racing_new_snapshots_keep_shared_blobs,
        persistence::failed_snapshots_keep_the_session_awake,
        access::terminal_reattaches_and_wakes_the_session,
        access::previews_proxy_http_and_websockets_to_declared_ports,
        browser::the_web_app_end_to_end_in_chromium,
        browser::workspaces_keys_templates_and_audit_in_chromium,
    ];
    // Run one at a time on the shared stack before the others: they restart its runner.
    let serial: Vec<(&str, TestFn)> = tests![
        sessions::runner_restart_keeps_sessions_reachable,
        sessions::docker_down_fails_the_session_with_the_reason,
    ];
    let isolated: Vec<(&str, IsolatedFn)> = vec![
        ("platform::schema_drift_is_reported", |t| {
            Box::pin(platform::schema_drift_is_reported(t))
        }),
        (
            "accounts::registration_requires_a_valid_turnstile_token",
            |t| Box::pin(accounts::registration_requires_a_valid_turnstile_token(t)),
        ),
        ("builds::stuck_builds_are_redispatched", |t| {
            Box::pin(builds::stuck_builds_are_redispatched(t))
        }),
        ("builds::replayed_steps_and_command_timeouts", |t| {
            Box::pin(builds::replayed_steps_and_command_timeouts(t))
        }),
        (
            "persistence::sleeping_sessions_expire_with_their_retention",
            |t| {
                Box::pin(persistence::sleeping_sessions_expire_with_their_retention(
                    t,
                ))
            },
        ),
        ("identity::expiry_and_rate_limits", |t| {
            Box::pin(identity::expiry_and_rate_limits(t))
        }),
    ];
    let wanted = |name: &str| {
        let filtered = args.filter.as_deref().is_none_or(|f| {
            if args.exact {
                name == f
            } else {
                name.contains(f)
            }
        });
        filtered && !args.skip.iter().any(|s| name.contains(s.as_str()))
    };
    if args.list {
        let names = isolated
            .iter()
            .map(|(n, _)| *n)
            .chain(serial.iter().map(|(n, _)| *n))
            .chain(all.iter().map(|(n, _)| *n));
        libtest_mimic::run(&args, names.map(|n| Trial::test(n, || Ok(()))).collect()).exit();
    }
    let run_isolated = isolated.iter().any(|(n, _)| wanted(n));
    let run_shared = all.iter().chain(&serial).any(|(n, _)| wanted(n));
    if !run_isolated && !run_shared {
        libtest_mimic::run(&args, vec![]).exit();
    }

    let tools = Tools::discover().expect("tools");
    let runtime = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
    );
    let mut failed = false;
    if run_isolated {
        let trials = isolated
            .into_iter()
            .map(|(name, f)| {
                let tools = tools.clone();
                let runtime = runtime.clone();
                Trial::test(name, move || {
                    runtime
                        .block_on(f(&tools))
                        .map_err(|e| Failed::from(format!("{e:#}")))
                })
            })
            .collect();
        let mut one_at_a_time = args.clone();
        one_at_a_time.test_threads = Some(1);
        failed |= libtest_mimic::run(&one_at_a_time, trials).has_failed();
    }
    if !run_shared {
        std::process::exit(i32::from(failed) * 101);
    }

    eprintln!("e2e: starting wrangler dev…");
    let stack = Arc::new(Stack::start(&tools, true).expect("stack starts"));
    eprintln!("e2e: stack up at {}", stack.url);
    let trials = |tests: Vec<(&'static str, TestFn)>| -> Vec<Trial> {
        tests
            .into_iter()
            .map(|(name, f)| {
                let stack = stack.clone();
                let runtime = runtime.clone();
                Trial::test(name, move || {
                    runtime.block_on(f(&stack)).map_err(|e| {
                        Failed::from(format!(
                            "{e:#}\n--- wrangler log tail ---\n{}\n--- runner log tail ---\n{}",
                            stack.log_tail(40),
                            stack
                                .runner
                                .lock()
                                .map(|r| r.log_tail(20))
                                .unwrap_or_default()
                        ))
                    })
                })
            })
            .collect()
    };
    let mut serial_args = args.clone();
    serial_args.test_threads = Some(1);
    failed |= libtest_mimic::run(&serial_args, trials(serial)).has_failed();
    let conclusion = libtest_mimic::run(&args, trials(all));
    // Tear down before exiting: `exit` skips destructors.
    drop(runtime);
    match Arc::try_unwrap(stack) {
        Ok(stack) => drop(stack),
        Err(_) => eprintln!("e2e: stack still referenced at exit"),
    }
    failed |= conclusion.has_failed();
    std::process::exit(i32::from(failed) * 101);
}
