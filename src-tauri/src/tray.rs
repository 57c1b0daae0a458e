//! The tray: an icon whose colour and shape follow the fleet's health level (decided in the
//! engine, `fleet::Counts::level`), a counts line, show/hide, start all / stop all, quit. The
//! words and pixels are pure and tested; the rest is Tauri plumbing.

use lifeline_engine::fleet::{Counts, Level};
use tauri::image::Image;
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Manager, Wry};

use crate::api::TrayLabels;

/// Fills the UI's counts template (slots `{connected}`, `{recovering}`, `{needs}`, `{total}`).
pub fn summary(template: &str, c: &Counts) -> String {
    template
        .replace("{connected}", &c.desired_connected.to_string())
        .replace("{recovering}", &c.recovering.to_string())
        .replace("{needs}", &c.needs_operator.to_string())
        .replace("{total}", &c.total.to_string())
}

/// The window's title: the app's name, and how many accounts need a person when any do.
pub fn window_title(template: &str, c: &Counts) -> String {
    if c.needs_operator == 0 {
        "Lifeline".into()
    } else {
        template.replace("{needs}", &c.needs_operator.to_string())
    }
}

pub const ICON_SIZE: u32 = 32;

/// A 32×32 RGBA icon: a disc whose colour *and* mark tell the level (tick-free disc when
/// healthy, a bar when degraded, a ring with a hole when critical), so colour is not the only cue.
pub fn icon_rgba(level: Level) -> Vec<u8> {
    let (r, g, b) = match level {
        Level::Healthy => (0x16, 0xa3, 0x4a),
        Level::Degraded => (0xd9, 0x77, 0x06),
        Level::Critical => (0xdc, 0x26, 0x26),
    };
    let n = ICON_SIZE as i32;
    let mut px = Vec::with_capacity((ICON_SIZE * ICON_SIZE * 4) as usize);
    let c = (n - 1) as f32 / 2.0;
    for y in 0..n {
        for x in 0..n {
            let (dx, dy) = (x as f32 - c, y as f32 - c);
            let d = (dx * dx + dy * dy).sqrt();
            let inside = d <= c;
            let mark = match level {
                Level::Healthy => false,
                Level::Degraded => dy.abs() <= 2.5 && dx.abs() <= c - 6.0,
                Level::Critical => d <= c / 2.5,
            };
            if inside && !mark {
                px.extend_from_slice(&[r, g, b, 0xff]);
            } else if inside {
                px.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
            } else {
                px.extend_from_slice(&[0, 0, 0, 0]);
            }
        }
    }
    px
}

pub const MENU_SHOW: &str = "show";
pub const MENU_START_ALL: &str = "start-all";
pub const MENU_STOP_ALL: &str = "stop-all";
pub const MENU_QUIT: &str = "quit";

/// The tray, its menu items and the words the UI gave it.
pub struct Tray {
    icon: TrayIcon<Wry>,
    counts: MenuItem<Wry>,
    items: [MenuItem<Wry>; 4],
    state: std::sync::Mutex<(Option<Level>, TrayLabels, Counts)>,
}

impl std::fmt::Debug for Tray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tray").finish_non_exhaustive()
    }
}

impl Tray {
    /// Builds the tray once the UI has sent its words (it has none of its own).
    pub fn build(app: &AppHandle, labels: TrayLabels) -> tauri::Result<Self> {
        let counts = MenuItem::with_id(app, "counts", "…", false, None::<&str>)?;
        let item = |id: &str, text: &str| MenuItem::with_id(app, id, text, true, None::<&str>);
        let items = [
            item(MENU_SHOW, &labels.show_hide)?,
            item(MENU_START_ALL, &labels.start_all)?,
            item(MENU_STOP_ALL, &labels.stop_all)?,
            item(MENU_QUIT, &labels.quit)?,
        ];
        let menu = Menu::with_items(
            app,
            &[
                &counts,
                &PredefinedMenuItem::separator(app)?,
                &items[0],
                &items[1],
                &items[2],
                &PredefinedMenuItem::separator(app)?,
                &items[3],
            ],
        )?;
        let icon = TrayIconBuilder::with_id("lifeline")
            .icon(Image::new_owned(
                icon_rgba(Level::Healthy),
                ICON_SIZE,
                ICON_SIZE,
            ))
            .tooltip("Lifeline")
            .menu(&menu)
            // A left click shows or hides the window where the desktop reports clicks (Windows,
            // macOS); Linux panels open the menu on any click, with Show/Hide first.
            .show_menu_on_left_click(false)
            .on_tray_icon_event(|icon, event| {
                if let tauri::tray::TrayIconEvent::Click {
                    button: tauri::tray::MouseButton::Left,
                    button_state: tauri::tray::MouseButtonState::Up,
                    ..
                } = event
                {
                    toggle_main(icon.app_handle());
                }
            })
            .on_menu_event(|app, event| crate::on_tray_menu(app, event.id().as_ref()))
            .build(app)?;
        let empty = Counts::of_states([]);
        Ok(Self {
            icon,
            counts,
            items,
            state: std::sync::Mutex::new((None, labels, empty)),
        })
    }

    /// New words (the operator changed the language).
    pub fn relabel(&self, labels: TrayLabels) {
        let texts = [
            &labels.show_hide,
            &labels.start_all,
            &labels.stop_all,
            &labels.quit,
        ];
        for (item, text) in self.items.iter().zip(texts) {
            let _ = item.set_text(text);
        }
        let counts = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.1 = labels;
            // New words for the title and icon too.
            state.0 = None;
            state.2.clone()
        };
        self.update(&counts);
    }

    /// The one-time "still running in the tray" notice, in the operator's language.
    pub fn kept_running(&self) -> crate::api::NotificationText {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.1.kept_running.clone()
    }

    pub fn update(&self, counts: &Counts) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let text = summary(&state.1.summary, counts);
        let _ = self.counts.set_text(&text);
        let _ = self.icon.set_tooltip(Some(format!("Lifeline — {text}")));
        // The count of accounts that need a person: in the window's title and as the tray
        // icon's badge (the label a panel shows beside it), only when it changes.
        if state.2.needs_operator != counts.needs_operator || state.0.is_none() {
            let title = window_title(&state.1.title_needs, counts);
            if let Some(w) = self.icon.app_handle().get_webview_window("main") {
                let _ = w.set_title(&title);
            }
            let badge = (counts.needs_operator > 0).then(|| counts.needs_operator.to_string());
            let _ = self.icon.set_title(badge);
        }
        let now = counts.level();
        if state.0 != Some(now) {
            let _ =
                self.icon
                    .set_icon(Some(Image::new_owned(icon_rgba(now), ICON_SIZE, ICON_SIZE)));
            state.0 = Some(now);
        }
        state.2 = counts.clone();
    }
}

/// The name a panel's tray host (StatusNotifier watcher) owns on the session bus.
pub const WATCHER: &str = "org.kde.StatusNotifierWatcher";

/// Whether the desktop shows tray icons now. On Linux and the BSDs that takes a panel with a
/// StatusNotifier watcher on the session bus (asked each time: a panel may come or go);
/// Windows and macOS always have one.
pub async fn host_available() -> bool {
    #[cfg(all(unix, not(target_os = "macos")))]
    {
        // A bus that does not answer promptly counts as no panel (closing then quits).
        match tokio::time::timeout(std::time::Duration::from_secs(1), watcher_present()).await {
            Ok(Ok(present)) => present,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "no session bus to ask for a tray host");
                false
            }
            Err(_) => {
                tracing::warn!("the session bus did not say whether a tray host is running");
                false
            }
        }
    }
    #[cfg(not(all(unix, not(target_os = "macos"))))]
    {
        true
    }
}

#[cfg(all(unix, not(target_os = "macos")))]
async fn watcher_present() -> zbus::Result<bool> {
    let bus = zbus::Connection::session().await?;
    let dbus = zbus::fdo::DBusProxy::new(&bus).await?;
    let name = zbus::names::BusName::try_from(WATCHER)?;
    Ok(dbus.name_has_owner(name).await?)
}

/// Shows the main window if hidden (or minimised), hides it otherwise.
pub fn toggle_main(app: &AppHandle) {
    if let Some(w) = app.get_webview_window("main") {
        if w.is_visible().unwrap_or(false) && !w.is_minimized().unwrap_or(false) {
            let _ = w.hide();
        } else {
            let _ = w.show();
            let _ = w.unminimize();
            let _ = w.set_focus();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(connected: usize, down: usize, needs_operator: usize) -> Counts {
        use lifeline_engine::state::StateKind;
        let items = std::iter::repeat_n((StateKind::Connected, true), connected)
            .chain(std::iter::repeat_n((StateKind::Backoff, true), down))
            .chain(std::iter::repeat_n(
                (StateKind::NeedsOperator, true),
                needs_operator,
            ));
        Counts::of_states(items)
    }

    #[test]
    fn icons_differ_in_shape_not_only_colour() {
        let px = |l| icon_rgba(l);
        let white = |v: &[u8]| {
            v.chunks(4)
                .filter(|p| p == &[0xff, 0xff, 0xff, 0xff])
                .count()
        };
        assert_eq!(
            px(Level::Healthy).len(),
            (ICON_SIZE * ICON_SIZE * 4) as usize
        );
        assert_eq!(white(&px(Level::Healthy)), 0);
        assert!(white(&px(Level::Degraded)) > 20);
        assert!(white(&px(Level::Critical)) > 20);
        assert_ne!(px(Level::Degraded), px(Level::Critical));
        // Corners are transparent.
        assert_eq!(&px(Level::Healthy)[..4], &[0, 0, 0, 0]);
    }

    #[test]
    fn the_title_counts_who_needs_a_person_only_when_someone_does() {
        let template = "Lifeline — {needs} need you";
        assert_eq!(window_title(template, &counts(3, 1, 0)), "Lifeline");
        assert_eq!(
            window_title(template, &counts(3, 1, 2)),
            "Lifeline — 2 need you"
        );
    }

    #[test]
    fn the_ui_s_counts_template_is_filled_in() {
        let c = counts(3, 1, 1);
        assert_eq!(
            summary(
                "{connected} up · {recovering} recovering · {needs} need you · {total}",
                &c
            ),
            "3 up · 1 recovering · 1 need you · 5"
        );
    }
}
