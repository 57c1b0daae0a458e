//! `lifeline-sim`: the simulator as a program, for the offline demo and manual testing.
//! Sessions connect to `ws://LISTEN/s/<name>`; faults are injected over a small HTTP API.
//! With `--tiktok ADDR` it also plays TikTok (point `LIFELINE_TIKTOK_URL` at it) and takes
//! commands for the creators' lives on the same control API.

use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{Query, State};
use axum::routing::{get, post};
use clap::Parser;
use lifeline_sim::tiktok::{FakeTikTok, Limit, LiveEvent};
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
    /// Also serve a fake TikTok here (its live feeds on the next port).
    #[arg(long, value_name = "ADDR")]
    tiktok: Option<std::net::SocketAddr>,
}

#[derive(Debug, Deserialize)]
struct Live {
    #[serde(default)]
    user: String,
    /// viewers | likes | comment | gift | follow
    event: Option<String>,
    n: Option<i64>,
    /// off | 429 | captcha
    mode: Option<String>,
    on: Option<bool>,
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
    let app = match args.tiktok {
        None => app,
        Some(addr) => {
            let feeds = std::net::SocketAddr::new(addr.ip(), addr.port().wrapping_add(1));
            let fake = FakeTikTok::start_on(&addr.to_string(), &feeds.to_string())
                .await
                .with_context(|| format!("cannot serve the fake TikTok on {addr} and {feeds}"))?;
            println!(
                "lifeline-sim: TikTok at {} (LIFELINE_TIKTOK_URL); POST /tiktok/live?user=, \
                 /tiktok/end?user=, /tiktok/send?user=&event=viewers|likes|comment|gift|follow&n=, \
                 /tiktok/limit?mode=off|429|captcha, /tiktok/block?on=true|false",
                fake.url()
            );
            app.merge(
                Router::new()
                    .route("/tiktok/live", post(tiktok_live))
                    .route("/tiktok/end", post(tiktok_end))
                    .route("/tiktok/send", post(tiktok_send))
                    .route("/tiktok/limit", post(tiktok_limit))
                    .route("/tiktok/block", post(tiktok_block))
                    .with_state(fake),
            )
        }
    };
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

async fn tiktok_live(State(fake): State<FakeTikTok>, Query(q): Query<Live>) -> String {
    format!("room {}\n", fake.go_live(&q.user))
}

async fn tiktok_end(State(fake): State<FakeTikTok>, Query(q): Query<Live>) -> &'static str {
    fake.end_live(&q.user);
    "ended\n"
}

async fn tiktok_send(
    State(fake): State<FakeTikTok>,
    Query(q): Query<Live>,
) -> (axum::http::StatusCode, &'static str) {
    use axum::http::StatusCode;
    let n = q.n.unwrap_or(1);
    let event = match q.event.as_deref() {
        Some("viewers") => LiveEvent::Viewers(n),
        Some("likes") => LiveEvent::Likes { count: n, total: 0 },
        Some("comment") => LiveEvent::Comment("halo".into()),
        Some("gift") => LiveEvent::Gift {
            repeat_count: n,
            streak: n > 1,
        },
        Some("follow") => LiveEvent::Follow,
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                "event: viewers|likes|comment|gift|follow\n",
            );
        }
    };
    if fake.send(&q.user, event) {
        (StatusCode::OK, "sent\n")
    } else {
        (
            StatusCode::CONFLICT,
            "no feed of a live of this user is open\n",
        )
    }
}

async fn tiktok_limit(
    State(fake): State<FakeTikTok>,
    Query(q): Query<Live>,
) -> (axum::http::StatusCode, &'static str) {
    let mode = match q.mode.as_deref() {
        Some("off") => Limit::Off,
        Some("429") => Limit::Http429,
        Some("captcha") => Limit::Captcha,
        _ => {
            return (
                axum::http::StatusCode::BAD_REQUEST,
                "mode: off|429|captcha\n",
            );
        }
    };
    fake.set_limit(mode);
    (axum::http::StatusCode::OK, "ok\n")
}

async fn tiktok_block(State(fake): State<FakeTikTok>, Query(q): Query<Live>) -> &'static str {
    fake.block_devices(q.on.unwrap_or(true));
    "ok\n"
}
