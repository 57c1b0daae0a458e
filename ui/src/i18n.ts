// Every word the desktop shows, in English and Bahasa Indonesia: the window, the alerts (and
// their desktop notifications) and the tray. The engine sends codes and parameters (reasons,
// alerts, counts); they become words only here. Keys are English-ish identifiers; `t()` fills
// `{name}` slots.

import { createContext } from "preact";
import { useContext } from "preact/hooks";

import type { AlertInfo, Language, ReasonInfo, StateName, TrayLabels } from "./generated/api";

const en = {
  appTitle: "Lifeline",
  "state.connected": "Connected",
  "state.connecting": "Connecting",
  "state.backoff": "Recovering",
  "state.paused": "Paused",
  "state.linking": "Linking",
  "state.needs_operator": "Needs you",
  "state.stopped": "Stopped",
  all: "All",
  accounts: "{n} accounts",
  autorecover: "Autorecover",
  autorecoverHelp: "Restore desired accounts when Lifeline starts",
  startAll: "Start all",
  stopAll: "Stop all",
  checkAll: "Check all",
  export: "Export CSV",
  addAccount: "Add account",
  settings: "Settings",
  search: "Search accounts",
  uptime: "Uptime 24 h",
  score: "Health",
  lastChange: "Last change",
  reconnects: "Reconnects",
  unstable: "Unstable",
  unstableHelp: "Keeps connecting and dropping. Lifeline backs off until the connection holds.",
  breaker: "Breaker",
  "breaker.closed": "closed",
  "breaker.open": "open",
  "breaker.half_open": "half-open",
  start: "Start",
  stop: "Stop",
  retry: "Retry now",
  resetBreaker: "Reset breaker",
  relink: "Relink",
  mute: "Mute",
  unmute: "Unmute",
  muted: "Muted",
  remove: "Remove",
  details: "Details",
  actionsFor: "{action} {name}",
  retryAt: "next try {time}",
  pausedUntil: "until {time}",
  confirmRemove: "Remove '{name}'? Its connection closes; its history stays in exports.",
  cancel: "Cancel",
  close: "Close",
  save: "Save",
  saved: "Saved.",
  back: "Back to accounts",
  noAccounts: "No accounts yet. Add one to start keeping it alive.",
  noMatch: "No account matches.",
  crashed: "The previous run did not stop cleanly; its open sessions were closed as crashed.",
  heldStopped: "{n} accounts stay stopped because autorecover is off.",
  // add account
  kind: "Kind",
  websocket: "WebSocket",
  whatsapp: "WhatsApp",
  name: "Name",
  url: "WebSocket URL",
  header: "Header name",
  headerSecret: "Header value from secret",
  noSecret: "(no header)",
  priority: "Priority (0–1000)",
  country: "Country (ISO code)",
  linkBy: "Link by",
  linkQr: "QR code",
  linkPhone: "Phone number code",
  phone: "Phone number (+62…)",
  add: "Add",
  // link modal
  linkTitle: "Link {name}",
  scanHelp: "On the phone: WhatsApp → Settings → Linked devices → Link a device, then scan.",
  pairHelp: "On the phone: Linked devices → Link with phone number instead, then type this code.",
  expiresIn: "Expires in {s} s",
  expired: "This code expired.",
  refresh: "New code",
  waitingCode: "Waiting for a code…",
  linked: "Linked. {name} is connected.",
  // detail
  timeline: "Connected intervals",
  last24h: "24 h",
  last7d: "7 days",
  events: "Event log",
  at: "Time",
  change: "Change",
  reason: "Reason",
  detail: "Detail",
  by: "By",
  "by.engine": "engine",
  "by.operator": "operator",
  "by.reconcile": "health check",
  "by.startup": "startup",
  noEvents: "No events in this window.",
  connectedShare: "Connected {pct}% of the window",
  // export
  exportTitle: "Export CSV",
  what: "What",
  sessions: "Sessions",
  eventsWhat: "Events",
  account: "Account",
  allAccounts: "All accounts",
  since: "Since",
  until: "Until",
  chooseAndExport: "Choose file and export",
  exporting: "Exporting… {rows} rows",
  exported: "Exported {rows} rows to {path}",
  // settings
  policy: "Recovery policy",
  policyHelp: "Saved values apply the next time Lifeline starts.",
  notifications: "Notifications",
  notificationsOn: "Show desktop notifications for alerts",
  secrets: "Secrets",
  secretsHelp: "Values go to the OS keyring and are never shown again.",
  secretName: "Secret name",
  secretValue: "Value",
  saveSecret: "Save to keyring",
  deleteSecret: "Delete {name}",
  secretSaved: "Secret '{name}' saved to the keyring.",
  language: "Language",
  theme: "Theme",
  "theme.system": "System",
  "theme.light": "Light",
  "theme.dark": "Dark",
  startAtLogin: "Start Lifeline at login",
  about: "About",
  aboutVersion: "Lifeline {version}",
  aboutData: "Data folder: {dir}",
  aboutKeep: "Uninstalling Lifeline keeps this folder; delete it yourself to remove every session and its history.",
  appearance: "Language and appearance",
  notANumber: "{key} must be a number.",
  unavailable: "Lifeline cannot supervise",
  alertTitle: "Alert",
  alertDownTitle: "{name} is down",
  alertDownBody: "Not recovered since {at} ({why}). Lifeline keeps retrying.",
  alertNeedsTitle: "{name} needs you",
  alertUnstableTitle: "{name} is unstable",
  alertUnstableBody: "Dropped {drops} times in {minutes} min, though it reconnects each time. Lifeline backs off; check the number's phone and network.",
  alertSummaryTitle: "{n} accounts need attention",
  alertSummaryBody: "{down} down, {needs} need the operator, {unstable} unstable: {names}…",
  unknownReason: "unknown",
  trayShowHide: "Show / hide",
  trayStartAll: "Start all",
  trayStopAll: "Stop all",
  trayQuit: "Quit Lifeline",
  traySummary: "{connected} connected · {recovering} recovering · {needs} need you · {total} accounts",
  dismiss: "Dismiss",
} as const;

export type Key = keyof typeof en;

const id: Record<Key, string> = {
  appTitle: "Lifeline",
  "state.connected": "Terhubung",
  "state.connecting": "Menghubungkan",
  "state.backoff": "Memulihkan",
  "state.paused": "Dijeda",
  "state.linking": "Menautkan",
  "state.needs_operator": "Perlu tindakan",
  "state.stopped": "Berhenti",
  all: "Semua",
  accounts: "{n} akun",
  autorecover: "Pulihkan otomatis",
  autorecoverHelp: "Pulihkan akun yang diinginkan saat Lifeline mulai",
  startAll: "Mulai semua",
  stopAll: "Hentikan semua",
  checkAll: "Periksa semua",
  export: "Ekspor CSV",
  addAccount: "Tambah akun",
  settings: "Pengaturan",
  search: "Cari akun",
  uptime: "Waktu aktif 24 jam",
  score: "Kesehatan",
  lastChange: "Perubahan terakhir",
  reconnects: "Sambung ulang",
  unstable: "Tidak stabil",
  unstableHelp: "Terus tersambung lalu putus. Lifeline memperlambat percobaan sampai koneksinya bertahan.",
  breaker: "Pemutus",
  "breaker.closed": "tertutup",
  "breaker.open": "terbuka",
  "breaker.half_open": "setengah terbuka",
  start: "Mulai",
  stop: "Hentikan",
  retry: "Coba sekarang",
  resetBreaker: "Atur ulang pemutus",
  relink: "Tautkan ulang",
  mute: "Bisukan",
  unmute: "Bunyikan",
  muted: "Dibisukan",
  remove: "Hapus",
  details: "Rincian",
  actionsFor: "{action} {name}",
  retryAt: "coba lagi {time}",
  pausedUntil: "sampai {time}",
  confirmRemove: "Hapus '{name}'? Koneksinya ditutup; riwayatnya tetap ada di ekspor.",
  cancel: "Batal",
  close: "Tutup",
  save: "Simpan",
  saved: "Tersimpan.",
  back: "Kembali ke akun",
  noAccounts: "Belum ada akun. Tambahkan satu agar tetap hidup.",
  noMatch: "Tidak ada akun yang cocok.",
  crashed: "Sesi sebelumnya tidak berhenti dengan bersih; sesi terbukanya ditutup sebagai crash.",
  heldStopped: "{n} akun tetap berhenti karena pemulihan otomatis mati.",
  kind: "Jenis",
  websocket: "WebSocket",
  whatsapp: "WhatsApp",
  name: "Nama",
  url: "URL WebSocket",
  header: "Nama header",
  headerSecret: "Nilai header dari rahasia",
  noSecret: "(tanpa header)",
  priority: "Prioritas (0–1000)",
  country: "Negara (kode ISO)",
  linkBy: "Tautkan dengan",
  linkQr: "Kode QR",
  linkPhone: "Kode nomor telepon",
  phone: "Nomor telepon (+62…)",
  add: "Tambah",
  linkTitle: "Tautkan {name}",
  scanHelp: "Di ponsel: WhatsApp → Setelan → Perangkat tertaut → Tautkan perangkat, lalu pindai.",
  pairHelp: "Di ponsel: Perangkat tertaut → Tautkan dengan nomor telepon, lalu ketik kode ini.",
  expiresIn: "Kedaluwarsa dalam {s} dtk",
  expired: "Kode ini kedaluwarsa.",
  refresh: "Kode baru",
  waitingCode: "Menunggu kode…",
  linked: "Tertaut. {name} terhubung.",
  timeline: "Interval terhubung",
  last24h: "24 jam",
  last7d: "7 hari",
  events: "Log peristiwa",
  at: "Waktu",
  change: "Perubahan",
  reason: "Alasan",
  detail: "Rincian",
  by: "Oleh",
  "by.engine": "mesin",
  "by.operator": "operator",
  "by.reconcile": "pemeriksaan",
  "by.startup": "saat mulai",
  noEvents: "Tidak ada peristiwa di rentang ini.",
  connectedShare: "Terhubung {pct}% dari rentang",
  exportTitle: "Ekspor CSV",
  what: "Data",
  sessions: "Sesi",
  eventsWhat: "Peristiwa",
  account: "Akun",
  allAccounts: "Semua akun",
  since: "Sejak",
  until: "Sampai",
  chooseAndExport: "Pilih berkas dan ekspor",
  exporting: "Mengekspor… {rows} baris",
  exported: "{rows} baris diekspor ke {path}",
  policy: "Kebijakan pemulihan",
  policyHelp: "Nilai yang disimpan berlaku saat Lifeline mulai berikutnya.",
  notifications: "Notifikasi",
  notificationsOn: "Tampilkan notifikasi desktop untuk peringatan",
  secrets: "Rahasia",
  secretsHelp: "Nilai disimpan di keyring OS dan tidak pernah ditampilkan lagi.",
  secretName: "Nama rahasia",
  secretValue: "Nilai",
  saveSecret: "Simpan ke keyring",
  deleteSecret: "Hapus {name}",
  secretSaved: "Rahasia '{name}' disimpan ke keyring.",
  language: "Bahasa",
  theme: "Tema",
  "theme.system": "Sistem",
  "theme.light": "Terang",
  "theme.dark": "Gelap",
  startAtLogin: "Jalankan Lifeline saat masuk",
  about: "Tentang",
  aboutVersion: "Lifeline {version}",
  aboutData: "Folder data: {dir}",
  aboutKeep: "Menghapus instalasi Lifeline tidak menghapus folder ini; hapus sendiri untuk menghapus semua sesi dan riwayatnya.",
  appearance: "Bahasa dan tampilan",
  notANumber: "{key} harus berupa angka.",
  unavailable: "Lifeline tidak dapat mengawasi",
  alertTitle: "Peringatan",
  alertDownTitle: "{name} terputus",
  alertDownBody: "Belum pulih sejak {at} ({why}). Lifeline terus mencoba.",
  alertNeedsTitle: "{name} perlu tindakan Anda",
  alertUnstableTitle: "{name} tidak stabil",
  alertUnstableBody: "Terputus {drops} kali dalam {minutes} menit, walau selalu tersambung lagi. Lifeline memperlambat percobaan; periksa ponsel dan jaringan nomor ini.",
  alertSummaryTitle: "{n} akun bermasalah",
  alertSummaryBody: "{down} terputus, {needs} perlu tindakan, {unstable} tidak stabil: {names}…",
  unknownReason: "tidak diketahui",
  trayShowHide: "Tampilkan / sembunyikan",
  trayStartAll: "Mulai semua",
  trayStopAll: "Hentikan semua",
  trayQuit: "Keluar dari Lifeline",
  traySummary: "{connected} terhubung · {recovering} memulihkan · {needs} perlu tindakan · {total} akun",
  dismiss: "Tutup",
};

// Reasons in words. `code.status`, `code.code` and `code.until` are the variants with a
// parameter: the HTTP status of a refusal, the close code of a server-side close, a ban's end.
const reasonsEn: Record<string, string> = {
  timeout: "timed out",
  refused: "connection refused",
  "refused.status": "refused by the server (HTTP {status})",
  "closed-by-peer": "closed by the server",
  "closed-by-peer.code": "closed by the server (code {code})",
  stalled: "server stopped answering keepalives",
  network: "network error",
  stale: "shown connected but the connection was dead",
  "logged-out": "logged out on the phone — scan a new QR code to link it again",
  replaced: "another device took over this number — relink here only if that was not intended",
  banned: "temporarily banned",
  "banned.until": "temporarily banned until {until}",
  outdated: "this Lifeline version is refused — update Lifeline",
  "credentials-missing": "a secret it needs is missing — set it in the keyring",
  "rate-limited": "rate limited by the server",
  "breaker-open": "too many failures — waiting before trying again",
  "qr-expired": "QR expired — request a new one",
  "pairing-failed": "linking failed — request a new QR or pair code",
  operator: "by the operator",
  "autorecover-off": "autorecover is off — start it by hand",
  shutdown: "Lifeline was shut down",
  removed: "account removed",
  crashed: "Lifeline stopped unexpectedly",
  unsupported: "this Lifeline cannot connect accounts of this kind — update Lifeline",
  "restart-required": "the server asked for a reconnect",
  "not-linked": "not linked yet — link it with a QR code or a pair code",
};

const reasonsId: Record<string, string> = {
  timeout: "waktu habis",
  refused: "koneksi ditolak",
  "refused.status": "ditolak oleh server (HTTP {status})",
  "closed-by-peer": "ditutup oleh server",
  "closed-by-peer.code": "ditutup oleh server (kode {code})",
  stalled: "server berhenti menjawab keepalive",
  network: "kesalahan jaringan",
  stale: "tampak terhubung tetapi koneksinya mati",
  "logged-out": "keluar di ponsel — pindai kode QR baru untuk menautkan lagi",
  replaced: "perangkat lain mengambil alih nomor ini — tautkan ulang hanya jika itu tidak disengaja",
  banned: "diblokir sementara",
  "banned.until": "diblokir sementara sampai {until}",
  outdated: "versi Lifeline ini ditolak — perbarui Lifeline",
  "credentials-missing": "rahasia yang dibutuhkan tidak ada — simpan di keyring",
  "rate-limited": "dibatasi oleh server",
  "breaker-open": "terlalu banyak kegagalan — menunggu sebelum mencoba lagi",
  "qr-expired": "QR kedaluwarsa — minta yang baru",
  "pairing-failed": "penautan gagal — minta QR atau kode baru",
  operator: "oleh operator",
  "autorecover-off": "pemulihan otomatis mati — mulai secara manual",
  shutdown: "Lifeline dimatikan",
  removed: "akun dihapus",
  crashed: "Lifeline berhenti tiba-tiba",
  unsupported: "Lifeline ini tidak dapat menghubungkan akun jenis ini — perbarui Lifeline",
  "restart-required": "server meminta sambung ulang",
  "not-linked": "belum ditautkan — tautkan dengan kode QR atau kode pasangan",
};

const tables: Record<Language, Record<Key, string>> = { en, id };

export type T = (key: Key, vars?: Record<string, string | number>) => string;

export function translator(lang: Language): T {
  const table = tables[lang] ?? en;
  return (key, vars) => {
    let s: string = table[key] ?? en[key] ?? key;
    if (vars) for (const [k, v] of Object.entries(vars)) s = s.replaceAll(`{${k}}`, String(v));
    return s;
  };
}

function fill(s: string, vars: Record<string, string | number>): string {
  for (const [k, v] of Object.entries(vars)) s = s.replaceAll(`{${k}}`, String(v));
  return s;
}

/** A reason code and its parameter in the operator's language. */
export function reasonText(reason: ReasonInfo, lang: Language): string {
  const table = lang === "id" ? reasonsId : reasonsEn;
  const [variant, vars]: [string, Record<string, string | number>] =
    reason.status != null
      ? ["status", { status: reason.status }]
      : reason.close_code != null
        ? ["code", { code: reason.close_code }]
        : reason.until != null
          ? ["until", { until: formatUtc(reason.until) }]
          : ["", {}];
  const key = variant ? `${reason.code}.${variant}` : reason.code;
  return fill(table[key] ?? table[reason.code] ?? reasonsEn[key] ?? reason.code, vars);
}

/** `2026-11-01 08:00 UTC` from an RFC 3339 UTC time. */
function formatUtc(rfc3339: string): string {
  return `${rfc3339.slice(0, 10)} ${rfc3339.slice(11, 16)} UTC`;
}

/** An alert in words, for the banner and the desktop notification. */
export function alertText(a: AlertInfo, t: T, lang: Language): { title: string; body: string } {
  const why = a.reason ? reasonText(a.reason, lang) : t("unknownReason");
  switch (a.kind) {
    case "down":
      return {
        title: t("alertDownTitle", { name: a.name ?? "" }),
        body: t("alertDownBody", { at: a.since ? `${a.since.slice(11, 16)} UTC` : "", why }),
      };
    case "needs_operator":
      return { title: t("alertNeedsTitle", { name: a.name ?? "" }), body: why };
    case "unstable":
      return {
        title: t("alertUnstableTitle", { name: a.name ?? "" }),
        body: t("alertUnstableBody", { drops: a.drops, minutes: Math.max(1, Math.round(a.window_s / 60)) }),
      };
    case "summary":
      return {
        title: t("alertSummaryTitle", { n: a.down + a.needs_operator + a.unstable }),
        body: t("alertSummaryBody", {
          down: a.down,
          needs: a.needs_operator,
          unstable: a.unstable,
          names: a.examples.join(", "),
        }),
      };
  }
}

/** The tray's words. */
export function trayLabels(t: T): TrayLabels {
  return {
    show_hide: t("trayShowHide"),
    start_all: t("trayStartAll"),
    stop_all: t("trayStopAll"),
    quit: t("trayQuit"),
    summary: t("traySummary"),
  };
}

export function stateLabel(t: T, s: StateName): string {
  return t(`state.${s}` as Key);
}

export const I18n = createContext<{ t: T; lang: Language }>({ t: translator("en"), lang: "en" });
export const useI18n = () => useContext(I18n);
