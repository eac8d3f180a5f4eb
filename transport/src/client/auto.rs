//! `Transport::Auto`: HTTP/3 when the server is known to offer it, HTTP/2 otherwise.
//!
//! - Known (configured with `Endpoint::h3_port`, or learnt from an `Alt-Svc` header, RFC 7838, and
//!   cached for its `ma`): QUIC is tried first and TCP+TLS starts after a short head start
//!   (happy-eyeballs style, as RFC 8305 does for address families); whichever connects first wins.
//! - Unknown: HTTP/2. When an HTTP/2 response advertises `h3`, a QUIC connection is opened in the
//!   background and later calls move to it.
//! - QUIC that fails (UDP blocked: no answer, ICMP unreachable) marks HTTP/3 unusable for
//!   [`RETRY_H3_AFTER`]; calls stay on HTTP/2 meanwhile, then HTTP/3 is tried again.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::{Request, Response};
use tokio::time::Instant;
use tonic::Status;

use super::Endpoint;
use super::alt_svc::{self, AltSvc};
use crate::Transport;
use crate::body::RequestBody;
use crate::client::channel::SendError;
use crate::error::Error;
use crate::h2::client::{H2Body, H2Connection};
use crate::h3::client::{H3Connection, ResponseBody as H3Body};

/// How long HTTP/3 is left alone after it failed.
pub(crate) const RETRY_H3_AFTER: Duration = Duration::from_secs(60);

/// The response body of whichever wire carried the call.
// Not boxed here: tonic boxes the whole response body once anyway.
#[allow(clippy::large_enum_variant)]
pub(crate) enum AutoBody {
    H2(H2Body),
    H3(H3Body),
}

impl http_body::Body for AutoBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Status>>> {
        match self.get_mut() {
            AutoBody::H2(b) => std::pin::Pin::new(b).poll_frame(cx),
            AutoBody::H3(b) => std::pin::Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            AutoBody::H2(b) => b.is_end_stream(),
            AutoBody::H3(b) => b.is_end_stream(),
        }
    }
}

struct State {
    active: Transport,
    h3: Option<(u16, Arc<H3Connection>)>,
    h3_blocked_until: Option<Instant>,
    probing: bool,
}

pub(crate) struct AutoConnection {
    endpoint: Endpoint,
    authority: String,
    h2: H2Connection,
    state: Mutex<State>,
}

impl AutoConnection {
    pub(crate) fn new(endpoint: &Endpoint) -> Result<Self, Error> {
        Ok(AutoConnection {
            h2: H2Connection::new(endpoint)?,
            authority: endpoint.authority.to_string(),
            endpoint: endpoint.clone(),
            state: Mutex::new(State {
                active: Transport::H2,
                h3: None,
                h3_blocked_until: None,
                probing: false,
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The HTTP/3 connection, once one was made.
    fn h3(&self) -> Option<Arc<H3Connection>> {
        self.state().h3.as_ref().map(|(_, c)| c.clone())
    }

    pub(crate) fn transport_in_use(&self) -> Transport {
        self.state().active
    }

    /// Whether the wire calls use now has a live connection (never connects).
    pub(crate) fn is_connected(&self) -> bool {
        match self.transport_in_use() {
            Transport::H3 => self.h3().is_some_and(|h3| h3.is_connected()),
            _ => self.h2.is_connected(),
        }
    }

    /// The path of the connection calls use now.
    pub(crate) fn path_stats(&self) -> Option<crate::PathStats> {
        match self.transport_in_use() {
            Transport::H3 => self.h3()?.path_stats(),
            _ => self.h2.path_stats(),
        }
    }

    /// The HTTP/3 port to try, unless HTTP/3 failed recently or the origin is plain http.
    fn known_h3_port(&self) -> Option<u16> {
        if self.endpoint.scheme != http::uri::Scheme::HTTPS {
            return None;
        }
        let state = self.state();
        if state.h3_blocked_until.is_some_and(|t| t > Instant::now()) {
            return None;
        }
        self.endpoint
            .h3_port
            .or_else(|| alt_svc::lookup(&self.authority))
    }

    fn h3_for(&self, port: u16) -> Result<Arc<H3Connection>, Error> {
        let mut state = self.state();
        if let Some((p, conn)) = &state.h3
            && *p == port
        {
            return Ok(conn.clone());
        }
        let mut endpoint = self.endpoint.clone();
        endpoint.port = port;
        if let Some(addr) = &mut endpoint.connect_addr {
            addr.set_port(port);
        }
        let conn = Arc::new(H3Connection::new(&endpoint)?);
        state.h3 = Some((port, conn.clone()));
        Ok(conn)
    }

    fn switch(&self, to: Transport) {
        let mut state = self.state();
        if state.active != to {
            tracing::info!(authority = %self.authority, transport = %to, "grpc-h3 Auto now uses {to}");
            state.active = to;
        }
    }

    fn block_h3(&self, why: &Error) {
        tracing::info!(authority = %self.authority, error = %why, "HTTP/3 unavailable; staying on HTTP/2");
        let mut state = self.state();
        state.h3_blocked_until = Some(Instant::now() + RETRY_H3_AFTER);
        state.active = Transport::H2;
    }

    /// Connects the preferred wire now (racing QUIC against TCP when HTTP/3 is known).
    pub(crate) async fn connect_now(&self) -> Result<(), Error> {
        match self.known_h3_port() {
            Some(port) => self.race(port).await,
            None => {
                self.h2.connect_now().await?;
                self.switch(Transport::H2);
                Ok(())
            }
        }
    }

    async fn race(&self, port: u16) -> Result<(), Error> {
        let h3 = self.h3_for(port)?;
        let quic = h3.connect_now();
        let tcp = async {
            tokio::time::sleep(self.endpoint.auto_head_start).await;
            self.h2.connect_now().await
        };
        tokio::pin!(quic, tcp);
        tokio::select! {
            r = &mut quic => match r {
                Ok(()) => {
                    self.switch(Transport::H3);
                    Ok(())
                }
                Err(e) => {
                    self.block_h3(&e);
                    tcp.await
                }
            },
            r = &mut tcp => match r {
                Ok(()) => {
                    // TCP won the race: use it, and leave HTTP/3 for later.
                    self.block_h3(&Error::new(crate::error::Kind::ConnectTimeout).context("QUIC lost the race to TCP"));
                    Ok(())
                }
                Err(tcp_err) => match quic.await {
                    Ok(()) => {
                        self.switch(Transport::H3);
                        Ok(())
                    }
                    Err(quic_err) => {
                        self.block_h3(&quic_err);
                        Err(tcp_err)
                    }
                },
            },
        }
    }

    /// Moves the HTTP/3 connection's UDP socket to `socket` (QUIC migration, RFC 9000 §9); the
    /// HTTP/2 connection is untouched (TCP cannot migrate).
    pub(crate) fn rebind(&self, socket: std::net::UdpSocket) -> Result<(), Error> {
        let h3 = self.h3();
        match h3 {
            Some(h3) => h3.rebind(socket),
            None => Err(Error::new(crate::error::Kind::Unsupported)
                .context("this Auto channel has no HTTP/3 connection to rebind")),
        }
    }

    pub(crate) async fn send(
        self: &Arc<Self>,
        req: Request<RequestBody>,
    ) -> Result<Response<AutoBody>, SendError> {
        if self.transport_in_use() == Transport::H3 {
            let h3 = self.h3();
            if let Some(h3) = h3 {
                // A lost QUIC path fails here, before the request is committed to it.
                match h3.connect_now().await {
                    Ok(()) => return Ok(h3.send(req).await?.map(AutoBody::H3)),
                    Err(e) => self.block_h3(&e),
                }
            }
        }
        let response = self.h2.send(req).await?;
        self.learn(&response);
        Ok(response.map(AutoBody::H2))
    }

    /// Reads `Alt-Svc` from an HTTP/2 response and, when HTTP/3 is offered, connects to it in the
    /// background so later calls can move over.
    fn learn<B>(self: &Arc<Self>, response: &Response<B>) {
        let Some(alt) = response
            .headers()
            .get(http::header::ALT_SVC)
            .and_then(|v| v.to_str().ok())
            .and_then(alt_svc::parse)
        else {
            return;
        };
        alt_svc::learn(&self.authority, alt);
        let AltSvc::H3 { port, .. } = alt else {
            return;
        };
        {
            let mut state = self.state();
            let blocked = state.h3_blocked_until.is_some_and(|t| t > Instant::now());
            if state.probing || blocked || state.active == Transport::H3 {
                return;
            }
            state.probing = true;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let result = match this.h3_for(port) {
                Ok(h3) => h3.connect_now().await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => this.switch(Transport::H3),
                Err(e) => this.block_h3(&e),
            }
            this.state().probing = false;
        });
    }
}
