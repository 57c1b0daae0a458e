//! One device store (whatsapp-rust's SQLite file) per account under the data dir, private to the
//! operator (0600). Keeping it means a restart reconnects with no new scan; deleting it (logout,
//! account removed) means the keys are really gone — whatsapp-rust's own logout does not wipe them.

use std::path::{Path, PathBuf};

use lifeline_engine::model::AccountId;

/// Where the device stores live: `DATA_DIR/whatsapp/`.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("whatsapp")
}

/// The device store of one account.
pub fn path(data_dir: &Path, account: AccountId) -> PathBuf {
    dir(data_dir).join(format!("account-{}.db", account.0))
}

/// SQLite's companions of a database file (WAL mode).
fn companions(db: &Path) -> [PathBuf; 3] {
    let s = db.as_os_str().to_owned();
    let with = |suffix: &str| {
        let mut p = s.clone();
        p.push(suffix);
        PathBuf::from(p)
    };
    [db.to_owned(), with("-wal"), with("-shm")]
}

/// Creates the folder (0700) and an empty store file (0600) if missing, so SQLite never creates
/// it with looser permissions; tightens an existing one.
pub fn prepare(db: &Path) -> std::io::Result<()> {
    if let Some(parent) = db.parent() {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(0o700);
        }
        b.create(parent)?;
    }
    let mut o = std::fs::OpenOptions::new();
    o.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(db)?;
    restrict(db)
}

/// Sets 0600 on the store and whichever companions exist.
pub fn restrict(db: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    for p in companions(db) {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Deletes the store and its companions; true if anything was there.
pub fn wipe(db: &Path) -> std::io::Result<bool> {
    let mut any = false;
    for p in companions(db) {
        match std::fs::remove_file(&p) {
            Ok(()) => any = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(any)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).expect("meta").permissions().mode() & 0o777
    }

    #[test]
    fn store_is_private_and_wipe_removes_every_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let db = path(tmp.path(), AccountId(7));
        assert!(db.ends_with("whatsapp/account-7.db"));
        prepare(&db).expect("prepare");
        #[cfg(unix)]
        {
            assert_eq!(mode(&db), 0o600);
            assert_eq!(mode(&dir(tmp.path())), 0o700);
        }
        // SQLite's companions appear beside it in WAL mode.
        for p in &companions(&db)[1..] {
            std::fs::write(p, b"x").expect("write");
        }
        restrict(&db).expect("restrict");
        #[cfg(unix)]
        for p in companions(&db) {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
        assert!(wipe(&db).expect("wipe"));
        assert!(companions(&db).iter().all(|p| !p.exists()));
        assert!(!wipe(&db).expect("second wipe"), "nothing left to wipe");
    }

    #[test]
    fn prepare_keeps_existing_keys() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let db = path(tmp.path(), AccountId(1));
        prepare(&db).expect("prepare");
        std::fs::write(&db, b"keys").expect("write");
        prepare(&db).expect("again");
        assert_eq!(std::fs::read(&db).expect("read"), b"keys");
    }
}
