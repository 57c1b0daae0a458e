//! Generates the UI's TypeScript contract from the Rust types and names, and fails when the
//! checked-in copy is stale: `UPDATE_BINDINGS=1 cargo test -p lifeline-desktop bindings` writes it.

use std::path::PathBuf;

use ts_rs::TS;

use crate::api::*;
use crate::error::{CommandError, ErrorCode};
use crate::names;

const HEADER: &str = "// Generated from src-tauri (api.rs, error.rs, names.rs) by\n// `UPDATE_BINDINGS=1 cargo test -p lifeline-desktop bindings`. Do not edit.\n";

fn decls() -> Vec<String> {
    vec![
        StateName::decl(),
        Kind::decl(),
        ReasonInfo::decl(),
        Owner::decl(),
        Card::decl(),
        Snapshot::decl(),
        FleetDelta::decl(),
        SettingsChanged::decl(),
        LinkRequest::decl(),
        NewAccountInput::decl(),
        LinkModeName::decl(),
        LinkInfo::decl(),
        AlertKind::decl(),
        AlertInfo::decl(),
        NotificationText::decl(),
        TrayLabels::decl(),
        IntervalInfo::decl(),
        EventInfo::decl(),
        HistoryInfo::decl(),
        LiveInfo::decl(),
        CountInfo::decl(),
        PolicyValues::decl(),
        PresetInfo::decl(),
        ExportWhat::decl(),
        ExportRequest::decl(),
        ExportProgress::decl(),
        ExportDone::decl(),
        Language::decl(),
        Theme::decl(),
        Prefs::decl(),
        WebhookInfo::decl(),
        DeliveryState::decl(),
        DeliveryInfo::decl(),
        NewWebhookInput::decl(),
        WebhookSecret::decl(),
        WebhookOff::decl(),
        FleetInstance::decl(),
        FleetStatus::decl(),
        FleetConnectInput::decl(),
        Connection::decl(),
        ErrorCode::decl(),
        CommandError::decl(),
    ]
}

pub fn api_ts() -> String {
    let mut out = String::from(HEADER);
    for d in decls() {
        out.push('\n');
        out.push_str("export ");
        out.push_str(d.trim());
        out.push('\n');
    }
    out
}

fn camel(snake: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

pub fn names_ts() -> String {
    let mut out = String::from(HEADER);
    out.push_str("\nexport const Command = {\n");
    for c in names::COMMANDS {
        out.push_str(&format!("  {}: \"{c}\",\n", camel(c)));
    }
    out.push_str("} as const;\n\nexport const Event = {\n");
    for (key, name) in names::EVENTS {
        out.push_str(&format!("  {key}: \"{name}\",\n"));
    }
    out.push_str("} as const;\n");
    out
}

/// The capability's permission set: one `allow-…` per command.
pub fn permissions_toml() -> String {
    let mut out = String::from(
        "# Generated from src-tauri/src/names.rs by `UPDATE_BINDINGS=1 cargo test -p lifeline-desktop bindings`.\n\
         [[set]]\nidentifier = \"allow-lifeline\"\ndescription = \"Every Lifeline command the UI calls, and no other.\"\npermissions = [\n",
    );
    for c in names::COMMANDS {
        out.push_str(&format!("  \"allow-{}\",\n", c.replace('_', "-")));
    }
    out.push_str("]\n");
    out
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn outputs() -> Vec<(PathBuf, String)> {
    vec![
        (root().join("../ui/src/generated/api.ts"), api_ts()),
        (root().join("../ui/src/generated/names.ts"), names_ts()),
        (root().join("permissions/lifeline.toml"), permissions_toml()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_are_current() {
        let update = std::env::var_os("UPDATE_BINDINGS").is_some();
        for (path, content) in outputs() {
            if update {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).expect("create dir");
                }
                std::fs::write(&path, &content).expect("write bindings");
                continue;
            }
            let current = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                current == content,
                "{} is stale: run `UPDATE_BINDINGS=1 cargo test -p lifeline-desktop bindings`",
                path.display()
            );
        }
    }

    #[test]
    fn command_names_become_camel_case_keys() {
        assert_eq!(camel("fleet_snapshot"), "fleetSnapshot");
        assert_eq!(camel("quit"), "quit");
        let ts = names_ts();
        assert!(
            ts.contains("  setAutorecover: \"set_autorecover\",\n"),
            "{ts}"
        );
        assert!(ts.contains("link: \"lifeline://link\""));
        assert!(ts.contains("watchFleet: \"watch_fleet\""));
    }

    #[test]
    fn the_api_declares_the_error_shape() {
        let ts = api_ts();
        assert!(
            ts.contains("export type CommandError = { code: ErrorCode, message: string, }"),
            "{ts}"
        );
    }
}
