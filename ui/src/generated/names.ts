// Generated from src-tauri (api.rs, error.rs, names.rs) by
// `UPDATE_BINDINGS=1 cargo test -p lifeline-desktop bindings`. Do not edit.

export const Command = {
  fleetSnapshot: "fleet_snapshot",
  watchFleet: "watch_fleet",
  addAccount: "add_account",
  removeAccount: "remove_account",
  startAccount: "start_account",
  stopAccount: "stop_account",
  retryAccount: "retry_account",
  resetBreaker: "reset_breaker",
  setMuted: "set_muted",
  relinkAccount: "relink_account",
  startAll: "start_all",
  stopAll: "stop_all",
  checkAll: "check_all",
  setAutorecover: "set_autorecover",
  accountHistory: "account_history",
  getPolicy: "get_policy",
  setPolicy: "set_policy",
  listSecrets: "list_secrets",
  setSecret: "set_secret",
  deleteSecret: "delete_secret",
  chooseExportPath: "choose_export_path",
  exportCsv: "export_csv",
  getPrefs: "get_prefs",
  setPrefs: "set_prefs",
  quit: "quit",
  notify: "notify",
  setTrayLabels: "set_tray_labels",
} as const;

export const Event = {
  link: "lifeline://link",
  alert: "lifeline://alert",
  exportProgress: "lifeline://export-progress",
  settings: "lifeline://settings",
} as const;
