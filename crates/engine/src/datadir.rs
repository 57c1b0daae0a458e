//! Where Lifeline keeps its files, and the lock that allows one supervising process per data dir.
//! Two supervisors on one dir would each open a socket per account — exactly the duplicate
//! sessions that get numbers banned — so the second one is refused with a clear message.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub const DB_FILE: &str = "lifeline.db";
const LOCK_FILE: &str = "supervisor.lock";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The explicit dir if given (from `--data-dir` or `LIFELINE_DATA_DIR`), else the platform
    /// data dir (`~/.local/share/lifeline` on Linux). Creates it (mode 0700) if missing.
    pub fn resolve(explicit: Option<PathBuf>) -> Result<Self> {
        let root = match explicit {
            Some(p) => p,
            None => dirs::data_dir().ok_or(Error::NoDataDir)?.join("lifeline"),
        };
        create_private_dir(&root).map_err(|source| Error::DataDir {
            path: root.clone(),
            source,
        })?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn db_path(&self) -> PathBuf {
        self.root.join(DB_FILE)
    }

    fn lock_path(&self) -> PathBuf {
        self.root.join(LOCK_FILE)
    }

    /// Takes the supervisor lock, held until the returned guard is dropped (or the process dies:
    /// the OS releases it, so a crash never leaves a stale lock behind).
    pub fn lock(&self) -> Result<SupervisorLock> {
        let path = self.lock_path();
        let io_err = |source| Error::DataDir {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(Error::DataDirLocked {
                    path: self.root.clone(),
                    pid: read_pid(&mut file),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_err(e)),
        }
        file.set_len(0).map_err(io_err)?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes())
            .map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
        Ok(SupervisorLock { _file: file })
    }

    /// The pid of the process supervising this dir, if one is running.
    pub fn supervisor(&self) -> Option<u32> {
        let mut file = File::open(self.lock_path()).ok()?;
        match file.try_lock_shared() {
            Ok(()) => None,
            Err(TryLockError::WouldBlock) => read_pid(&mut file).or(Some(0)),
            Err(TryLockError::Error(_)) => None,
        }
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut s = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

fn create_private_dir(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

/// Proof that this process is the one supervisor of its data dir.
#[derive(Debug)]
pub struct SupervisorLock {
    _file: File,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_supervisor_is_refused_and_names_the_first() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = DataDir::resolve(Some(tmp.path().join("d"))).expect("dir");
        assert_eq!(dir.supervisor(), None);
        let first = dir.lock().expect("first lock");
        let err = dir.lock().expect_err("second lock must fail");
        match &err {
            Error::DataDirLocked { pid, .. } => assert_eq!(*pid, Some(std::process::id())),
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("already supervising"));
        assert_eq!(dir.supervisor(), Some(std::process::id()));
        drop(first);
        assert_eq!(dir.supervisor(), None);
        dir.lock().expect("lock is free again after release");
    }

    #[test]
    fn unusable_data_dir_is_a_clear_error() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("file");
        std::fs::write(&file, b"x").expect("write");
        let err = DataDir::resolve(Some(file.join("sub"))).expect_err("must fail");
        assert!(matches!(err, Error::DataDir { .. }), "{err:?}");
    }
}
