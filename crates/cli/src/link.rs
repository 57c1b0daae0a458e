//! `lifeline link ID [--phone +…]`: links a WhatsApp account from a terminal. Runs the real
//! connector for that one account (holding the data-dir lock, so no supervisor fights over it),
//! draws each QR code as it rotates, or prints the pair code, and stops once the phone confirms.

use std::io::Write;
use std::sync::Arc;

use lifeline_engine::connector::{ConnEvent, ConnectRequest, Connector, LinkMode};
use lifeline_engine::model::{AccountId, AccountKind, normalize_phone};
use lifeline_engine::proxy::{self, ProxyEntry};
use lifeline_engine::secrets::KeyringSecretStore;
use lifeline_engine::state::{Reason, State, TriggeredBy};
use lifeline_engine::time::rfc3339;
use lifeline_engine::{DataDir, Error, InputError, Store};
use lifeline_whatsapp::{Endpoint, WhatsAppConnector};
use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub async fn link(
    dir: &DataDir,
    store: Store,
    id: i64,
    phone: Option<String>,
) -> Result<(), Error> {
    let mode = match phone.as_deref() {
        Some(p) => LinkMode::PhoneCode {
            phone: normalize_phone(p)?,
        },
        None => LinkMode::Qr,
    };
    let account = store.account(AccountId(id)).await?;
    if account.kind != AccountKind::Whatsapp {
        return Err(InputError::NotLinkable(id).into());
    }
    let _lock = dir.lock()?;
    let policy = store.policy().await?;
    let connector = WhatsAppConnector::new(dir.root(), Endpoint::from_env());
    // Linking goes out through the same proxy chain the supervisor would use.
    let pool: Vec<ProxyEntry> = store
        .accounts()
        .await?
        .iter()
        .filter_map(ProxyEntry::of)
        .collect();
    let route = proxy::chain(&account, &pool, policy.connection.direct_fallback);
    let (tx, mut rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(connector.run(
        ConnectRequest {
            account: account.clone(),
            config: policy.connection,
            secrets: Arc::new(KeyringSecretStore),
            link: Some(mode),
            route,
        },
        tx,
        cancel.clone(),
    ));
    eprintln!(
        "Connecting '{}' to WhatsApp… (Ctrl-C to give up)",
        account.name
    );
    let outcome = loop {
        let event = tokio::select! {
            _ = tokio::signal::ctrl_c() => break Err(Error::LinkFailed("interrupted".into())),
            e = rx.recv() => e,
        };
        match event {
            None => break Err(Error::LinkFailed("the connection ended".into())),
            Some(ConnEvent::Link(code)) => show(&code.mode, &code.code, code.expires_at)?,
            Some(ConnEvent::Connected { .. }) => break Ok(()),
            // The phone accepted the link; the server closes this first session so the device
            // logs in afresh, which `serve` does.
            Some(ConnEvent::Ended {
                reason: Reason::RestartRequired,
                ..
            }) => break Ok(()),
            Some(ConnEvent::Alive) => {}
            Some(ConnEvent::Ended { reason, detail }) => {
                let mut why = reason.describe();
                if let Some(d) = detail {
                    why.push_str(&format!(" ({d})"));
                }
                break Err(Error::LinkFailed(why));
            }
        }
    };
    cancel.cancel();
    let _ = task.await;
    outcome?;
    store.set_desired_running(account.id, true).await?;
    store
        .record_transition(
            account.id,
            State::Stopped { reason: None },
            Some("linked".into()),
            TriggeredBy::Operator,
            chrono::Utc::now(),
        )
        .await?;
    println!(
        "Linked '{}'. Start `lifeline serve` (or the desktop app) to keep it connected.",
        account.name
    );
    Ok(())
}

/// Draws a QR code (or prints a pair code) with its expiry. The code is shown, never logged.
fn show(
    mode: &LinkMode,
    code: &str,
    expires_at: lifeline_engine::time::Timestamp,
) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    let write_err = |source| Error::Write {
        path: "standard output".into(),
        source,
    };
    match mode {
        LinkMode::Qr => {
            let qr = QrCode::new(code.as_bytes())
                .map_err(|e| Error::LinkFailed(format!("cannot draw the QR code: {e}")))?;
            let art = qr.render::<Dense1x2>().quiet_zone(true).build();
            writeln!(out, "\n{art}").map_err(write_err)?;
            writeln!(
                out,
                "Scan with WhatsApp on the phone: Settings → Linked devices → Link a device. Valid until {}.",
                rfc3339(expires_at)
            )
            .map_err(write_err)?;
            if lifeline_whatsapp::TEST_PEER_BUILD {
                // The offline peer plays the phone: it needs the code as text (POST /scan).
                writeln!(out, "Test-peer build; code text: {code}").map_err(write_err)?;
            }
        }
        LinkMode::PhoneCode { phone } => {
            writeln!(
                out,
                "\nPair code for {phone}:  {}-{}\nOn the phone: Linked devices → Link with phone number instead. Valid until {}.",
                code.get(..4).unwrap_or(code),
                code.get(4..).unwrap_or_default(),
                rfc3339(expires_at)
            )
            .map_err(write_err)?;
        }
    }
    out.flush().map_err(write_err)
}
