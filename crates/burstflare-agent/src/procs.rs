//! Finding the processes of a terminal's session in `/proc`, so that hanging
//! up a terminal reaches every process the way a real hangup would, and
//! escalation spares the processes that asked to survive one (`nohup`); and
//! the processes of the editor's process group ([`crate::editor`]).

use std::fs;

/// Pids of the processes whose session id is `sid`, except zombies.
pub fn session_members(sid: i32) -> Vec<i32> {
    members(|stat| stat.session == sid)
}

/// Pids of the processes whose process group id is `pgid`, except zombies.
pub fn group_members(pgid: i32) -> Vec<i32> {
    members(|stat| stat.group == pgid)
}

fn members(matches: impl Fn(&Stat) -> bool) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| parse_stat(&stat))
                .is_some_and(|stat| stat.state != 'Z' && matches(&stat))
        })
        .collect()
}

/// The fields of `/proc/<pid>/stat` used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    state: char,
    group: i32,
    session: i32,
}

/// Parses the text of `/proc/<pid>/stat`. The command name may contain
/// spaces and parentheses, so fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<Stat> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _parent = fields.next()?;
    let group = fields.next()?.parse().ok()?;
    let session = fields.next()?.parse().ok()?;
    Some(Stat {
        state,
        group,
        session,
    })
}

/// Whether `pid` ignores SIGHUP (`SigIgn` in `/proc/<pid>/status`).
pub fn ignores_sighup(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let mask = status.lines().find_map(|l| l.strip_prefix("SigIgn:"))?;
            u64::from_str_radix(mask.trim(), 16).ok()
        })
        .is_some_and(|mask| mask & 1 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        assert_eq!(
            parse_stat("42 (a) b (c)) S 1 43 44 34816 42 4194560 0"),
            Some(Stat {
                state: 'S',
                group: 43,
                session: 44
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn finds_our_own_session() {
        let me = i32::try_from(std::process::id()).unwrap();
        let sid = nix::unistd::getsid(None).unwrap().as_raw();
        assert!(session_members(sid).contains(&me));
        let pgid = nix::unistd::getpgrp().as_raw();
        assert!(group_members(pgid).contains(&me));
    }

    #[test]
    fn sees_ignored_sighup() {
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "trap '' HUP; exec sleep 30"])
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !ignores_sighup(pid) {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
