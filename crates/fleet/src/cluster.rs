//! A throwaway PostgreSQL cluster on 127.0.0.1, for the fleet's tests and benchmarks: `initdb`
//! in a temporary directory, a server on a free port, stopped and removed when dropped. TCP
//! connections authenticate with a password (scram-sha-256), like a real fleet's.
//!
//! initdb refuses to run as root, so as root (CI) the cluster belongs to the `postgres` user
//! that Debian's package creates. It uses the newest `/usr/lib/postgresql/*/bin`.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::StoreUrl;

/// The superuser's password.
pub const PASSWORD: &str = "fleet-test-password";

#[derive(Debug)]
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

/// The newest installed PostgreSQL's programs, if any.
pub fn installed() -> Option<PathBuf> {
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
    /// Creates and starts a cluster with the programs in `bin` (see [`installed`]).
    pub fn start(bin: PathBuf) -> io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("lifeline-pg-").tempdir()?;
        std::fs::write(dir.path().join("pw"), PASSWORD)?;
        let mut cluster = Self {
            dir,
            bin,
            port: free_port()?,
            as_postgres: is_root(),
        };
        if cluster.as_postgres {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(cluster.dir.path()))?;
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
            )))?;
        // Another process may take the free port before the server binds it: then try another.
        let mut attempts = 0;
        loop {
            match cluster.start_server() {
                Ok(()) => return Ok(cluster),
                Err(e) if attempts >= 3 => return Err(e),
                Err(_) => {
                    attempts += 1;
                    cluster.port = free_port()?;
                }
            }
        }
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

    /// Starts the server (again, after [`Cluster::stop_server`]).
    pub fn start_server(&self) -> io::Result<()> {
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
            .args(["-w", "start"]))
        .map(drop)
    }

    /// Stops the server at once, as a crash would (committed rows survive: they are in the WAL).
    pub fn stop_server(&self) -> io::Result<()> {
        run(self.command("pg_ctl").arg("-D").arg(self.data()).args([
            "-m",
            "immediate",
            "-w",
            "stop",
        ]))
        .map(drop)
    }

    /// Runs SQL as the superuser over the local socket (psql); returns its unaligned output.
    pub fn psql(&self, database: &str, sql: &str) -> io::Result<String> {
        let out = run(self
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
            .arg(sql))?;
        Ok(out.trim().to_owned())
    }

    /// Creates a database and returns its URL (no password in it: that is [`PASSWORD`]).
    pub fn database(&self, name: &str) -> io::Result<StoreUrl> {
        self.psql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(self.url(name))
    }

    pub fn url(&self, name: &str) -> StoreUrl {
        StoreUrl::loopback(self.port, "postgres", name)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop_server();
    }
}

/// For tests: a started cluster, or `None` (the test skips, saying so) when PostgreSQL is not
/// installed. With `LIFELINE_REQUIRE_POSTGRES=1` (CI) a missing PostgreSQL fails the test
/// instead, and so does a cluster that does not start.
pub fn for_test() -> Option<Cluster> {
    let Some(bin) = installed() else {
        assert!(
            std::env::var("LIFELINE_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "PostgreSQL is required (LIFELINE_REQUIRE_POSTGRES=1) but /usr/lib/postgresql/*/bin/initdb is missing"
        );
        eprintln!("skipped: PostgreSQL is not installed");
        return None;
    };
    match Cluster::start(bin) {
        Ok(cluster) => Some(cluster),
        Err(e) => panic!("a throwaway PostgreSQL cluster: {e}"),
    }
}

/// Runs a command; its stdout, or an error with its stderr.
fn run(command: &mut Command) -> io::Result<String> {
    let out = command.output()?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(io::Error::other(format!(
            "{:?} failed: {}",
            command.get_program(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// A port nothing listens on at this moment.
pub fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
