//! Faults reach the sockets they name: by default a path's fault goes to that path's sockets
//! alone; after `fan_out_faults` every socket hears every fault and picks its own. Both must end
//! exactly the sockets named, and a fault for every path ends them all.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use lifeline_sim::{Fault, Sim};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn open(sim: &Sim, name: &str) -> Ws {
    tokio_tungstenite::connect_async(sim.url(name))
        .await
        .expect("connect")
        .0
}

/// What the socket reads next: a text echo, a close code, or its end.
async fn next(ws: &mut Ws) -> String {
    let read = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
    match read.expect("the simulator answers within 10 s") {
        Some(Ok(Message::Text(t))) => format!("echo {t}"),
        Some(Ok(Message::Close(f))) => format!("close {:?}", f.map(|f| u16::from(f.code))),
        Some(Ok(other)) => format!("{other:?}"),
        Some(Err(_)) | None => "ended".to_owned(),
    }
}

async fn echoes(ws: &mut Ws) -> bool {
    ws.send(Message::text("hi")).await.is_ok() && next(ws).await == "echo hi"
}

async fn exercise(sim: &Sim) {
    let (mut a, mut b, mut c) = (
        open(sim, "a").await,
        open(sim, "b").await,
        open(sim, "c").await,
    );
    sim.inject(Fault::Drop {
        path: Some("/s/a".into()),
    });
    assert_eq!(next(&mut a).await, "ended");
    assert!(echoes(&mut b).await && echoes(&mut c).await);
    sim.inject(Fault::Close {
        path: Some("/s/b".into()),
        code: 1011,
    });
    assert_eq!(next(&mut b).await, "close Some(1011)");
    assert!(echoes(&mut c).await);
    assert_eq!(sim.stats("/s/a").server_drops, 1);
    assert_eq!(sim.stats("/s/b").server_drops, 1);
    assert_eq!(sim.stats("/s/c").server_drops, 0);
    sim.inject(Fault::Drop { path: None });
    assert_eq!(next(&mut c).await, "ended");
}

#[tokio::test]
async fn a_fault_for_one_path_ends_only_that_path_s_sockets() {
    let sim = Sim::start("127.0.0.1:0").await.expect("sim");
    exercise(&sim).await;
}

#[tokio::test]
async fn fanned_out_faults_end_the_same_sockets() {
    let sim = Sim::start("127.0.0.1:0").await.expect("sim");
    sim.fan_out_faults();
    exercise(&sim).await;
}
