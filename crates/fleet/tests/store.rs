//! The fleet store and the lease rules against a real PostgreSQL (a throwaway cluster per test).

mod pg;

use std::time::Duration;

use lifeline_fleet::{Error, FleetStore, Lease, StoreUrl};
use pg::{Cluster, PASSWORD};

const TTL: Duration = Duration::from_secs(15);

async fn open(cluster: &Cluster, name: &str) -> FleetStore {
    let url = cluster.database(name);
    FleetStore::connect_with(&url, Some(PASSWORD), 4)
        .await
        .expect("connect")
}

fn one_line(e: &Error) -> String {
    let text = e.to_string();
    assert!(!text.contains('\n'), "one line: {text}");
    assert!(!text.contains(PASSWORD), "no password in: {text}");
    text
}

#[test]
fn urls_are_checked_and_never_carry_a_password() {
    assert!(matches!(
        StoreUrl::parse("postgres://ops:hunter2@db.example/lifeline"),
        Err(Error::PasswordInUrl)
    ));
    for bad in [
        "mysql://db/x",
        "postgres:///x",
        "postgres://db.example/",
        "not a url",
    ] {
        let e = StoreUrl::parse(bad).expect_err(bad);
        assert!(matches!(e, Error::BadUrl(_)), "{bad}: {e}");
        one_line(&e);
    }
    let url = StoreUrl::parse("postgresql://ops@db.example:6432/fleet").expect("valid");
    assert_eq!(url.target(), "db.example:6432");
    assert_eq!(url.database(), "fleet");
    assert_eq!(url.user(), "ops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_stores_are_refused_with_one_line_and_nothing_written() {
    let Some(cluster) = Cluster::start() else {
        return;
    };

    // Nothing listens on that port.
    let closed = StoreUrl::parse(&format!(
        "postgres://postgres@127.0.0.1:{}/x",
        pg::free_port()
    ))
    .expect("url");
    let e = FleetStore::connect(&closed, Some(PASSWORD))
        .await
        .expect_err("unreachable");
    assert!(matches!(e, Error::Unreachable { .. }), "{e}");
    one_line(&e);

    // Wrong password, and none at all.
    let url = cluster.database("fleet");
    for password in [Some("wrong"), None] {
        let e = FleetStore::connect(&url, password)
            .await
            .expect_err("refused");
        assert!(matches!(e, Error::Auth { .. }), "{e}");
        assert!(one_line(&e).contains("postgres"), "{e}");
    }
    assert_eq!(
        cluster.psql(
            "fleet",
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ),
        "0"
    );

    // No such database.
    let e = FleetStore::connect(&cluster.url("nowhere"), Some(PASSWORD))
        .await
        .expect_err("no database");
    assert!(matches!(e, Error::NoDatabase { .. }), "{e}");
    assert!(one_line(&e).contains("createdb nowhere"), "{e}");

    // Another program's database: refused, and still exactly as it was.
    cluster.database("shop");
    cluster.psql(
        "shop",
        "CREATE TABLE orders (id int); INSERT INTO orders VALUES (1)",
    );
    let e = FleetStore::connect(&cluster.url("shop"), Some(PASSWORD))
        .await
        .expect_err("another program's");
    assert!(matches!(e, Error::NotLifeline { .. }), "{e}");
    one_line(&e);
    assert_eq!(
        cluster.psql(
            "shop",
            "SELECT string_agg(tablename, ',') FROM pg_tables WHERE schemaname = 'public'"
        ),
        "orders"
    );

    // A store set up by a newer Lifeline.
    let store = FleetStore::connect(&url, Some(PASSWORD))
        .await
        .expect("a fresh store");
    store.close().await;
    cluster.psql(
        "fleet",
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (99, 'from the future', true, '\\x00', 0)",
    );
    let before = cluster.psql("fleet", "SELECT count(*) FROM fleet_instances");
    let e = FleetStore::connect(&url, Some(PASSWORD))
        .await
        .expect_err("too new");
    assert!(matches!(e, Error::TooNew { version: 99, .. }), "{e}");
    one_line(&e);
    assert_eq!(
        cluster.psql("fleet", "SELECT count(*) FROM fleet_instances"),
        before
    );

    // Two instances setting up one empty store at once both succeed.
    let url = cluster.database("together");
    let (a, b) = tokio::join!(
        FleetStore::connect(&url, Some(PASSWORD)),
        FleetStore::connect(&url, Some(PASSWORD))
    );
    a.expect("first");
    b.expect("second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_rules_follow_the_database_clock() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let store = open(&cluster, "fleet").await;
    store.add_accounts(&[1, 2]).await.expect("accounts");
    let a = store.register(None).await.expect("a");
    let b = store.register(None).await.expect("b");
    cluster.psql(
        "fleet",
        "CREATE TABLE notes (account_id int8, epoch int8, body text)",
    );

    // Free: A wins epoch 1. Held: B cannot. A again: a renewal, same epoch.
    let won = a.acquire(1, TTL).await.expect("acquire").expect("free");
    assert_eq!(
        won.lease,
        Lease {
            account: 1,
            epoch: 1
        }
    );
    assert!(!won.takeover);
    assert_eq!(b.acquire(1, TTL).await.expect("acquire"), None);
    let again = a.acquire(1, TTL).await.expect("acquire").expect("own");
    assert_eq!(again.lease.epoch, 1);
    assert_eq!(
        store.holder(1).await.expect("holder"),
        Some((a.id().as_str().to_owned(), 1))
    );

    // 14 s later on the database's clock it still holds; at 16 s it has expired.
    let at14 = store.with_clock_offset(14.0);
    assert_eq!(
        b.through(&at14).acquire(1, TTL).await.expect("acquire"),
        None
    );
    let at16 = store.with_clock_offset(16.0);
    let (a16, b16) = (a.through(&at16), b.through(&at16));
    assert_eq!(at16.holder(1).await.expect("holder"), None);
    // The console's list: A's holding at 14 s, nobody's at 16 s.
    let listed = at14.holders().await.expect("holders");
    assert_eq!(
        listed
            .iter()
            .map(|h| (h.account_id, h.instance.as_str(), h.epoch))
            .collect::<Vec<_>>(),
        vec![(1, a.id().as_str(), 1)]
    );
    assert_eq!(listed[0].pid, std::process::id() as i32);
    assert!(at16.holders().await.expect("holders").is_empty());
    // Expired: A's renewal updates nothing, so A has lost it and must stop.
    assert_eq!(
        a16.renew(&[won.lease], TTL).await.expect("renew"),
        Vec::<i64>::new()
    );
    let taken = b16
        .acquire(1, TTL)
        .await
        .expect("acquire")
        .expect("expired");
    assert_eq!(
        taken.lease,
        Lease {
            account: 1,
            epoch: 2
        }
    );
    assert!(taken.takeover, "the lease had another owner");

    // A's writes under epoch 1 are refused; B's under epoch 2 go through.
    let e = a16.begin_fenced(won.lease).await.expect_err("stale");
    assert!(
        matches!(
            e,
            Error::Stale {
                account: 1,
                epoch: 1
            }
        ),
        "{e}"
    );
    one_line(&e);
    let mut tx = b16.begin_fenced(taken.lease).await.expect("current");
    sqlx::query("INSERT INTO notes VALUES (1, 2, 'from b')")
        .execute(&mut *tx)
        .await
        .expect("write");
    tx.commit().await.expect("commit");
    assert_eq!(
        cluster.psql("fleet", "SELECT string_agg(body, ',') FROM notes"),
        "from b"
    );

    // B renews; released, A claims it back under epoch 3 (not a takeover: nobody held it).
    assert_eq!(
        b16.renew(&[taken.lease], TTL).await.expect("renew"),
        vec![1]
    );
    assert_eq!(b16.release(&[1]).await.expect("release"), 1);
    let claimed = a16.claim(10, TTL).await.expect("claim");
    let mut leases: Vec<Lease> = claimed.iter().map(|c| c.lease).collect();
    leases.sort();
    assert_eq!(
        leases,
        vec![
            Lease {
                account: 1,
                epoch: 3
            },
            Lease {
                account: 2,
                epoch: 1
            }
        ]
    );
    assert!(claimed.iter().all(|c| !c.takeover), "{claimed:?}");
    // B's epoch-2 lease is stale now, renewal included.
    assert!(
        b16.renew(&[taken.lease], TTL)
            .await
            .expect("renew")
            .is_empty()
    );
    assert!(b16.begin_fenced(taken.lease).await.is_err());

    // The counters reach the registry with the heartbeat.
    a16.heartbeat().await.expect("heartbeat");
    b16.heartbeat().await.expect("heartbeat");
    let totals = at16.totals(TTL).await.expect("totals");
    assert_eq!(totals.accounts, 2);
    assert_eq!(totals.leases_held, 2);
    assert_eq!(totals.takeovers, 1);
    assert_eq!(totals.stale_writes_refused, 2);
    let rows = at16.instances(TTL).await.expect("instances");
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|r| r.alive && r.pid == std::process::id() as i32)
    );
    // Instances that stop heartbeating drop out of the live count after a TTL.
    let later = store.with_clock_offset(40.0);
    assert_eq!(later.totals(TTL).await.expect("totals").live_instances, 0);

    // A week later, an instance that starts drops the silent ones holding nothing from the
    // registry; one that still names an owner of a lease stays.
    let week = store.with_clock_offset(8.0 * 24.0 * 3600.0);
    assert!(a16.release(&[1, 2]).await.expect("release") >= 1);
    let c = week.register(None).await.expect("c");
    let ids: Vec<String> = week
        .instances(TTL)
        .await
        .expect("instances")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, vec![c.id().as_str().to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_write_in_progress_holds_off_a_change_of_owner() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let store = open(&cluster, "fleet").await;
    store.add_accounts(&[7]).await.expect("accounts");
    let a = store.register(None).await.expect("a");
    let b = store.register(None).await.expect("b");
    let lease = a
        .acquire(7, TTL)
        .await
        .expect("acquire")
        .expect("free")
        .lease;
    let tx = a.begin_fenced(lease).await.expect("fenced");
    // The lease expires while A's transaction is open: B's claim skips the locked row rather
    // than taking the account from under a write that already passed its check.
    let b_later = b.through(&store.with_clock_offset(20.0));
    assert!(b_later.claim(10, TTL).await.expect("claim").is_empty());
    tx.commit().await.expect("commit");
    let claimed = b_later.claim(10, TTL).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].lease.epoch, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_claiming_together_split_the_accounts_without_overlap() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let store = open(&cluster, "fleet").await;
    let ids: Vec<i64> = (1..=300).collect();
    assert_eq!(store.add_accounts(&ids).await.expect("accounts"), 300);
    assert_eq!(store.add_accounts(&ids).await.expect("again"), 0);
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(store.register(None).await.expect("register"));
    }
    let claims = futures_join(&instances).await;
    let mut all: Vec<i64> = claims.iter().flatten().map(|c| c.lease.account).collect();
    assert!(
        claims.iter().all(|c| c.len() == 100),
        "{:?}",
        claims.iter().map(Vec::len).collect::<Vec<_>>()
    );
    all.sort_unstable();
    all.dedup();
    assert_eq!(all, ids, "every account claimed exactly once");
}

async fn futures_join(instances: &[lifeline_fleet::Instance]) -> Vec<Vec<lifeline_fleet::Claimed>> {
    let tasks: Vec<_> = instances
        .iter()
        .map(|i| {
            let i = i.clone();
            tokio::spawn(async move { i.claim(100, TTL).await.expect("claim") })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_stores_are_sealed_fenced_and_open_only_with_the_fleet_key() {
    use lifeline_fleet::FleetKey;
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let store = open(&cluster, "fleet").await;
    store.add_accounts(&[3]).await.expect("accounts");
    let key = FleetKey::generate().expect("key");
    store
        .check_key(&key)
        .await
        .expect("the first key sets the fingerprint");
    store.check_key(&key).await.expect("the same key again");
    let other = FleetKey::generate().expect("key");
    let e = store.check_key(&other).await.expect_err("another key");
    assert!(matches!(e, Error::WrongKey { .. }), "{e}");
    assert!(one_line(&e).contains(&other.fingerprint()), "{e}");

    let a = store.register(None).await.expect("a");
    let b = store.register(None).await.expect("b");
    let lease = a
        .acquire(3, TTL)
        .await
        .expect("acquire")
        .expect("free")
        .lease;
    let device = b"SQLite format 3\0 noise key, identity key, registration id".to_vec();
    a.put_device_store(lease, &key, &device)
        .await
        .expect("stored");
    assert_eq!(
        store.device_store(3, &key).await.expect("read"),
        Some(device.clone())
    );
    assert_eq!(store.device_store(4, &key).await.expect("read"), None);
    // A dump shows neither the keys nor the fleet key.
    let dump = cluster.psql(
        "fleet",
        "SELECT encode(sealed, 'escape') FROM device_stores",
    );
    assert!(!dump.contains("identity key"), "{dump}");
    assert!(store.device_store(3, &other).await.is_err());

    // Taken over: the old owner can no longer overwrite the keys the new owner resumes from.
    let later = store.with_clock_offset(20.0);
    let taken = b
        .through(&later)
        .acquire(3, TTL)
        .await
        .expect("acquire")
        .expect("expired")
        .lease;
    let e = a
        .through(&later)
        .put_device_store(lease, &key, b"stale")
        .await
        .expect_err("stale");
    assert!(matches!(e, Error::Stale { .. }), "{e}");
    assert_eq!(
        later.device_store(3, &key).await.expect("read"),
        Some(device)
    );
    b.through(&later)
        .put_device_store(taken, &key, b"newer")
        .await
        .expect("the new owner writes");
    assert_eq!(
        later.device_store(3, &key).await.expect("read").as_deref(),
        Some(&b"newer"[..])
    );
}
