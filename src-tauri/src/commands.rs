//! The commands the UI calls. Each one parses, calls the engine and maps the error; anything
//! longer belongs in the engine, the runtime or `input`. Every failing call is logged once, with
//! its inputs (secret values are a redacting type), by `tracing::instrument(err)`.

use std::sync::Arc;

use lifeline_engine::model::AccountChange;
use lifeline_engine::ops::{Action, Target};
use lifeline_engine::secrets::{self, KeyringSecretStore, SecretStore};
use lifeline_engine::store::DeliveryFilter;
use lifeline_engine::{AccountId, export};
use tauri::{AppHandle, Emitter, State};
use tauri_plugin_autostart::ManagerExt as _;
use tauri_plugin_dialog::DialogExt as _;

use crate::api::*;
use crate::error::{CommandError, CommandResult, ErrorCode};
use crate::shell::Shell;
use crate::{input, names};

type Sh<'a> = State<'a, Arc<Shell>>;

/// Start, stop, retry, reset or check, through the operations layer.
async fn act(state: &Sh<'_>, action: Action, target: Target) -> CommandResult<()> {
    state.live()?.act(action, target).await?;
    Ok(())
}

#[tauri::command]
#[tracing::instrument(skip(state), err)]
pub async fn fleet_snapshot(state: Sh<'_>) -> CommandResult<Snapshot> {
    let live = state.live()?;
    if let Some(c) = live.console() {
        c.refresh(&live.store).await?;
    }
    state.refresh_health(&live).await?;
    let (seq, views) = state.read_views(&live);
    let startup = live.startup();
    Ok(Snapshot {
        seq,
        cards: state.cards(&live, &views),
        autorecover: live.store.autorecover().await?,
        previous_run_crashed: startup.previous_run_crashed,
        restoring: startup.restoring as u32,
        held_stopped: startup.held_stopped as u32,
        data_dir: live.data_dir.display().to_string(),
        fleet_store: live.fleet_store(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    })
}

/// Opens the stream of card changes (coalesced deltas) to the window.
#[tauri::command]
#[tracing::instrument(skip(state, on_delta), err)]
pub async fn watch_fleet(
    state: Sh<'_>,
    on_delta: tauri::ipc::Channel<FleetDelta>,
) -> CommandResult<()> {
    state.watch_fleet(on_delta);
    Ok(())
}

#[tauri::command]
#[tracing::instrument(skip(state), err)]
pub async fn add_account(state: Sh<'_>, input: NewAccountInput) -> CommandResult<Card> {
    let (live, new) = (state.live()?, input::new_account(&input)?);
    let link = input.link.as_ref().map(input::link_mode).transpose()?;
    let account = live.add(new).await?;
    if let Some(mode) = link {
        // In a fleet only the instance that takes the new account up can link it.
        if let Some(c) = live.console()
            && !c.wait_held(account.id).await?
        {
            return Err(CommandError::new(
                ErrorCode::Unavailable,
                format!(
                    "'{}' was added, but no instance of the fleet has taken it up yet: link it from its card once one has.",
                    account.name
                ),
            ));
        }
        live.link(account.id, mode).await?;
    }
    state.card(&live, account.id).await
}

#[tauri::command]
#[tracing::instrument(skip(state), err)]
pub async fn remove_account(state: Sh<'_>, id: i64) -> CommandResult<()> {
    state.live()?.remove(AccountId(id)).await?;
    Ok(())
}

#[tauri::command]
#[tracing::instrument(skip(state), err)]
pub async fn start_account(state: Sh<'_>, id: i64) -> CommandResult<()> {
    act(&state, Action::Start, Target::One(AccountId(id))).await
}

#[tauri::command]
#[tracing::instrument(skip(state), err)]
pub async fn stop_account(state: Sh<'_>, id: i64) -> CommandResult<()> {
    act(&state, Action::Stop, Target::One(AccountId(id))).await
}

#[tauri::command]
#[tracing::instrument(skip(state), err)]
pub async fn retry_account(state: Sh<'_>, id: i64) -> CommandResult<()> {
    act(&state, Action::Retry, Target::One(AccountId(id))).await
}

#[tauri::command]
#[tracing::instrument(skip(state), err)]
pub async fn reset_breaker(state: Sh<'_>, id: i64) -> CommandResult<()> {
    act(&state, Action::Reset, Target::One(AccountId(id))).await
}

#[tauri::command]
#[tracing::instrument(skip(state), err)]
pub async fn set_muted(state: Sh<'_>, id: i64, muted: bool) -> CommandResult<()> {
    let change = AccountChange {
        muted: Some(muted),
        ..AccountChange::default()
    };
    state.live()?.update(AccountId(id), change).await?;
    Ok(())
}

/// Whether a notification says when the account's creator goes live.
#[tauri::command]
#[tracing::instrument(skip(state), err)]
pub async fn set_notify_live(state: Sh<'_>, id: i64, on: bool) -> CommandResult<()> {
    let change = AccountChange {
        notify_live: Some(on),
        ..AccountChange::default()
    };
    state.live()?.update(AccountId(id), change).await?;
    Ok(())
}

#[tauri::command]
#[tracing::instrument(skip(state), err)]
pub async fn relink_account(state: Sh<'_>, id: i64, link: LinkRequest) -> CommandResult<()> {
    let (live, mode) = (state.live()?, input::link_mode(&link)?);
    Ok(live.link(AccountId(id), mode).await?)
}

#[tauri::command]
#[tracing::instrument(skip(state), err)]
pub async fn start_all(state: Sh<'_>) -> CommandResult<()> {
    act(&state, Action::Start, Target::All).await
}

#[tauri::command]
#[tracing::instrument(skip(state), err)]
pub async fn stop_all(state: Sh<'_>) -> CommandResult<()> {
    act(&state, Action::Stop, Target::All).await
}

#[tauri::command]
#[tracing::instrument(skip(state), err)]
pub async fn check_all(state: Sh<'_>) -> CommandResult<()> {
    act(&state, Action::Check, Target::All).await
}

#[tauri::command]
#[tracing::instrument(skip(state), err)]
pub async fn set_autorecover(state: Sh<'_>, on: bool) -> CommandResult<bool> {
    let live = state.live()?;
    live.store.set_autorecover(on).await?;
    Ok(live.store.autorecover().await?)
}

#[tauri::command]
#[tracing::instrument(skip(state), err)]
pub async fn account_history(state: Sh<'_>, id: i64, window: String) -> CommandResult<HistoryInfo> {
    let (live, span) = (state.live()?, input::window(&window)?);
    let now = live.now();
    let h = live
        .store
        .account_history(AccountId(id), now - span)
        .await?;
    let lives = live.store.remote_sessions(AccountId(id), 20).await?;
    Ok(history_info(&h, &lives, now))
}

#[tauri::command]
#[tracing::instrument(skip(state), err)]
pub async fn get_policy(state: Sh<'_>) -> CommandResult<PolicyValues> {
    Ok(input::policy_values(&state.live()?.store.policy().await?)?)
}

/// Saves validated policy values and puts them in force at once (each changed value is logged,
/// old → new; connections up now are not cut).
#[tauri::command]
#[tracing::instrument(skip(state), err)]
pub async fn set_policy(state: Sh<'_>, values: PolicyValues) -> CommandResult<PolicyValues> {
    let (live, cfg) = (state.live()?, input::policy(&values)?);
    live.set_policy(cfg).await?;
    Ok(input::policy_values(&cfg)?)
}

/// The presets and the values each sets, for Settings to fill its form with.
#[tauri::command]
#[tracing::instrument(err)]
pub async fn policy_presets() -> CommandResult<Vec<PresetInfo>> {
    Ok(input::presets()?)
}

#[tauri::command]
#[tracing::instrument(skip(state), err)]
pub async fn list_secrets(state: Sh<'_>) -> CommandResult<Vec<String>> {
    let names = state.live()?.store.secret_names().await?;
    Ok(names.into_iter().map(String::from).collect())
}

/// Stores a value in the OS keyring. The value is never returned or shown again.
#[tauri::command]
#[tracing::instrument(skip(state, value), err)]
pub async fn set_secret(state: Sh<'_>, name: String, value: SecretInput) -> CommandResult<()> {
    let (live, name) = (state.live()?, input::secret_name(&name)?);
    Ok(secrets::set_secret(&live.store, &KeyringSecretStore, &name, value.into_value()).await?)
}

#[tauri::command]
#[tracing::instrument(skip(state), err)]
pub async fn delete_secret(state: Sh<'_>, name: String) -> CommandResult<()> {
    let (live, name) = (state.live()?, input::secret_name(&name)?);
    Ok(secrets::delete_secret(&live.store, &KeyringSecretStore, &name).await?)
}

/// Asks where to save an export with the native save dialog; `cancelled` if the operator closes it.
#[tauri::command]
#[tracing::instrument(skip(app), err)]
pub async fn choose_export_path(app: AppHandle, what: ExportWhat) -> CommandResult<String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let name = format!(
        "lifeline-{}.csv",
        match what {
            ExportWhat::Sessions => "sessions",
            ExportWhat::Events => "events",
            ExportWhat::Lives => "lives",
        }
    );
    app.dialog()
        .file()
        .add_filter("CSV", &["csv"])
        .set_file_name(name)
        .save_file(move |p| {
            let _ = tx.send(p);
        });
    let path = rx.await.ok().flatten().and_then(|p| p.into_path().ok());
    path.map(|p| p.display().to_string())
        .ok_or_else(|| CommandError::new(ErrorCode::Cancelled, "Export cancelled."))
}

/// Streams the export to `path` (written under a temporary name, renamed when complete),
/// reporting progress as `lifeline://export-progress` events.
#[tauri::command]
#[tracing::instrument(skip(state, app), err)]
pub async fn export_csv(
    state: Sh<'_>,
    app: AppHandle,
    request: ExportRequest,
) -> CommandResult<ExportDone> {
    let (live, (kind, filter)) = (state.live()?, input::export(&request)?);
    let progress = {
        let app = app.clone();
        move |rows| {
            let _ = app.emit(
                names::EVENT_EXPORT_PROGRESS,
                ExportProgress { rows, done: false },
            );
        }
    };
    let rows = export::export_to_path(
        &live.store,
        kind,
        filter,
        std::path::Path::new(&request.path),
        progress,
    )
    .await?;
    let _ = app.emit(
        names::EVENT_EXPORT_PROGRESS,
        ExportProgress { rows, done: true },
    );
    Ok(ExportDone {
        rows,
        path: request.path,
    })
}

#[tauri::command]
#[tracing::instrument(skip(state, app), err)]
pub async fn get_prefs(state: Sh<'_>, app: AppHandle) -> CommandResult<Prefs> {
    let start_at_login = app.autolaunch().is_enabled().unwrap_or(false);
    Ok(Prefs {
        start_at_login,
        tray_host: crate::tray::host_available().await,
        ..state.prefs()
    })
}

#[tauri::command]
#[tracing::instrument(skip(state, app), err)]
pub async fn set_prefs(state: Sh<'_>, app: AppHandle, prefs: Prefs) -> CommandResult<Prefs> {
    let json = serde_json::to_string(&prefs)
        .map_err(|e| CommandError::new(ErrorCode::Internal, e.to_string()))?;
    let live = state.live()?;
    // First the server: a port that cannot be used is refused before anything is stored.
    state.serve_api(&prefs).await?;
    live.home.set_setting(PREFS_KEY, &json).await?;
    state.set_prefs(prefs);
    crate::set_start_at_login(&app, prefs.start_at_login)?;
    Ok(Prefs {
        tray_host: crate::tray::host_available().await,
        ..prefs
    })
}

/// Shows an alert as a desktop notification, in the words the UI chose, unless the operator
/// turned notifications off.
#[tauri::command]
#[tracing::instrument(skip(state, text), err)]
pub async fn notify(state: Sh<'_>, text: NotificationText) -> CommandResult<()> {
    if state.prefs().notifications {
        crate::forward::notify(text);
    }
    Ok(())
}

/// The tray's words in the operator's language; the first call puts the tray up.
#[tauri::command]
#[tracing::instrument(skip(app, labels), err)]
pub async fn set_tray_labels(app: AppHandle, labels: TrayLabels) -> CommandResult<()> {
    crate::set_tray_labels(&app, labels);
    Ok(())
}

/// Graceful quit: closes every connection and writes the clean-run marker before exiting.
#[tauri::command]
#[tracing::instrument(skip(app), err)]
pub async fn quit(app: AppHandle) -> CommandResult<()> {
    app.exit(0);
    Ok(())
}

fn keyring() -> Arc<dyn SecretStore> {
    Arc::new(KeyringSecretStore)
}

#[tauri::command]
#[tracing::instrument(skip(state), err)]
pub async fn list_webhooks(state: Sh<'_>) -> CommandResult<Vec<WebhookInfo>> {
    let endpoints = state.live()?.store.webhooks().await?;
    Ok(endpoints.iter().map(WebhookInfo::from).collect())
}

/// Adds an endpoint; its signing secret is answered this once (and kept in the keyring).
#[tauri::command]
#[tracing::instrument(skip(state), err)]
pub async fn add_webhook(state: Sh<'_>, input: NewWebhookInput) -> CommandResult<WebhookSecret> {
    let events = (!input.events.is_empty()).then(|| input.events.join(","));
    let (endpoint, secret) = lifeline_webhooks::add_endpoint(
        &state.live()?.store,
        &keyring(),
        &input.url,
        events.as_deref(),
        &[],
    )
    .await?;
    Ok(WebhookSecret {
        endpoint: WebhookInfo::from(&endpoint),
        secret: secret.expose().to_owned(),
    })
}

#[tauri::command]
#[tracing::instrument(skip(state), err)]
pub async fn remove_webhook(state: Sh<'_>, id: i64) -> CommandResult<()> {
    lifeline_webhooks::remove_endpoint(&state.live()?.store, &keyring(), id).await?;
    Ok(())
}

#[tauri::command]
#[tracing::instrument(skip(state), err)]
pub async fn set_webhook_enabled(
    state: Sh<'_>,
    id: i64,
    enabled: bool,
) -> CommandResult<WebhookInfo> {
    let store = &state.live()?.store;
    let reason = (!enabled).then_some(lifeline_engine::webhook::TURNED_OFF_BY_OPERATOR);
    store.set_webhook_enabled(id, enabled, reason).await?;
    Ok(WebhookInfo::from(&store.webhook(id).await?))
}

/// Sends a signed test message now; answers the delivery as recorded (code or error).
#[tauri::command]
#[tracing::instrument(skip(state), err)]
pub async fn test_webhook(state: Sh<'_>, id: i64) -> CommandResult<DeliveryInfo> {
    let instance = lifeline_runtime::webhook_config().instance;
    let d = lifeline_webhooks::send_test(&state.live()?.store, &keyring(), id, &instance).await?;
    Ok(DeliveryInfo::from(&d))
}

/// A new signing secret, answered this once; the old one keeps signing beside it for 24 h.
#[tauri::command]
#[tracing::instrument(skip(state), err)]
pub async fn rotate_webhook_secret(state: Sh<'_>, id: i64) -> CommandResult<WebhookSecret> {
    let store = &state.live()?.store;
    let secret = lifeline_webhooks::rotate_secret(
        store,
        &keyring(),
        id,
        lifeline_webhooks::ROTATION_OVERLAP,
    )
    .await?;
    Ok(WebhookSecret {
        endpoint: WebhookInfo::from(&store.webhook(id).await?),
        secret: secret.expose().to_owned(),
    })
}

/// The latest deliveries of one endpoint, newest first.
#[tauri::command]
#[tracing::instrument(skip(state), err)]
pub async fn webhook_deliveries(
    state: Sh<'_>,
    id: i64,
    limit: u32,
) -> CommandResult<Vec<DeliveryInfo>> {
    let store = &state.live()?.store;
    store.webhook(id).await?;
    let filter = DeliveryFilter {
        endpoint: Some(id),
        failed_only: false,
        limit: limit.clamp(1, 500),
    };
    Ok(store
        .deliveries(filter)
        .await?
        .iter()
        .map(DeliveryInfo::from)
        .collect())
}

/// Sends a delivery again (same webhook-id): queued at once for the sender.
#[tauri::command]
#[tracing::instrument(skip(state), err)]
pub async fn replay_delivery(state: Sh<'_>, id: i64) -> CommandResult<DeliveryInfo> {
    let d = state.live()?.store.replay_delivery(id).await?;
    Ok(DeliveryInfo::from(&d))
}

/// Which store the window works on (also when it could not start: a fleet that cannot be
/// reached can be left from there).
#[tauri::command]
#[tracing::instrument(skip(state), err)]
pub async fn connection(state: Sh<'_>) -> CommandResult<Connection> {
    Ok(state.connection().clone())
}

/// Settings → "Connect to a fleet": this computer becomes a console of the fleet store (its
/// own accounts stop being supervised here). Refused with the store's reason, changing nothing,
/// when the store cannot be used; the password goes into the keyring only once it worked.
#[tauri::command]
#[tracing::instrument(skip(state, app), err)]
pub async fn connect_fleet(
    state: Sh<'_>,
    app: AppHandle,
    input: FleetConnectInput,
) -> CommandResult<Connection> {
    let live = state
        .connect_fleet(&input.url, input.password.into_value())
        .await?;
    crate::watch(&app, state.inner().clone(), live);
    Ok(state.connection().clone())
}

/// Back to supervising this computer's own accounts.
#[tauri::command]
#[tracing::instrument(skip(state, app), err)]
pub async fn disconnect_fleet(state: Sh<'_>, app: AppHandle) -> CommandResult<Connection> {
    if let Some(live) = state.disconnect_fleet().await? {
        crate::watch(&app, state.inner().clone(), live);
    }
    Ok(state.connection().clone())
}

/// The fleet view: instances, their load and heartbeats, and the totals.
#[tauri::command]
#[tracing::instrument(skip(state), err)]
pub async fn fleet_status(state: Sh<'_>) -> CommandResult<FleetStatus> {
    let live = state.live()?;
    let Some(console) = live.console() else {
        return Err(CommandError::new(
            ErrorCode::InvalidInput,
            "This computer supervises its own accounts: connect to a fleet in Settings first.",
        ));
    };
    Ok(console.status().await?)
}
