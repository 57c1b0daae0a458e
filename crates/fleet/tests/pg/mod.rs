//! A throwaway PostgreSQL cluster for one test: initdb in a temporary directory, a server on a
//! free 127.0.0.1 port, stopped and removed when dropped. initdb refuses to run as root, so as
//! root (CI) the cluster belongs to the `postgres` user that Debian's package creates.
//! Without PostgreSQL installed the tests are skipped, unless LIFELINE_REQUIRE_POSTGRES=1 (CI).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use lifeline_fleet::StoreUrl;

/// The superuser's password: TCP connections authenticate with scram-sha-256.
pub const PASSWORD: &str = "fleet-test-password";

pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

fn postgres_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Cluster {
    /// Starts a cluster, or returns `None` (the test skips) when PostgreSQL is not installed.
    pub fn start() -> Option<Self> {
        let Some(bin) = postgres_bin() else {
            assert!(
                std::env::var("LIFELINE_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "PostgreSQL is required (LIFELINE_REQUIRE_POSTGRES=1) but /usr/lib/postgresql/*/bin/initdb is missing"
            );
            eprintln!("skipped: PostgreSQL is not installed");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("lifeline-pg-")
            .tempdir()
            .expect("temp dir");
        let as_postgres = is_root();
        std::fs::write(dir.path().join("pw"), PASSWORD).expect("password file");
        let cluster = Self {
            dir,
            bin,
            port: free_port(),
            as_postgres,
        };
        if as_postgres {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(cluster.dir.path()));
        }
        run(cluster
            .command("initdb")
            .arg("-D")
            .arg(cluster.data())
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
                "--no-instructions",
            ])
            .arg(format!(
                "--pwfile={}",
                cluster.dir.path().join("pw").display()
            )));
        cluster.start_server();
        Some(cluster)
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts the server (again, after [`Cluster::stop`]).
    pub fn start_server(&self) {
        run(self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
                self.port,
                self.socket_dir().display()
            ))
            .args(["-w", "start"]));
    }

    /// Stops the server at once, as a crash would (committed rows survive: they are in the WAL).
    pub fn stop_server(&self) {
        run(self.command("pg_ctl").arg("-D").arg(self.data()).args([
            "-m",
            "immediate",
            "-w",
            "stop",
        ]));
    }

    /// Runs SQL as the superuser over the local socket (psql), returning its unaligned output.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let out = self
            .command("psql")
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                "postgres",
            ])
            .arg("-h")
            .arg(self.socket_dir())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-d")
            .arg(database)
            .arg("-c")
            .arg(sql)
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Creates a database and returns its URL (no password in it).
    pub fn database(&self, name: &str) -> StoreUrl {
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(name)
    }

    pub fn url(&self, name: &str) -> StoreUrl {
        StoreUrl::parse(&format!(
            "postgres://postgres@127.0.0.1:{}/{name}",
            self.port
        ))
        .expect("a valid URL")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

fn run(command: &mut Command) {
    let out = command.output().expect("command runs");
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
