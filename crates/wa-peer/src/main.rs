//! `lifeline-wa-peer`: the WhatsApp protocol peer as a program, for the offline demo. Point a
//! test-peer build of Lifeline at it (`LIFELINE_WHATSAPP_URL=ws://LISTEN/ws/chat`), then play the
//! phone and the service over a small HTTP API.

use anyhow::Context;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use clap::Parser;
use lifeline_wa_peer::{Config, Fault, Peer};
use serde::Deserialize;

#[derive(Debug, Parser)]
#[command(
    name = "lifeline-wa-peer",
    version,
    about = "Loopback WhatsApp protocol peer for Lifeline's tests and offline demo"
)]
struct Args {
    /// WebSocket address the client connects to (loopback).
    #[arg(long, default_value = "127.0.0.1:9100")]
    listen: String,
    /// Control API address (loopback).
    #[arg(long, default_value = "127.0.0.1:9101")]
    control: String,
    /// QR codes handed out per linking session.
    #[arg(long, default_value_t = 6)]
    qr_refs: usize,
}

#[derive(Debug, Deserialize)]
struct FaultQuery {
    /// Phone number (as returned by /scan); absent: every live session.
    number: Option<String>,
    kind: String,
    /// Ban length in seconds.
    expire: Option<u64>,
    /// Ban reason code (101–106).
    code: Option<u16>,
}

#[derive(Debug, Deserialize)]
struct CodeQuery {
    phone: String,
    code: String,
}

#[derive(Debug, Deserialize)]
struct NumberQuery {
    number: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let peer = Peer::start(
        &args.listen,
        Config {
            qr_refs: args.qr_refs,
        },
    )
    .await
    .with_context(|| format!("cannot listen on {}", args.listen))?;
    let app = Router::new()
        .route("/scan", post(scan))
        .route("/code", post(code))
        .route("/fault", post(fault))
        .route("/pardon", post(pardon))
        .route("/stats", get(stats))
        .with_state(peer.clone());
    let control = tokio::net::TcpListener::bind(&args.control)
        .await
        .with_context(|| format!("cannot listen on {}", args.control))?;
    println!(
        "lifeline-wa-peer: clients connect to {} (set LIFELINE_WHATSAPP_URL); control at http://{} \
         (POST /scan with the QR text; POST /code?phone=&code= to enter a pair code; POST /fault?number=&kind=restart|replaced|logged-out|ban|outdated|close|stall[&expire=S&code=101]; \
         POST /pardon?number=; GET /stats)",
        peer.url(),
        args.control
    );
    axum::serve(control, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    peer.shutdown();
    Ok(())
}

async fn scan(State(peer): State<Peer>, body: String) -> (StatusCode, String) {
    match peer.scan(&body) {
        Ok(number) => (StatusCode::OK, format!("{number}\n")),
        Err(e) => (StatusCode::NOT_FOUND, format!("{e}\n")),
    }
}

async fn code(State(peer): State<Peer>, Query(q): Query<CodeQuery>) -> (StatusCode, String) {
    match peer.enter_code(&q.phone, &q.code) {
        Ok(()) => (StatusCode::OK, "ok\n".into()),
        Err(e) => (StatusCode::NOT_FOUND, format!("{e}\n")),
    }
}

async fn fault(State(peer): State<Peer>, Query(q): Query<FaultQuery>) -> (StatusCode, String) {
    let fault = match q.kind.as_str() {
        "restart" => Fault::RestartRequired,
        "replaced" => Fault::Replaced,
        "logged-out" => Fault::LoggedOut,
        "ban" => Fault::Banned {
            code: q.code.unwrap_or(101),
            expire_secs: q.expire.unwrap_or(60),
        },
        "outdated" => Fault::Outdated,
        "close" => Fault::Close,
        "stall" => Fault::Stall,
        other => {
            return (
                StatusCode::BAD_REQUEST,
                format!(
                    "unknown fault '{other}'; use restart, replaced, logged-out, ban, outdated, close or stall\n"
                ),
            );
        }
    };
    let hit = match &q.number {
        Some(n) => peer.inject(n, fault),
        None => peer.inject_all(fault),
    };
    (StatusCode::OK, format!("{hit} live sessions hit\n"))
}

async fn pardon(State(peer): State<Peer>, Query(q): Query<NumberQuery>) -> &'static str {
    peer.pardon(&q.number);
    "ok\n"
}

async fn stats(State(peer): State<Peer>) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "stats": peer.stats(), "numbers": peer.numbers() }))
}
