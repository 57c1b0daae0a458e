//! The tests' PostgreSQL: one throwaway cluster per test ([`lifeline_fleet::cluster::for_test`]),
//! with helpers that fail the test on any error.

#![allow(dead_code)]

use lifeline_fleet::StoreUrl;
pub use lifeline_fleet::cluster::PASSWORD;

pub struct Cluster(lifeline_fleet::cluster::Cluster);

impl Cluster {
    /// Starts a cluster, or returns `None` (the test skips) when PostgreSQL is not installed.
    pub fn start() -> Option<Self> {
        lifeline_fleet::cluster::for_test().map(Self)
    }

    pub fn port(&self) -> u16 {
        self.0.port()
    }

    pub fn start_server(&self) {
        self.0.start_server().expect("PostgreSQL starts");
    }

    pub fn stop_server(&self) {
        self.0.stop_server().expect("PostgreSQL stops");
    }

    pub fn psql(&self, database: &str, sql: &str) -> String {
        self.0.psql(database, sql).expect("psql")
    }

    pub fn database(&self, name: &str) -> StoreUrl {
        self.0.database(name).expect("CREATE DATABASE")
    }

    pub fn url(&self, name: &str) -> StoreUrl {
        self.0.url(name)
    }
}

pub fn free_port() -> u16 {
    lifeline_fleet::cluster::free_port().expect("a free port")
}
