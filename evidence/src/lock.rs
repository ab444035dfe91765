//! One writer per evidence directory: an exclusive advisory lock (`flock`) on a file inside it,
//! held for the writer's lifetime and released by the kernel when the process exits, however
//! it exits. Two agents sealing into one data directory fork the chain and lose what the
//! first held in memory; two collectors on one store race on its state. The lock file holds
//! the owner's pid, so the refusal can say who holds it.

use std::{
    fs::{File, OpenOptions, TryLockError},
    io::Write as _,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

/// Lock errors.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error(
        "{} is in use by {} (it holds {}): only one writer may use it; stop that process or \
         give this one another directory",
        .dir.display(),
        .pid.map_or_else(|| "another process".to_owned(), |p| format!("pid {p}")),
        .path.display()
    )]
    InUse {
        /// The locked directory.
        dir: PathBuf,
        /// The lock file.
        path: PathBuf,
        /// The holder's pid, as it wrote it (in its own pid namespace).
        pid: Option<u32>,
    },
    /// The lock file could not be opened, locked or written.
    #[error("lock file {}: {source}", .path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A held lock; dropping it (or exiting) releases it.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Takes the lock file `name` in `dir` without waiting, and records this process's pid in it.
    pub fn acquire(dir: &Path, name: &str) -> Result<DirLock, LockError> {
        let path = dir.join(name);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let pid = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| t.trim().parse().ok());
                return Err(LockError::InUse {
                    dir: dir.to_owned(),
                    path,
                    pid,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0)
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(io)?;
        Ok(DirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_holders_pid_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path(), "x.lock").unwrap();
        let err = DirLock::acquire(dir.path(), "x.lock").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("in use by pid {}", std::process::id())),
            "{text}"
        );
        drop(first);
        DirLock::acquire(dir.path(), "x.lock").expect("free again after drop");
    }
}
