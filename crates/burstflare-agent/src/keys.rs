//! SSH key material on disk: the container's host keys and the login user's
//! `authorized_keys`.
//!
//! Host keys are generated at first boot with `ssh-keygen` (never shipped in
//! the image, so two sessions never share one). The image's sshd drop-in names
//! the ed25519 key, so that is the type generated. A key is written under a
//! temporary name and renamed into place, so a crash never leaves half a key.
//!
//! `authorized_keys` is replaced atomically (write a sibling, fsync, rename)
//! with mode 0600 inside a 0700 `.ssh` directory owned by the user, which is
//! what sshd's `StrictModes` demands. A symlinked `.ssh` is refused: the agent
//! runs as root and must not be steered into writing elsewhere.

use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::config::PRIVATE_ENV;

/// Host key types the agent makes sure exist.
pub const HOST_KEY_TYPES: [&str; 1] = ["ed25519"];

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{program} failed ({status}): {stderr}")]
    Keygen {
        program: PathBuf,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("{0}: is a symlink; refusing to write through it")]
    Symlink(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The private key path of a host key type in `dir`.
pub fn host_key_path(dir: &Path, key_type: &str) -> PathBuf {
    dir.join(format!("ssh_host_{key_type}_key"))
}

fn pub_path(private: &Path) -> PathBuf {
    let mut s = private.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

fn keygen(program: &Path, args: &[&std::ffi::OsStr]) -> Result<Vec<u8>, KeyError> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in PRIVATE_ENV {
        cmd.env_remove(var);
    }
    let out = cmd.output().map_err(io_err(program))?;
    if !out.status.success() {
        return Err(KeyError::Keygen {
            program: program.to_path_buf(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out.stdout)
}

/// Makes sure every [`HOST_KEY_TYPES`] key and its `.pub` exist in `dir`.
/// Returns the keys it generated.
pub fn ensure_host_keys(keygen_program: &Path, dir: &Path) -> Result<Vec<PathBuf>, KeyError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut generated = Vec::new();
    for key_type in HOST_KEY_TYPES {
        let private = host_key_path(dir, key_type);
        let public = pub_path(&private);
        if private.exists() {
            if !public.exists() {
                // Derive the missing public half from the private key.
                let line = keygen(
                    keygen_program,
                    &["-y".as_ref(), "-f".as_ref(), private.as_os_str()],
                )?;
                write_atomically(&public, &line, 0o644, None)?;
            }
            continue;
        }
        let tmp = dir.join(format!(".ssh_host_{key_type}_key.tmp"));
        let tmp_pub = pub_path(&tmp);
        for stale in [&tmp, &tmp_pub] {
            match fs::remove_file(stale) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(stale)(e)),
            }
        }
        keygen(
            keygen_program,
            &[
                "-q".as_ref(),
                "-t".as_ref(),
                key_type.as_ref(),
                "-N".as_ref(),
                "".as_ref(),
                "-C".as_ref(),
                "".as_ref(),
                "-f".as_ref(),
                tmp.as_os_str(),
            ],
        )?;
        fs::rename(&tmp_pub, &public).map_err(io_err(&public))?;
        fs::rename(&tmp, &private).map_err(io_err(&private))?;
        generated.push(private);
    }
    Ok(generated)
}

/// Private host keys in `dir` that have a public half (`ssh_host_*_key`), sorted.
pub fn host_key_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut keys: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ssh_host_") && n.ends_with("_key"))
                && pub_path(p).is_file()
        })
        .collect();
    keys.sort();
    keys
}

/// The public host keys (`ssh-ed25519 AAAA…`), trimmed, in file-name order.
pub fn host_public_keys(dir: &Path) -> Vec<String> {
    host_key_files(dir)
        .iter()
        .filter_map(|p| fs::read_to_string(pub_path(p)).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Replaces `path` with `data` atomically: a sibling temporary file with
/// `mode`, fsynced, chowned to `owner` when given, then renamed over `path`.
pub fn write_atomically(
    path: &Path,
    data: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<(), KeyError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_err(&tmp))?;
        f.write_all(data).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid)).map_err(io_err(&tmp))?;
        }
        fs::rename(&tmp, path).map_err(io_err(path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Installs `keys` as the complete content of `path` (see the module docs).
/// `owner` is the user's (uid, gid) and is applied when the agent is root.
pub fn install_authorized_keys(
    path: &Path,
    keys: &[String],
    owner: Option<(u32, u32)>,
) -> Result<(), KeyError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    match fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => return Err(KeyError::Symlink(dir.to_path_buf())),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        Err(e) => return Err(io_err(dir)(e)),
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::lchown(dir, Some(uid), Some(gid)).map_err(io_err(dir))?;
    }
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        // rename() replaces the link itself, never its target; say so in the log.
        tracing::warn!(path = %path.display(), "replacing a symlinked authorized_keys");
    }
    let mut content = keys.join("\n");
    if !content.is_empty() {
        content.push('\n');
    }
    write_atomically(path, content.as_bytes(), 0o600, owner)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().mode() & 0o777
    }

    #[test]
    fn authorized_keys_replace_content_with_strict_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("home/.ssh/authorized_keys");
        let keys = vec![
            "ssh-ed25519 AAAA1 a@b".to_owned(),
            "ssh-rsa AAAA2".to_owned(),
        ];
        install_authorized_keys(&path, &keys, None).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "ssh-ed25519 AAAA1 a@b\nssh-rsa AAAA2\n"
        );
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);

        fs::set_permissions(path.parent().unwrap(), fs::Permissions::from_mode(0o755)).unwrap();
        install_authorized_keys(&path, &[], None).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "");
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn symlinked_ssh_dir_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("elsewhere"), tmp.path().join(".ssh")).unwrap();
        let err = install_authorized_keys(&tmp.path().join(".ssh/authorized_keys"), &[], None)
            .unwrap_err();
        assert!(matches!(err, KeyError::Symlink(_)), "{err}");
    }

    #[test]
    fn host_public_keys_need_both_halves() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        fs::write(d.join("ssh_host_ed25519_key"), "private").unwrap();
        fs::write(d.join("ssh_host_ed25519_key.pub"), "ssh-ed25519 AAAAx \n").unwrap();
        fs::write(d.join("ssh_host_rsa_key.pub"), "ssh-rsa AAAAorphan\n").unwrap();
        fs::write(d.join("ssh_config"), "x").unwrap();
        assert_eq!(host_public_keys(d), vec!["ssh-ed25519 AAAAx"]);
        assert_eq!(host_key_files(d), vec![d.join("ssh_host_ed25519_key")]);
    }

    #[test]
    fn generates_host_keys_once() {
        // The real ssh-keygen (Debian: openssh-client).
        let keygen = Path::new(crate::config::DEFAULT_SSH_KEYGEN);
        let tmp = tempfile::tempdir().unwrap();
        let generated = ensure_host_keys(keygen, tmp.path()).unwrap();
        assert_eq!(generated, vec![tmp.path().join("ssh_host_ed25519_key")]);
        let keys = host_public_keys(tmp.path());
        assert_eq!(keys.len(), 1);
        assert!(keys[0].starts_with("ssh-ed25519 AAAA"), "{keys:?}");
        assert_eq!(mode(&tmp.path().join("ssh_host_ed25519_key")), 0o600);
        // A second boot keeps the keys; a lost public half is derived again.
        assert!(ensure_host_keys(keygen, tmp.path()).unwrap().is_empty());
        fs::remove_file(tmp.path().join("ssh_host_ed25519_key.pub")).unwrap();
        ensure_host_keys(keygen, tmp.path()).unwrap();
        assert_eq!(host_public_keys(tmp.path()), keys);
    }
}
