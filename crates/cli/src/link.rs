//! `lifeline link ID [--phone +…]`: links a WhatsApp account from a terminal. The supervisor
//! links it — the running one, or, when none runs, one started here just for the link (it
//! restores nothing else and stops once the account is linked). The CLI draws each QR code as it
//! rotates, or prints the pair code, reading them from the store where the supervisor keeps the
//! current code while linking (see `supervisor::queue`), and ends when the account connects.

use std::io::Write;
use std::time::Duration;

use lifeline_engine::connector::LinkMode;
use lifeline_engine::model::{AccountId, normalize_phone};
use lifeline_engine::ops::{Control, Queued};
use lifeline_engine::state::{Reason, State};
use lifeline_engine::supervisor::queue;
use lifeline_engine::time::rfc3339;
use lifeline_engine::{DataDir, Error, InputError, Store};
use lifeline_runtime::{Parts, Runtime};
use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;

use crate::words;

const POLL: Duration = Duration::from_millis(200);

pub async fn link(
    dir: &DataDir,
    store: Store,
    id: i64,
    phone: Option<String>,
) -> Result<(), Error> {
    let id = AccountId(id);
    let mode = match phone.as_deref() {
        Some(p) => LinkMode::PhoneCode {
            phone: normalize_phone(p)?,
        },
        None => LinkMode::Qr,
    };
    let account = store.account(id).await?;
    if !account.kind.links() {
        return Err(InputError::NotLinkable(id.0).into());
    }
    // With no supervisor running, one runs here for the link alone. Never on a fleet store:
    // there the instance holding the account links it (a supervisor here would run every
    // account of the fleet beside their instances).
    let mut temporary = None;
    if !store.is_fleet() && dir.supervisor().is_none() {
        match Runtime::open(dir, store.clone(), Parts::system(dir)).await {
            Ok(mut rt) => {
                rt.start_quiet().await?;
                temporary = Some(rt);
            }
            // One just started: go through it.
            Err(Error::DataDirLocked { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let asked_at = chrono::Utc::now();
    let requested = match &temporary {
        Some(rt) => queue::link_for_another(rt.supervisor(), id, mode).await,
        None => {
            Queued::new(dir.clone(), store.clone(), Parts::system(dir).connectors)
                .link(id, mode)
                .await
        }
    };
    eprintln!(
        "Connecting '{}' to WhatsApp… (Ctrl-C to stop)",
        account.name
    );
    let outcome = match requested {
        Ok(()) => watch(&store, id, asked_at).await,
        Err(e) => Err(e),
    };
    let keeps_running = temporary.is_none();
    if let Some(rt) = temporary {
        rt.shutdown().await?;
    }
    outcome?;
    if keeps_running {
        println!(
            "Linked '{}'; the running supervisor keeps it connected.",
            account.name
        );
    } else {
        println!(
            "Linked '{}'. Start `lifeline serve` (or the desktop app) to keep it connected.",
            account.name
        );
    }
    Ok(())
}

/// Shows each new code until the account connects, or linking fails.
async fn watch(
    store: &Store,
    id: AccountId,
    asked_at: lifeline_engine::Timestamp,
) -> Result<(), Error> {
    let mut shown: Option<String> = None;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Err(Error::LinkFailed("interrupted".into())),
            _ = tick.tick() => {}
        }
        if let Some(code) = store.link_code(id).await?
            && shown.as_deref() != Some(code.code.as_str())
        {
            show(&code.mode, &code.code, code.expires_at)?;
            shown = Some(code.code);
        }
        let account = store.account(id).await?;
        if account.state_since < asked_at {
            continue;
        }
        match &account.state {
            State::Connected => return Ok(()),
            State::NeedsOperator { reason }
            | State::Stopped {
                reason: Some(reason),
            }
            | State::Paused { reason, .. } => {
                return Err(Error::LinkFailed(words::reason(reason)));
            }
            State::Stopped { reason: None } => {
                return Err(Error::LinkFailed("the account was stopped".into()));
            }
            // The server's "log in again" right after a link: linking worked, it reconnects.
            State::Backoff {
                reason: Reason::RestartRequired,
                ..
            } => {}
            // An attempt failed (the supervisor retries on its own schedule): say why now.
            State::Backoff { reason, .. } => return Err(Error::LinkFailed(words::reason(reason))),
            State::Linking | State::Connecting | State::Waiting { .. } => {}
        }
    }
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
            if lifeline_runtime::TEST_PEER_BUILD {
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
