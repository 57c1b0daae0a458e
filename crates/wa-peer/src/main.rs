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
    /// With no number: hit each live number with this probability (0–1) instead of all.
    fraction: Option<f64>,
}

/// Misbehaviour for new connections; each given field replaces the current one.
#[derive(Debug, Deserialize)]
struct ChaosQuery {
    /// Close every new connection at once for this many seconds.
    refuse_s: Option<f64>,
    /// Wait this long before answering each handshake.
    handshake_ms: Option<u64>,
    /// Wait this long before answering each login.
    login_ms: Option<u64>,
    /// Answer this fraction (0–1) of logins with a frame the client cannot read.
    garble: Option<f64>,
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
        .route("/chaos", post(chaos))
        .route("/calm", post(calm))
        .route("/drop-linking", post(drop_linking))
        .route("/stats", get(stats))
        .with_state(peer.clone());
    let control = tokio::net::TcpListener::bind(&args.control)
        .await
        .with_context(|| format!("cannot listen on {}", args.control))?;
    println!(
        "lifeline-wa-peer: clients connect to {} (set LIFELINE_WHATSAPP_URL); control at http://{} \
         (POST /scan with the QR text; POST /code?phone=&code= to enter a pair code; POST /fault?number=&kind=restart|replaced|logged-out|ban|outdated|close|stall[&expire=S&code=101]; \
         POST /pardon?number=; POST /chaos?refuse_s=&handshake_ms=&login_ms=&garble=; POST /calm; POST /drop-linking; GET /stats)",
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
    let hit = match (&q.number, q.fraction) {
        (Some(n), _) => peer.inject(n, fault),
        (None, Some(f)) if (0.0..=1.0).contains(&f) => peer.inject_fraction(fault, f).len(),
        (None, Some(f)) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("fraction {f} is not between 0 and 1\n"),
            );
        }
        (None, None) => peer.inject_all(fault),
    };
    (StatusCode::OK, format!("{hit} live sessions hit\n"))
}

async fn chaos(State(peer): State<Peer>, Query(q): Query<ChaosQuery>) -> (StatusCode, String) {
    if let Some(s) = q.refuse_s {
        match std::time::Duration::try_from_secs_f64(s) {
            Ok(d) => peer.refuse_for(d),
            Err(_) => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("refuse_s {s} is not a duration\n"),
                );
            }
        }
    }
    if let Some(ms) = q.handshake_ms {
        peer.set_handshake_delay(std::time::Duration::from_millis(ms));
    }
    if let Some(ms) = q.login_ms {
        peer.set_login_delay(std::time::Duration::from_millis(ms));
    }
    if let Some(f) = q.garble {
        if !(0.0..=1.0).contains(&f) {
            return (
                StatusCode::BAD_REQUEST,
                format!("garble {f} is not between 0 and 1\n"),
            );
        }
        peer.garble_logins(f);
    }
    (StatusCode::OK, "ok\n".into())
}

async fn calm(State(peer): State<Peer>) -> &'static str {
    peer.calm();
    "ok\n"
}

async fn drop_linking(State(peer): State<Peer>) -> String {
    format!("{} linking connections dropped\n", peer.drop_linking())
}

async fn pardon(State(peer): State<Peer>, Query(q): Query<NumberQuery>) -> &'static str {
    peer.pardon(&q.number);
    "ok\n"
}

async fn stats(State(peer): State<Peer>) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({
        "stats": peer.stats(),
        "numbers": peer.numbers(),
        "per_number": peer.number_stats(),
    }))
}
