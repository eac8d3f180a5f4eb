//! The in-process servers of a loopback run: grpc-h3 (HTTP/2 on TCP and HTTP/3 on UDP, same port)
//! and tonic-h3, each once without and once with per-RPC auth, all serving the same handlers
//! (`zone.v1.Zones` over one shared [`ZoneStore`], grpc's `TestService`) with the same dev
//! certificates.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use dev_certs::DevCerts;
use grpc_h3::{Server, ServerTls, Wires};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::Routes;
use zone_server::auth::{AuthLayer, Users};
use zone_server::interop::test_service;
use zone_server::zones::{ZoneStore, synthetic_zone, zones_server};

use crate::cli::Settings;
use crate::peer::{PeerServer, WithAuth};
use crate::scenarios::{PUSH_ZONE, PUSH_ZONE_RECORDS, TRANSFER_ZONE};
use crate::target::{Addrs, AuthTarget, Target};

/// The one user of the auth servers, allowed every benchmarked method.
pub const BENCH_USER: &str = "bench";
const BENCH_PASSWORD: &str = "bench-password-not-secret";
/// Calls still open at shutdown are abandoned after this long (the run is over).
const DRAIN: Duration = Duration::from_secs(1);
const BENCH_RIGHTS: [&str; 2] = ["zone.v1.Zones/*", "grpc.testing.TestService/*"];

/// The zones the scenarios use: a synthetic zone of `settings.zone_records` records for
/// transfers and a small one that pushes edit. Servers started elsewhere (netlab) load the same.
pub fn bench_store(settings: &Settings) -> anyhow::Result<ZoneStore> {
    let store = ZoneStore::new();
    let origin = TRANSFER_ZONE.trim_end_matches('.');
    store
        .insert_zone_text(origin, &synthetic_zone(origin, settings.zone_records, 1))
        .context("loading the transfer zone")?;
    let origin = PUSH_ZONE.trim_end_matches('.');
    store
        .insert_zone_text(origin, &synthetic_zone(origin, PUSH_ZONE_RECORDS, 2))
        .context("loading the push zone")?;
    Ok(store)
}

/// A users set with [`BENCH_USER`] (argon2id-hashed, as a users file holds it) and the matching
/// `authorization` header value.
pub fn bench_users() -> anyhow::Result<(Users, String)> {
    let mut users = Users::new();
    users.add(
        BENCH_USER,
        BENCH_PASSWORD.as_bytes(),
        &BENCH_RIGHTS,
        None::<&[&str]>,
    )?;
    let token =
        base64::engine::general_purpose::STANDARD.encode(format!("{BENCH_USER}:{BENCH_PASSWORD}"));
    Ok((users, format!("Basic {token}")))
}

/// The auth layer of the benchmark servers: defaults, except that verified passwords stay cached
/// for the whole run. With the default 60 s, an expiry inside a measured case would send its 32
/// concurrent calls through argon2 at once, and the case would measure argon2 after all; the
/// auth scenario's `argon2_runs` figure shows that no measured case ran it.
fn auth_layer(users: Users) -> AuthLayer {
    AuthLayer::builder(users)
        .cache_ttl(Duration::from_secs(24 * 3600))
        .build()
}

/// All servers of a loopback run; [`LocalServers::shutdown`] stops them.
#[derive(Debug)]
pub struct LocalServers {
    target: Target,
    ours: Vec<OursServer>,
    peer_plain: Option<PeerServer>,
    peer_auth: Option<PeerServer>,
}

impl LocalServers {
    /// Starts the servers on `ip` (ephemeral ports; 127.0.0.1 for a loopback run). With `peer`
    /// false, no tonic-h3 server.
    pub async fn start(
        settings: &Settings,
        peer: bool,
        ip: IpAddr,
    ) -> anyhow::Result<LocalServers> {
        let certs = DevCerts::generate().context("generating dev certificates")?;
        let store = bench_store(settings)?;
        let (users, authorization) = bench_users()?;
        let ours_auth = auth_layer(users.clone());
        let peer_auth_layer = auth_layer(users);
        let bind = SocketAddr::new(ip, 0);

        let mut ours = Vec::new();
        let tls = ServerTls::from_pem(&certs.server_cert_pem, &certs.server_key_pem)?;
        let plain = Server::builder()
            .tls(tls.clone())
            .wires(Wires::Both)
            .quic_settings(settings.quic())
            .drain_timeout(DRAIN)
            .add_service(zones_server(store.clone()))
            .add_service(test_service())
            .bind(bind)
            .await
            .context("binding the grpc-h3 server")?;
        let plain_addrs = (plain.h2_addr(), plain.h3_addr());
        ours.push(spawn_ours(plain));
        let auth = Server::builder()
            .tls(tls)
            .wires(Wires::Both)
            .quic_settings(settings.quic())
            .drain_timeout(DRAIN)
            .layer(ours_auth.clone())
            .add_service(zones_server(store.clone()))
            .add_service(test_service())
            .bind(bind)
            .await
            .context("binding the grpc-h3 auth server")?;
        let auth_addrs = (auth.h2_addr(), auth.h3_addr());
        ours.push(spawn_ours(auth));
        let missing = || anyhow::anyhow!("grpc-h3 server did not bind both TCP and UDP");

        let (peer_plain, peer_auth) = if peer {
            let routes = Routes::new(zones_server(store.clone())).add_service(test_service());
            let plain =
                PeerServer::start(routes, bind, &certs.server_cert_pem, &certs.server_key_pem)
                    .await
                    .context("starting the tonic-h3 server")?;
            let routes = Routes::new(WithAuth::new(&peer_auth_layer, zones_server(store)))
                .add_service(WithAuth::new(&peer_auth_layer, test_service()));
            let auth =
                PeerServer::start(routes, bind, &certs.server_cert_pem, &certs.server_key_pem)
                    .await
                    .context("starting the tonic-h3 auth server")?;
            (Some(plain), Some(auth))
        } else {
            (None, None)
        };

        let argon2_runs: Arc<dyn Fn() -> u64 + Send + Sync> =
            Arc::new(move || ours_auth.argon2_runs() + peer_auth_layer.argon2_runs());
        let target = Target {
            plain: Addrs {
                h2: plain_addrs.0.ok_or_else(missing)?,
                h3: plain_addrs.1.ok_or_else(missing)?,
                peer: peer_plain.as_ref().map(PeerServer::addr),
            },
            auth: Some(AuthTarget {
                addrs: Addrs {
                    h2: auth_addrs.0.ok_or_else(missing)?,
                    h3: auth_addrs.1.ok_or_else(missing)?,
                    peer: peer_auth.as_ref().map(PeerServer::addr),
                },
                authorization,
                argon2_runs: Some(argon2_runs),
            }),
            ca_pem: certs.ca_pem.clone(),
            server_name: "localhost".to_string(),
            quic: settings.quic(),
            cross_pair: settings.cross_pair,
        };
        Ok(LocalServers {
            target,
            ours,
            peer_plain,
            peer_auth,
        })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Why the tonic-h3 servers can no longer serve, if one of them has exited.
    pub fn peer_exit_reason(&mut self) -> Option<String> {
        [&mut self.peer_plain, &mut self.peer_auth]
            .into_iter()
            .flatten()
            .find_map(PeerServer::exit_reason)
    }

    /// Stops every server, waiting a bounded time for each.
    pub async fn shutdown(self) {
        for OursServer { shutdown, task } in self.ours {
            let _ = shutdown.send(());
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(3), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        for server in [self.peer_plain, self.peer_auth].into_iter().flatten() {
            server.shutdown().await;
        }
    }
}

/// A running grpc-h3 server.
#[derive(Debug)]
struct OursServer {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), grpc_h3::Error>>,
}

fn spawn_ours(bound: grpc_h3::BoundServer) -> OursServer {
    let (shutdown, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(bound.serve_with_shutdown(async {
        let _ = rx.await;
    }));
    OursServer { shutdown, task }
}
