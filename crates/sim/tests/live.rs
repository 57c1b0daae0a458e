//! The simulator's live-socket count is what the soak's "one socket per account" invariant is
//! checked against, so it must count only sockets a client still holds.

use std::time::Duration;

use lifeline_sim::Sim;

/// A client gives up on a slow handshake and reconnects; the simulator finishes the abandoned
/// handshake later. That socket was closed by the client before it was upgraded: not live.
#[tokio::test]
async fn a_handshake_the_client_abandoned_is_never_counted_live() {
    let sim = Sim::start("127.0.0.1:0").await.expect("sim");
    sim.set_handshake_delay(Duration::from_millis(300));
    let url = sim.url("a");
    let abandoned = tokio::time::timeout(
        Duration::from_millis(50),
        tokio_tungstenite::connect_async(url.clone()),
    )
    .await;
    assert!(abandoned.is_err(), "the slow handshake should time out");
    sim.set_handshake_delay(Duration::ZERO);
    let (live, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("second connect");
    // Let the abandoned handshake's delay run out while the second socket is up.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while sim.stats("/s/a").accepted < 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let stats = sim.stats("/s/a");
    assert_eq!(stats.live, 1, "{stats:?}");
    assert_eq!(stats.max_live, 1, "{stats:?}");
    drop(live);
}
