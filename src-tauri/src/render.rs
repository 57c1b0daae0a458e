//! How the window is drawn on Linux and the BSDs. WebKitGTK composites the page with OpenGL.
//! Without a GPU (a virtual machine, a cloud desktop reached over VNC or RDP, an old laptop
//! without its driver) that OpenGL is Mesa's software rasteriser, and compositing through it
//! costs the CPU several times what painting the page directly does: with 1000 accounts
//! dropping and recovering, the longest frame took 200–560 ms composited and about a fifth of
//! that painted directly (ui/e2e/perf.test.mjs). Such machines are told to paint directly.

use std::path::Path;

/// WebKitGTK's own switch: set and not "0", the page is painted without compositing. An
/// operator who sets it (to either value) decides; Lifeline then leaves it alone.
pub const WEBKIT_NO_COMPOSITING: &str = "WEBKIT_DISABLE_COMPOSITING_MODE";

/// Whether this machine has a GPU that OpenGL can render on: a DRM render node
/// (`renderD128`, …) under `dri` (normally `/dev/dri`).
pub fn has_gpu(dri: &Path) -> bool {
    std::fs::read_dir(dri).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("renderD"))
    })
}

/// Whether the page should be painted without compositing: no GPU, and the operator has not
/// set WebKit's switch either way.
pub fn paint_directly(dri: &Path, operator_choice: Option<&std::ffi::OsStr>) -> bool {
    operator_choice.is_none() && !has_gpu(dri)
}

/// Chooses before WebKit starts. Must run while the process has one thread: it sets an
/// environment variable, which WebKit reads when it starts its web process.
#[cfg(all(unix, not(target_os = "macos")))]
#[allow(unsafe_code)] // std::env::set_var: safe only while no other thread runs (see below).
pub fn choose() {
    if paint_directly(
        Path::new("/dev/dri"),
        std::env::var_os(WEBKIT_NO_COMPOSITING).as_deref(),
    ) {
        // SAFETY: `run` calls this before it starts the async runtime; the logger writes on
        // the calling thread, so no other thread exists to read the environment meanwhile.
        unsafe { std::env::set_var(WEBKIT_NO_COMPOSITING, "1") };
        tracing::info!("no GPU found: the window is painted without compositing");
    }
}

/// Windows and macOS draw with the system's own compositor; nothing to choose.
#[cfg(not(all(unix, not(target_os = "macos"))))]
pub fn choose() {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn a_render_node_is_a_gpu_and_a_missing_or_card_only_dri_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(!has_gpu(&dir.path().join("absent")), "no dri directory");
        // A display controller alone (card0) cannot run OpenGL for WebKit.
        std::fs::write(dir.path().join("card0"), b"").expect("card0");
        assert!(!has_gpu(dir.path()));
        assert!(paint_directly(dir.path(), None));
        std::fs::write(dir.path().join("renderD128"), b"").expect("renderD128");
        assert!(has_gpu(dir.path()));
        assert!(!paint_directly(dir.path(), None));
    }

    #[test]
    fn the_operators_own_setting_wins_either_way() {
        let dir = tempfile::tempdir().expect("tempdir");
        // No GPU, but compositing asked for explicitly ("0"): left as it is.
        assert!(!paint_directly(dir.path(), Some(OsStr::new("0"))));
        assert!(!paint_directly(dir.path(), Some(OsStr::new("1"))));
    }
}
