//! The socket under the WhatsApp client. Without a proxy it is the library's own transport; with
//! one it is a tunnel through the hop the connector picked from the account's chain (opened in
//! advance, so a dead proxy is skipped before the client starts), then TLS and the WebSocket
//! upgrade on top, handed to the library with its `from_websocket`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use lifeline_engine::proxy::{self, Hop, Target};
use lifeline_engine::secrets::SecretStore;
use tokio::net::TcpStream;
use whatsapp_rust::transport::{
    Connector, TokioWebSocketTransportFactory, Transport, TransportEvent, TransportFactory,
    default_tls_connector, from_websocket,
};
use whatsapp_rust::wacore::net::WHATSAPP_WEB_ORIGIN;

type Opened = (Arc<dyn Transport>, async_channel::Receiver<TransportEvent>);

/// A proxy hop and how to reach the endpoint through it again.
#[derive(Debug)]
pub struct Routed {
    pub hop: Hop,
    pub tunnel: Mutex<Option<TcpStream>>,
    pub secrets: Arc<dyn SecretStore>,
    pub timeout: Duration,
}

pub enum LifelineTransport {
    /// The library's transport (it has no `Debug`; see the impl below).
    Direct(TokioWebSocketTransportFactory),
    Routed {
        url: String,
        routed: Box<Routed>,
    },
}

impl std::fmt::Debug for LifelineTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LifelineTransport::Direct(_) => f.write_str("LifelineTransport::Direct"),
            LifelineTransport::Routed { url, routed } => f
                .debug_struct("LifelineTransport::Routed")
                .field("url", url)
                .field("hop", &routed.hop.to_string())
                .finish(),
        }
    }
}

#[async_trait]
impl TransportFactory for LifelineTransport {
    async fn create_transport(&self) -> Result<Opened, anyhow::Error> {
        match self {
            LifelineTransport::Direct(f) => f.create_transport().await,
            LifelineTransport::Routed { url, routed } => routed_transport(url, routed).await,
        }
    }
}

async fn routed_transport(url: &str, routed: &Routed) -> Result<Opened, anyhow::Error> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| anyhow::anyhow!("bad WhatsApp URL: {e}"))?;
    let host = uri
        .host()
        .ok_or_else(|| anyhow::anyhow!("no host in the WhatsApp URL"))?
        .trim_matches(['[', ']'])
        .to_owned();
    let pre_opened = routed
        .tunnel
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    let stream = match pre_opened {
        Some(s) => s,
        None => {
            let target = Target::of_url(url)
                .ok_or_else(|| anyhow::anyhow!("no host in the WhatsApp URL"))?;
            let (s, _) = proxy::connect(
                std::slice::from_ref(&routed.hop),
                routed.secrets.clone(),
                &target,
                routed.timeout,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            s
        }
    };
    let tls = if uri.scheme_str() == Some("wss") {
        default_tls_connector()
    } else {
        Connector::Plain
    };
    let stream = tls
        .wrap(&host, stream)
        .await
        .map_err(|e| anyhow::anyhow!("TLS through the proxy: {e}"))?;
    let origin = http::HeaderValue::from_static(WHATSAPP_WEB_ORIGIN);
    let (ws, _) = tokio_websockets::ClientBuilder::from_uri(uri)
        .add_header(http::header::ORIGIN, origin)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .connect_on(stream)
        .await
        .map_err(|e| anyhow::anyhow!("WebSocket upgrade through the proxy: {e}"))?;
    Ok(from_websocket(ws))
}
