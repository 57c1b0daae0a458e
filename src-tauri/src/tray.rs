//! The tray: an icon whose colour and shape follow fleet health, a counts line, show/hide,
//! start all / stop all, quit. The decisions (level, text, pixels) are pure and tested; the rest
//! is Tauri plumbing.

use lifeline_engine::state::StateKind;
use lifeline_engine::supervisor::AccountView;
use tauri::image::Image;
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Manager, Wry};

use crate::api::Language;

/// Fleet counts for the tray and its icon.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: usize,
    pub connected: usize,
    /// Desired running but not connected (connecting, backoff, paused, linking).
    pub down: usize,
    pub needs_operator: usize,
}

impl Counts {
    pub fn of<'a>(views: impl IntoIterator<Item = &'a AccountView>) -> Self {
        let mut c = Counts::default();
        for v in views {
            c.total += 1;
            match v.state.kind() {
                StateKind::Connected => c.connected += 1,
                StateKind::NeedsOperator => c.needs_operator += 1,
                _ if v.desired_running => c.down += 1,
                _ => {}
            }
        }
        c
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Every desired account is connected.
    Healthy,
    /// Some are recovering.
    Degraded,
    /// A person is needed, or most of the fleet is down.
    Critical,
}

pub fn level(c: &Counts) -> Level {
    if c.needs_operator > 0 || (c.down > 0 && c.down * 2 >= c.down + c.connected) {
        Level::Critical
    } else if c.down > 0 {
        Level::Degraded
    } else {
        Level::Healthy
    }
}

pub fn summary(c: &Counts, lang: Language) -> String {
    match lang {
        Language::En => format!(
            "{} connected · {} recovering · {} need you · {} accounts",
            c.connected, c.down, c.needs_operator, c.total
        ),
        Language::Id => format!(
            "{} terhubung · {} memulihkan · {} perlu tindakan · {} akun",
            c.connected, c.down, c.needs_operator, c.total
        ),
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

/// The tray and the menu line that shows the counts.
pub struct Tray {
    icon: TrayIcon<Wry>,
    counts: MenuItem<Wry>,
    level: std::sync::Mutex<Option<Level>>,
}

impl std::fmt::Debug for Tray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tray").finish_non_exhaustive()
    }
}

impl Tray {
    pub fn build(app: &AppHandle) -> tauri::Result<Self> {
        let counts = MenuItem::with_id(app, "counts", "…", false, None::<&str>)?;
        let menu = Menu::with_items(
            app,
            &[
                &counts,
                &PredefinedMenuItem::separator(app)?,
                &MenuItem::with_id(app, MENU_SHOW, "Show / hide", true, None::<&str>)?,
                &MenuItem::with_id(app, MENU_START_ALL, "Start all", true, None::<&str>)?,
                &MenuItem::with_id(app, MENU_STOP_ALL, "Stop all", true, None::<&str>)?,
                &PredefinedMenuItem::separator(app)?,
                &MenuItem::with_id(app, MENU_QUIT, "Quit Lifeline", true, None::<&str>)?,
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
            .on_menu_event(|app, event| crate::on_tray_menu(app, event.id().as_ref()))
            .build(app)?;
        Ok(Self {
            icon,
            counts,
            level: std::sync::Mutex::new(None),
        })
    }

    pub fn update(&self, counts: &Counts, lang: Language) {
        let text = summary(counts, lang);
        let _ = self.counts.set_text(&text);
        let _ = self.icon.set_tooltip(Some(format!("Lifeline — {text}")));
        let now = level(counts);
        let mut last = self.level.lock().unwrap_or_else(|p| p.into_inner());
        if *last != Some(now) {
            let _ =
                self.icon
                    .set_icon(Some(Image::new_owned(icon_rgba(now), ICON_SIZE, ICON_SIZE)));
            *last = Some(now);
        }
    }
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
        Counts {
            total: connected + down + needs_operator,
            connected,
            down,
            needs_operator,
        }
    }

    #[test]
    fn level_follows_the_fleet() {
        assert_eq!(level(&counts(10, 0, 0)), Level::Healthy);
        assert_eq!(level(&Counts::default()), Level::Healthy);
        assert_eq!(level(&counts(9, 1, 0)), Level::Degraded);
        assert_eq!(
            level(&counts(5, 5, 0)),
            Level::Critical,
            "half the fleet down"
        );
        assert_eq!(
            level(&counts(10, 0, 1)),
            Level::Critical,
            "a person is needed"
        );
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
    fn summary_counts_in_both_languages() {
        let c = counts(3, 1, 1);
        assert_eq!(
            summary(&c, Language::En),
            "3 connected · 1 recovering · 1 need you · 5 accounts"
        );
        assert!(summary(&c, Language::Id).starts_with("3 terhubung"));
    }
}
