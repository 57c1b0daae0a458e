//! Adding and linking accounts: what the UI sends, and the code it shows while linking.

use lifeline_engine::connector::{LinkCode, LinkMode};
use lifeline_engine::time::rfc3339;
use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::Kind;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, TS)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum LinkRequest {
    Qr,
    PhoneCode { phone: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, TS)]
pub struct NewAccountInput {
    pub kind: Kind,
    pub name: String,
    /// A WebSocket account's URL, or the creator a TikTok account watches (`@name`).
    pub url: Option<String>,
    /// WebSocket only: a header sent on connect, valued from a named keyring secret.
    pub header_name: Option<String>,
    pub header_secret: Option<String>,
    #[ts(type = "number | null")]
    pub priority: Option<i64>,
    pub country: Option<String>,
    /// WhatsApp only: how to link right after adding.
    pub link: Option<LinkRequest>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum LinkModeName {
    Qr,
    PhoneCode,
}

/// A code to show while linking. QR codes arrive as a ready SVG drawing; the raw payload is
/// not sent on its own.
#[derive(Clone, PartialEq, Eq, Serialize, TS)]
pub struct LinkInfo {
    #[ts(type = "number")]
    pub account: i64,
    pub mode: LinkModeName,
    pub qr_svg: Option<String>,
    /// The 8-character pair code (phone mode).
    pub code: Option<String>,
    pub phone: Option<String>,
    pub expires_at: String,
}

impl std::fmt::Debug for LinkInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkInfo")
            .field("account", &self.account)
            .field("mode", &self.mode)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Turns a link code into what the modal shows: QR payloads are drawn as SVG here.
pub fn link_info(account: i64, code: &LinkCode) -> Result<LinkInfo, qrcode::types::QrError> {
    Ok(match &code.mode {
        LinkMode::Qr => {
            let qr = qrcode::QrCode::new(code.code.as_bytes())?;
            let svg = qr
                .render::<qrcode::render::svg::Color<'_>>()
                .min_dimensions(256, 256)
                .quiet_zone(true)
                .dark_color(qrcode::render::svg::Color("#000000"))
                .light_color(qrcode::render::svg::Color("#ffffff"))
                .build();
            LinkInfo {
                account,
                mode: LinkModeName::Qr,
                qr_svg: Some(svg),
                code: None,
                phone: None,
                expires_at: rfc3339(code.expires_at),
            }
        }
        LinkMode::PhoneCode { phone } => LinkInfo {
            account,
            mode: LinkModeName::PhoneCode,
            qr_svg: None,
            code: Some(code.code.clone()),
            phone: Some(phone.clone()),
            expires_at: rfc3339(code.expires_at),
        },
    })
}
