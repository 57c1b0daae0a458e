//! `lifeline-sim`: the simulator as a program, for the offline demo and manual testing.
//! Sessions connect to `ws://LISTEN/s/<name>`; faults are injected over a small HTTP API.

use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{Query, State};
use axum::routing::{get, post};
use clap::Parser;
use lifeline_sim::{Fault, Sim};
use serde::Deserialize;

#[derive(Debug, Parser)]
#[command(
    name = "lifeline-sim",
    version,
    about = "Fault-injecting WebSocket server for Lifeline"
)]
struct Args {
    /// WebSocket address (loopback).
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: String,
    /// Control API address (loopback).
    #[arg(long, default_value = "127.0.0.1:9001")]
    control: String,
}

#[derive(Debug, Deserialize)]
struct Target {
    path: Option<String>,
    code: Option<u16>,
    f: Option<f64>,
    secs: Option<u64>,
    ms: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let sim = Sim::start(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let app = Router::new()
        .route("/stats", get(stats))
        .route("/drop", post(drop))
        .route("/drop-fraction", post(drop_fraction))
        .route("/stall", post(stall))
        .route("/close", post(close))
        .route("/refuse", post(refuse))
        .route("/delay", post(delay))
        .with_state(sim.clone());
    let control = tokio::net::TcpListener::bind(&args.control)
        .await
        .with_context(|| format!("cannot listen on {}", args.control))?;
    println!(
        "lifeline-sim: sessions at ws://{}/s/<name>; control at http://{} \
         (POST /drop?path=, /drop-fraction?f=, /stall?path=, /close?path=&code=, /refuse?secs=, /delay?ms=; GET /stats)",
        sim.addr(),
        control.local_addr()?
    );
    axum::serve(control, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    sim.shutdown();
    Ok(())
}

async fn stats(State(sim): State<Sim>) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "paths": sim.all_stats(), "refused": sim.refused() }))
}

async fn drop(State(sim): State<Sim>, Query(t): Query<Target>) -> &'static str {
    sim.inject(Fault::Drop { path: t.path });
    "ok\n"
}

async fn drop_fraction(State(sim): State<Sim>, Query(t): Query<Target>) -> &'static str {
    sim.inject(Fault::DropFraction(t.f.unwrap_or(0.5).clamp(0.0, 1.0)));
    "ok\n"
}

async fn stall(State(sim): State<Sim>, Query(t): Query<Target>) -> &'static str {
    sim.inject(Fault::Stall { path: t.path });
    "ok\n"
}

async fn close(State(sim): State<Sim>, Query(t): Query<Target>) -> &'static str {
    sim.inject(Fault::Close {
        path: t.path,
        code: t.code.unwrap_or(1011),
    });
    "ok\n"
}

async fn refuse(State(sim): State<Sim>, Query(t): Query<Target>) -> &'static str {
    sim.refuse_for(Duration::from_secs(t.secs.unwrap_or(30)));
    "ok\n"
}

async fn delay(State(sim): State<Sim>, Query(t): Query<Target>) -> &'static str {
    sim.set_handshake_delay(Duration::from_millis(t.ms.unwrap_or(0)));
    "ok\n"
}
