//! Lifeline's desktop shell: a thin Tauri 2 face over `lifeline-runtime`. It opens the data dir
//! and supervises like `lifeline serve` does, then translates: commands in (`commands`), events,
//! tray and notifications out (`forward`, `tray`). Policy stays in the engine.

pub mod api;
#[cfg(test)]
mod bindings;
mod commands;
mod console;
pub mod error;
mod forward;
pub mod input;
pub mod names;
pub mod render;
mod shell;
pub mod tray;

use std::sync::Arc;

use lifeline_engine::ops::{Action, Target};
use tauri::{AppHandle, Manager, RunEvent};
use tauri_plugin_autostart::ManagerExt as _;

use crate::error::{CommandError, ErrorCode};
use crate::shell::{ExitStep, Shell};

/// Builds and runs the app until it quits; returns the process exit code.
pub fn run() -> i32 {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LIFELINE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    // While this is the only thread (it may set WebKit's environment).
    render::choose();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lifeline-desktop: cannot start the async runtime: {e}");
            return 1;
        }
    };
    tauri::async_runtime::set(runtime.handle().clone());
    let app = tauri::Builder::default()
        // First: a second launch only brings this window forward (and never takes the lock).
        .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| {
            show_main(app);
        }))
        // Size, place and maximised state, not visibility: a window hidden in the tray when
        // Lifeline quit must not come back hidden.
        .plugin(
            tauri_plugin_window_state::Builder::default()
                .with_state_flags(
                    tauri_plugin_window_state::StateFlags::all()
                        - tauri_plugin_window_state::StateFlags::VISIBLE,
                )
                .build(),
        )
        .plugin(tauri_plugin_dialog::init())
        .plugin(
            tauri_plugin_autostart::Builder::new()
                .args([AUTOSTARTED])
                .build(),
        )
        .on_window_event(|window, event| {
            if let tauri::WindowEvent::CloseRequested { api, .. } = event
                && window.label() == "main"
            {
                // Decided off the event loop (asking the session bus for a tray host).
                api.prevent_close();
                let app = window.app_handle().clone();
                tauri::async_runtime::spawn(async move { close_main(&app).await });
            }
        })
        .invoke_handler(tauri::generate_handler![
            commands::fleet_snapshot,
            commands::watch_fleet,
            commands::add_account,
            commands::remove_account,
            commands::start_account,
            commands::stop_account,
            commands::retry_account,
            commands::reset_breaker,
            commands::set_muted,
            commands::set_notify_live,
            commands::relink_account,
            commands::start_all,
            commands::stop_all,
            commands::check_all,
            commands::set_autorecover,
            commands::account_history,
            commands::get_policy,
            commands::set_policy,
            commands::policy_presets,
            commands::list_secrets,
            commands::set_secret,
            commands::delete_secret,
            commands::choose_export_path,
            commands::export_csv,
            commands::get_prefs,
            commands::set_prefs,
            commands::quit,
            commands::notify,
            commands::set_tray_labels,
            commands::list_webhooks,
            commands::add_webhook,
            commands::remove_webhook,
            commands::set_webhook_enabled,
            commands::test_webhook,
            commands::rotate_webhook_secret,
            commands::webhook_deliveries,
            commands::replay_delivery,
            commands::connection,
            commands::connect_fleet,
            commands::disconnect_fleet,
            commands::fleet_status,
        ])
        .setup({
            move |app| {
                let shell = tauri::async_runtime::block_on(Shell::start());
                app.manage(shell.clone());
                if let Ok(live) = shell.live() {
                    watch(app.handle(), shell.clone(), live);
                }
                tauri::async_runtime::spawn(exit_on_signal(app.handle().clone()));
                // The window starts hidden (tauri.conf.json) and is shown here, unless this is a
                // start at login the operator wants in the tray and there is a tray to be in.
                let autostarted = std::env::args().any(|a| a == AUTOSTARTED);
                let hidden = autostarted
                    && shell.prefs().start_hidden
                    && tauri::async_runtime::block_on(tray::host_available());
                if !hidden {
                    show_main(app.handle());
                }
                Ok(())
            }
        })
        .build(tauri::generate_context!());
    let app = match app {
        Ok(app) => app,
        Err(e) => {
            eprintln!("lifeline-desktop: cannot start: {e}");
            return 1;
        }
    };
    // One owner of the way out: the shell. The first exit request (Quit, the last window, a
    // signal) starts its graceful stop; the process exits once that is done.
    app.run_return(move |handle, event| {
        if let RunEvent::ExitRequested { api, code, .. } = event {
            let Some(shell) = handle.try_state::<Arc<Shell>>() else {
                return;
            };
            let shell = shell.inner().clone();
            match shell.exit_step() {
                ExitStep::Go => {}
                ExitStep::Wait => api.prevent_exit(),
                ExitStep::Stop => {
                    api.prevent_exit();
                    let handle = handle.clone();
                    let code = code.unwrap_or(0);
                    tauri::async_runtime::spawn(async move {
                        shell.shutdown().await;
                        handle.exit(code);
                    });
                }
            }
        }
    })
}

/// Carries what happens in `live` to the window, tray and notifications, and serves the HTTP
/// API when this computer supervises and the operator has it on.
pub(crate) fn watch(app: &AppHandle, shell: Arc<Shell>, live: Arc<shell::Live>) {
    if live.supervisor().is_some() {
        let prefs = shell.prefs();
        let api = shell.clone();
        tauri::async_runtime::spawn(async move {
            if let Err(e) = api.serve_api(&prefs).await {
                tracing::warn!(error = %e, "HTTP API not started");
            }
        });
    }
    tauri::async_runtime::spawn(forward::run(app.clone(), shell, live));
}

/// The argument the login entry starts Lifeline with.
const AUTOSTARTED: &str = "--autostarted";

/// The window's close button: hide it and keep supervising where a tray shows Lifeline and the
/// operator wants that (telling them once), quit gracefully otherwise.
async fn close_main(app: &AppHandle) {
    let Some(shell) = app.try_state::<Arc<Shell>>().map(|s| s.inner().clone()) else {
        app.exit(0);
        return;
    };
    let (wanted, tray) = (
        shell.prefs().close_to_tray,
        app.try_state::<tray::Tray>().is_some(),
    );
    let host = wanted && tray && tray::host_available().await;
    if !host {
        tracing::info!(wanted, tray, "window closed: quitting");
        app.exit(0);
        return;
    }
    tracing::info!("window closed: still supervising, in the tray");
    if let Some(w) = app.get_webview_window("main") {
        let _ = w.hide();
    }
    if shell.first_time_in_tray().await
        && let Some(tray) = app.try_state::<tray::Tray>()
    {
        forward::notify(tray.kept_running());
    }
}

pub(crate) fn show_main(app: &AppHandle) {
    if let Some(w) = app.get_webview_window("main") {
        let _ = w.show();
        let _ = w.unminimize();
        let _ = w.set_focus();
    }
}

pub(crate) fn on_tray_menu(app: &AppHandle, id: &str) {
    let Some(shell) = app.try_state::<Arc<Shell>>() else {
        return;
    };
    let shell = shell.inner().clone();
    match id {
        tray::MENU_SHOW => tray::toggle_main(app),
        tray::MENU_QUIT => app.exit(0),
        tray::MENU_START_ALL | tray::MENU_STOP_ALL => {
            let action = if id == tray::MENU_START_ALL {
                Action::Start
            } else {
                Action::Stop
            };
            tauri::async_runtime::spawn(async move {
                let Ok(live) = shell.live() else { return };
                if let Err(e) = live.act(action, Target::All).await {
                    tracing::warn!(error = %e, action = action.as_str(), "tray action failed");
                }
            });
        }
        _ => {}
    }
}

/// Puts the tray up with the UI's words, or gives it new ones.
pub(crate) fn set_tray_labels(app: &AppHandle, labels: api::TrayLabels) {
    if let Some(tray) = app.try_state::<tray::Tray>() {
        tray.relabel(labels);
        return;
    }
    match tray::Tray::build(app, labels) {
        Ok(t) => {
            if let Some(shell) = app.try_state::<Arc<Shell>>()
                && let Ok(live) = shell.live()
            {
                t.update(&lifeline_engine::fleet::Counts::of(&live.views()));
            }
            app.manage(t);
        }
        Err(e) => tracing::warn!(error = %e, "no tray icon"),
    }
}

pub(crate) fn set_start_at_login(app: &AppHandle, on: bool) -> Result<(), CommandError> {
    let autolaunch = app.autolaunch();
    let done = if on {
        autolaunch.enable()
    } else if autolaunch.is_enabled().unwrap_or(false) {
        autolaunch.disable()
    } else {
        Ok(())
    };
    done.map_err(|e| {
        CommandError::new(
            ErrorCode::Io,
            format!("Could not change start at login: {e}."),
        )
    })
}

/// SIGTERM and Ctrl-C quit gracefully too (clean-run marker), like the Quit menu.
async fn exit_on_signal(app: AppHandle) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        } else {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("signal received; quitting");
    app.exit(0);
}
