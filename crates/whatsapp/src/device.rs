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

/// The first bytes of every SQLite database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// A consistent copy of a device store, as one SQLite file's bytes, taken while its client may
/// be writing: `VACUUM INTO` copies one read transaction's view, WAL included. This is what a
/// fleet seals into its store so that another instance can resume the number.
pub fn snapshot(db: &Path) -> std::io::Result<Vec<u8>> {
    use rusqlite::OpenFlags;
    let parent = db.parent().unwrap_or(Path::new("."));
    // A private folder beside the store (0700), removed with what is in it.
    let scratch = tempfile::Builder::new()
        .prefix(".snapshot-")
        .tempdir_in(parent)?;
    let out = scratch.path().join("device.db");
    let sql = |e: rusqlite::Error| std::io::Error::other(format!("device store snapshot: {e}"));
    let conn = rusqlite::Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(sql)?;
    let target = out
        .to_str()
        .ok_or_else(|| std::io::Error::other("the data dir path is not UTF-8"))?;
    conn.execute("VACUUM INTO ?1", [target]).map_err(sql)?;
    drop(conn);
    std::fs::read(&out)
}

/// Puts a snapshot in place as an account's device store, before its client starts. The bytes
/// are written to a private file beside the store, synced, and renamed over it; the old store's
/// WAL companions are removed first, so they are never replayed into the new one. A crash leaves
/// the old store or the new one, never a mix. Bytes that are not a SQLite database are refused.
pub fn restore(db: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    if !bytes.starts_with(SQLITE_MAGIC) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a device store (no SQLite header)",
        ));
    }
    prepare(db)?;
    let parent = db.parent().unwrap_or(Path::new("."));
    // tempfile creates it 0600.
    let mut file = tempfile::Builder::new()
        .prefix(".restore-")
        .tempfile_in(parent)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    for companion in &companions(db)[1..] {
        match std::fs::remove_file(companion) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    file.persist(db).map_err(|e| e.error)?;
    restrict(db)
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
    fn a_snapshot_taken_under_writes_restores_as_the_same_store() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let db = path(tmp.path(), AccountId(3));
        prepare(&db).expect("prepare");
        let conn = rusqlite::Connection::open(&db).expect("open");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        conn.execute_batch(
            "CREATE TABLE identity (k TEXT PRIMARY KEY, v BLOB);
             INSERT INTO identity VALUES ('noise', x'0102'), ('registration', x'03');",
        )
        .expect("fill");
        // Still open, its last writes only in the WAL: the snapshot has them all the same.
        let bytes = snapshot(&db).expect("snapshot");
        assert!(bytes.starts_with(SQLITE_MAGIC));
        let leftovers: Vec<_> = std::fs::read_dir(dir(tmp.path()))
            .expect("list")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(".snapshot-"))
            .collect();
        assert!(leftovers.is_empty(), "the scratch copy is removed");

        let elsewhere = tempfile::tempdir().expect("tempdir");
        let other = path(elsewhere.path(), AccountId(3));
        // A stale WAL of a previous store there must not be replayed into the restored one.
        prepare(&other).expect("prepare");
        std::fs::write(companions(&other)[1].clone(), b"stale wal").expect("wal");
        restore(&other, &bytes).expect("restore");
        #[cfg(unix)]
        assert_eq!(mode(&other), 0o600);
        assert!(!companions(&other)[1].exists());
        let back = rusqlite::Connection::open(&other).expect("open");
        let rows: Vec<(String, Vec<u8>)> = back
            .prepare("SELECT k, v FROM identity ORDER BY k")
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(
            rows,
            vec![
                ("noise".to_owned(), vec![1, 2]),
                ("registration".to_owned(), vec![3])
            ]
        );
        let e = restore(&other, b"not a database").expect_err("refused");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
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
