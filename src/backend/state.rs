//! kindred's state directory, made safe to write in: it may sit in a shared temp dir (`/tmp`,
//! when neither `XDG_STATE_HOME` nor `HOME` is set), where anyone can plant a file or a symbolic
//! link before kindred starts. kindred creates the directory with mode 0700 and refuses one that
//! is a symbolic link, is not the user's own, or that its group or others may write. Its files
//! are opened without following a symbolic link and replaced through a new file renamed into
//! place.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};

/// The state directory ([`super::state_dir`]), created if missing and checked.
pub fn ensure_state_dir() -> Result<PathBuf> {
    let dir = super::state_dir();
    ensure_dir(&dir)?;
    Ok(dir)
}

/// Create `dir` (mode 0700; its parents as the umask says) unless it exists, then [`check_dir`].
pub fn ensure_dir(dir: &Path) -> Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            anyhow!(
                "{}: cannot create kindred's state dir: {e} (set XDG_STATE_HOME to a writable directory)",
                dir.display()
            )
        })?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(anyhow!(
                "{}: cannot create kindred's state dir: {e} (set XDG_STATE_HOME to a writable directory)",
                dir.display()
            ));
        }
    }
    check_dir(dir)
}

/// `dir` is a real directory (not a symbolic link), owned by this user, not writable by its
/// group or others, and writable by kindred. Errors name the path and the fix.
pub fn check_dir(dir: &Path) -> Result<()> {
    let d = dir.display();
    let md = std::fs::symlink_metadata(dir)
        .map_err(|e| anyhow!("{d}: kindred's state dir cannot be read: {e}"))?;
    if md.file_type().is_symlink() {
        return Err(anyhow!(
            "{d}: kindred's state dir is a symbolic link; kindred never follows one there (remove it, or set XDG_STATE_HOME to a directory of your own)"
        ));
    }
    if !md.is_dir() {
        return Err(anyhow!(
            "{d}: kindred's state dir is not a directory (remove it, or set XDG_STATE_HOME elsewhere)"
        ));
    }
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    let me = unsafe { libc::geteuid() };
    if md.uid() != me {
        return Err(anyhow!(
            "{d}: kindred's state dir belongs to user {} (you are {me}): someone else made it (remove it, or set XDG_STATE_HOME to a directory of your own)",
            md.uid()
        ));
    }
    if md.mode() & 0o022 != 0 {
        return Err(anyhow!(
            "{d}: kindred's state dir may be written by {} (mode {:o}): chmod 700 {d}",
            if md.mode() & 0o002 != 0 {
                "anyone"
            } else {
                "its group"
            },
            md.permissions().mode() & 0o7777
        ));
    }
    if !writable(dir) {
        return Err(anyhow!(
            "{d}: kindred's state dir is not writable (read-only file system or permissions): make it writable, or set XDG_STATE_HOME to a writable directory"
        ));
    }
    Ok(())
}

fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path; access(2) only reads it.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// Open `path` as `opts` say, never through a symbolic link (`O_NOFOLLOW`): a link there is an
/// error naming the path.
pub fn open_nofollow(opts: &mut OpenOptions, path: &Path) -> Result<File> {
    opts.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| open_error(path, e))
}

/// An open error, in words: a symbolic link (ELOOP under `O_NOFOLLOW`) says so.
pub fn open_error(path: &Path, e: std::io::Error) -> anyhow::Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        anyhow!(
            "{}: is a symbolic link; kindred never follows one here (remove it)",
            path.display()
        )
    } else {
        anyhow!("{}: {e}", path.display())
    }
}

/// The text of the state file `path` (at most `max` bytes), `None` when there is none; never
/// read through a symbolic link.
pub fn read(path: &Path, max: u64) -> Result<Option<String>> {
    let f = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(open_error(path, e)),
    };
    let mut s = String::new();
    let n = f
        .take(max + 1)
        .read_to_string(&mut s)
        .map_err(|e| anyhow!("{}: cannot read: {e}", path.display()))?;
    if n as u64 > max {
        return Err(anyhow!(
            "{}: longer than {} KiB: not a file kindred wrote",
            path.display(),
            max >> 10
        ));
    }
    Ok(Some(s))
}

/// A new file next to `path`, created for this process alone (`O_EXCL`: never an existing file
/// or link), named `NAME.PID.N.SUFFIX`: (its path, the file).
pub fn create_beside(path: &Path, suffix: &str) -> Result<(PathBuf, File)> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{}: not a file name", path.display()))?;
    loop {
        let n = N.fetch_add(1, Ordering::Relaxed);
        let mut tmp_name = name.to_os_string();
        tmp_name.push(format!(".{}.{n}.{suffix}", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(anyhow!("{}: cannot create: {e}", tmp.display())),
        }
    }
}

/// Replace `path` with `bytes` at once: written to a new file beside it, renamed over it (a
/// symbolic link at `path` is replaced, never followed).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let (tmp, mut f) = create_beside(path, "tmp")?;
    let written = f.write_all(bytes).and_then(|_| f.sync_all());
    if let Err(e) = written.and_then(|_| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(anyhow!("{}: cannot write: {e}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_state_dir_is_made_private_and_a_shared_one_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("a/b/kindred");
        ensure_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        // One kindred made before with the usual umask is fine: nobody else may write it.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_dir(&dir).unwrap();
        for (m, who) in [(0o777, "anyone"), (0o775, "its group"), (0o1777, "anyone")] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(m)).unwrap();
            let e = ensure_dir(&dir).unwrap_err().to_string();
            assert!(
                e.contains(&dir.display().to_string())
                    && e.contains(who)
                    && e.contains("chmod 700"),
                "{e}"
            );
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        // A symbolic link to a directory of the user's own is refused all the same.
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let e = ensure_dir(&link).unwrap_err().to_string();
        assert!(e.contains("symbolic link") && e.contains("link"), "{e}");
        // A file where the dir should be.
        let file = t.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(
            ensure_dir(&file)
                .unwrap_err()
                .to_string()
                .contains("not a directory")
        );
    }

    /// Someone else's directory (made by another user in a shared /tmp) is refused: needs root
    /// to give it away.
    #[test]
    #[ignore = "needs root (chown)"]
    fn a_state_dir_of_another_user_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("kindred");
        std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
        let e = ensure_dir(&dir).unwrap_err().to_string();
        assert!(
            e.contains(&dir.display().to_string()) && e.contains("belongs to user 65534"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_or_read_only_state_dir_is_named() {
        let t = tempfile::tempdir().unwrap();
        let file = t.path().join("plain");
        std::fs::write(&file, "").unwrap();
        // Its parent is a file: it cannot be made.
        let dir = file.join("kindred");
        let e = ensure_dir(&dir).unwrap_err().to_string();
        assert!(
            e.contains(&dir.display().to_string()) && e.contains("XDG_STATE_HOME"),
            "{e}"
        );
    }

    /// A state dir on a read-only file system: named, with the fix. Needs root (mount).
    #[test]
    #[ignore = "needs root (mount)"]
    fn a_read_only_state_dir_is_named() {
        let t = tempfile::tempdir().unwrap();
        let mnt = t.path().join("ro");
        std::fs::create_dir(&mnt).unwrap();
        let mount = |args: &[&str]| {
            let st = std::process::Command::new("mount")
                .args(args)
                .status()
                .unwrap();
            assert!(st.success(), "mount {args:?}");
        };
        let m = mnt.to_str().unwrap();
        mount(&["-t", "tmpfs", "-o", "mode=0700", "tmpfs", m]);
        struct Unmount<'a>(&'a str);
        impl Drop for Unmount<'_> {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount").arg(self.0).status();
            }
        }
        let _u = Unmount(m);
        let dir = mnt.join("kindred");
        ensure_dir(&dir).unwrap();
        mount(&["-o", "remount,ro", m]);
        let e = ensure_dir(&dir).unwrap_err().to_string();
        assert!(
            e.contains(&dir.display().to_string()) && e.contains("not writable"),
            "{e}"
        );
        // Missing on a read-only file system: it cannot be made.
        let e = ensure_dir(&mnt.join("other")).unwrap_err().to_string();
        assert!(e.contains("other") && e.contains("cannot create"), "{e}");
    }

    #[test]
    fn state_files_are_never_opened_through_a_link() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let link = t.path().join("clusters.json");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let e = read(&link, 1 << 20).unwrap_err().to_string();
        assert!(
            e.contains("symbolic link") && e.contains("clusters.json"),
            "{e}"
        );
        let e = open_nofollow(OpenOptions::new().append(true).create(true), &link)
            .unwrap_err()
            .to_string();
        assert!(e.contains("symbolic link"), "{e}");
        // Replacing it replaces the link, not what it points at.
        write_atomic(&link, b"{}").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(std::fs::read_to_string(&link).unwrap(), "{}");
        assert!(!std::fs::symlink_metadata(&link).unwrap().is_symlink());
        // A planted link at a temp file's name is never written through either.
        for n in 0..256 {
            let planted = t
                .path()
                .join(format!("x.json.{}.{n}.tmp", std::process::id()));
            std::os::unix::fs::symlink(&victim, &planted).unwrap();
        }
        write_atomic(&t.path().join("x.json"), b"[]").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(read(&t.path().join("none"), 10).unwrap(), None);
        std::fs::write(t.path().join("big"), "x".repeat(2048)).unwrap();
        assert!(
            read(&t.path().join("big"), 1024)
                .unwrap_err()
                .to_string()
                .contains("longer than 1 KiB")
        );
    }
}
