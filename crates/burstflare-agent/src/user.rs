//! Who terminals run as.
//!
//! In a session container the agent is root and terminals run the login
//! user's login shell through `runuser -l <user>` (a PAM login session with
//! the user's groups, environment and home directory). When the agent is not
//! root (tests, local runs) or the login user is root itself, the shell runs
//! directly as the agent's own user with a login environment built here.

use std::path::{Path, PathBuf};

use nix::unistd::{Uid, User, geteuid};

/// `runuser` of util-linux (Debian: `/usr/sbin/runuser`).
pub const RUNUSER: &str = "/usr/sbin/runuser";
const FALLBACK_SHELL: &str = "/bin/bash";

/// How the shell is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShellMode {
    /// `runuser -l <user>`: the agent is root, the user is not.
    Runuser,
    /// `<shell> -l` as the agent's own user.
    Direct,
}

/// The resolved login user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginTarget {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub shell: PathBuf,
    pub mode: ShellMode,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("login user {0:?} does not exist")]
    NoSuchUser(String),
    #[error("the agent's own uid {0} has no password database entry")]
    NoSuchUid(u32),
    #[error("cannot read the password database: {0}")]
    Lookup(#[from] nix::Error),
}

/// Whether the agent runs as root.
pub fn is_root() -> bool {
    geteuid().is_root()
}

/// Resolves the login user: `configured` when the agent is root, the agent's
/// own user otherwise. `shell_override` replaces the user's shell (direct mode).
pub fn resolve(configured: &str, shell_override: Option<&Path>) -> Result<LoginTarget, UserError> {
    let euid = geteuid();
    let user = if euid.is_root() {
        User::from_name(configured)?.ok_or_else(|| UserError::NoSuchUser(configured.into()))?
    } else {
        let me = User::from_uid(euid)?.ok_or(UserError::NoSuchUid(euid.as_raw()))?;
        if me.name != configured {
            tracing::info!(
                configured,
                user = %me.name,
                "the agent is not root: terminals run as its own user"
            );
        }
        me
    };
    let mode = if euid.is_root() && user.uid != Uid::from_raw(0) {
        ShellMode::Runuser
    } else {
        ShellMode::Direct
    };
    let shell = shell_override
        .map(Path::to_path_buf)
        .or_else(|| Some(user.shell.clone()).filter(|s| s.is_absolute() && s.exists()))
        .unwrap_or_else(|| PathBuf::from(FALLBACK_SHELL));
    Ok(LoginTarget {
        name: user.name,
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        home: user.dir,
        shell,
        mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_the_current_user() {
        let me = User::from_uid(geteuid()).unwrap().unwrap();
        let t = resolve(&me.name, Some(Path::new("/bin/sh"))).unwrap();
        assert_eq!(t.name, me.name);
        assert_eq!(t.uid, geteuid().as_raw());
        assert_eq!(t.shell, PathBuf::from("/bin/sh"));
        assert_eq!(t.mode, ShellMode::Direct);
    }

    #[test]
    fn unknown_user_as_root_is_an_error() {
        if !is_root() {
            return;
        }
        let err = resolve("no-such-user-bf", None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "login user \"no-such-user-bf\" does not exist"
        );
    }
}
