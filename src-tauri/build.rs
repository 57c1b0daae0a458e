//! Declares the app's commands to Tauri (each gets an `allow-…` permission that the main
//! capability grants through the `allow-lifeline` set) from the one list in `src/names.rs`.

#[path = "src/names.rs"]
#[allow(dead_code)]
mod names;

fn main() {
    let attributes = tauri_build::Attributes::new()
        .app_manifest(tauri_build::AppManifest::new().commands(names::COMMANDS));
    if let Err(e) = tauri_build::try_build(attributes) {
        panic!("tauri-build failed: {e:#}");
    }
}
