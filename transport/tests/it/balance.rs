//! Client-side balancing over several servers (`grpc_h3::Balance`), on every wire: spread,
//! transparent retry of calls that never left, kill -9 of a server under load, graceful drain,
//! membership from DNS re-resolution and from the application's changes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_support::fixture as common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Observed, certs, endpoint, service};
use futures::future::BoxFuture;
use grpc_h3::{
    Balance, Change, Channel, Pick, QuicSettings, Resolve, Server, ServerTls, Transport,
};
use test_support::killable::KillableRuntime;
use tokio::sync::oneshot;
use zone_proto::grpc_testing::test_service_client::TestServiceClient;
use zone_proto::grpc_testing::{Payload, SimpleRequest};

test_support::matrix!(
    power_of_two_choices_spreads_calls_evenly,
    round_robin_spreads_calls_evenly,
    a_dead_backend_costs_no_call,
    kill_fails_only_the_calls_in_flight_on_it,
    a_draining_backend_fails_no_call,
    dns_answers_add_and_remove_backends,
    application_changes_add_and_remove_backends,
    a_killed_server_fails_its_calls_at_once,
    a_dead_address_fails_the_connect_at_once,
);

/// A test server in a runtime of its own, so the test can kill it as kill -9 would.
struct Killable {
    transport: Transport,
    addr: SocketAddr,
    observed: Arc<Observed>,
    runtime: KillableRuntime,
    shutdown: Option<oneshot::Sender<()>>,
    stopped: Option<oneshot::Receiver<()>>,
}

impl Killable {
    async fn start(transport: Transport) -> Self {
        Self::start_on(transport, "127.0.0.1:0".parse().unwrap(), Arc::default()).await
    }

    async fn start_on(transport: Transport, addr: SocketAddr, observed: Arc<Observed>) -> Self {
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let (stopped_tx, stopped) = oneshot::channel();
        let served = observed.clone();
        let (runtime, addr) = KillableRuntime::start(async move {
            let c = certs();
            let bound = Server::builder()
                .tls(ServerTls::from_pem(&c.server_cert_pem, &c.server_key_pem).unwrap())
                .wires(grpc_h3::Wires::from(transport))
                .drain_timeout(Duration::from_secs(5))
                .add_service(service(served))
                .bind(addr)
                .await
                .unwrap();
            let addr = match transport {
                Transport::H3 => bound.h3_addr().unwrap(),
                _ => bound.h2_addr().unwrap(),
            };
            tokio::spawn(async move {
                let _ = bound
                    .serve_with_shutdown(async {
                        let _ = shutdown_rx.await;
                    })
                    .await;
                let _ = stopped_tx.send(());
            });
            addr
        })
        .await;
        Killable {
            transport,
            addr,
            observed,
            runtime,
            shutdown: Some(shutdown),
            stopped: Some(stopped),
        }
    }

    fn served(&self) -> usize {
        self.observed.completed.load(Ordering::SeqCst)
    }

    fn kill(&mut self) {
        self.runtime.kill();
    }

    /// Graceful shutdown (GOAWAY, calls in flight finish); returns when the server has stopped.
    async fn drain(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(stopped) = self.stopped.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), stopped).await;
        }
    }

    /// The same server again on the same port, counting on.
    async fn restart(&mut self) {
        self.kill();
        *self = Self::start_on(self.transport, self.addr, self.observed.clone()).await;
    }
}

/// A backend endpoint for `addr`: fast failure detection so the test runs in seconds, even where
/// a dead HTTP/3 server is found by its silence (idle timeout) rather than by ICMP.
fn backend(t: Transport, addr: SocketAddr) -> grpc_h3::Endpoint {
    endpoint(t, addr)
        .connect_timeout(Duration::from_secs(1))
        .quic_settings(
            QuicSettings::default()
                .idle_timeout(Duration::from_millis(800))
                .keep_alive_interval(Some(Duration::from_millis(200))),
        )
}

fn fast() -> Balance {
    Balance::new().ejection_backoff(Duration::from_millis(100), Duration::from_millis(400))
}

fn request(sleep_ms: u64) -> SimpleRequest {
    SimpleRequest {
        payload: Some(Payload {
            body: format!("sleep:{sleep_ms}").into_bytes(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Waits (up to 10 s) until `ready` of the channel's backends are ready.
async fn wait_ready(channel: &Channel, ready: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = channel.backends();
        if now.len() == ready && now.iter().all(|b| b.ready) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "backends not ready: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `calls` unary calls from 16 concurrent callers; returns the failures' codes and messages.
async fn load(channel: &Channel, calls: usize, sleep_ms: u64) -> Vec<(tonic::Code, String)> {
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(Mutex::new(Vec::new()));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (channel, next, failed) = (channel.clone(), next.clone(), failed.clone());
        workers.spawn(async move {
            let mut client = TestServiceClient::new(channel);
            while next.fetch_add(1, Ordering::Relaxed) < calls as u64 {
                if let Err(status) = client.unary_call(request(sleep_ms)).await {
                    let failure = (status.code(), status.message().to_string());
                    failed.lock().unwrap().push(failure);
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    std::mem::take(&mut *failed.lock().unwrap())
}

/// Each of `servers` served within ±15 % of an even share of `total` calls.
fn assert_even(servers: &[&Killable], total: usize) {
    let share = total as f64 / servers.len() as f64;
    let served: Vec<usize> = servers.iter().map(|s| s.served()).collect();
    for n in &served {
        assert!(
            (*n as f64 - share).abs() <= 0.15 * share,
            "uneven spread {served:?} of {total} calls"
        );
    }
}

/// Three servers and a channel balanced over them by `pick`, every backend connected.
async fn three(t: Transport, pick: Pick) -> ([Killable; 3], Channel) {
    let servers = [
        Killable::start(t).await,
        Killable::start(t).await,
        Killable::start(t).await,
    ];
    let channel = fast()
        .pick(pick)
        .list(servers.iter().map(|s| backend(t, s.addr)));
    wait_ready(&channel, 3).await;
    (servers, channel)
}

async fn spread(t: Transport, pick: Pick) {
    let (servers, channel) = three(t, pick).await;
    // Each call waits 10 ms in its handler: the load is uniform, calls overlap, and a server
    // slowed by a busy machine (power of two choices rightly sends it less) hardly shows.
    let failed = load(&channel, 900, 10).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_even(&servers.iter().collect::<Vec<_>>(), 900);
    let stats = channel.backends();
    assert_eq!(stats.iter().map(|b| b.calls).sum::<u64>(), 900);
    assert!(stats.iter().all(|b| b.in_flight == 0 && b.failed == 0));
}

async fn power_of_two_choices_spreads_calls_evenly(t: Transport) {
    spread(t, Pick::PowerOfTwoChoices).await;
}

async fn round_robin_spreads_calls_evenly(t: Transport) {
    spread(t, Pick::RoundRobin).await;
}

/// A backend nobody listens on is never given a call: it connects in the background, fails and
/// is ejected, while the calls go to the live one.
async fn a_dead_backend_costs_no_call(t: Transport) {
    let live = Killable::start(t).await;
    let mut dead = Killable::start(t).await;
    let dead_addr = dead.addr;
    dead.kill();
    let channel = fast().list([backend(t, dead_addr), backend(t, live.addr)]);
    let failed = load(&channel, 100, 0).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(live.served(), 100);
    let stats = channel.backends();
    let dead_stats = stats
        .iter()
        .find(|b| b.name == dead_addr.to_string())
        .unwrap();
    assert_eq!(dead_stats.calls, 0, "{stats:?}");
}

/// kill -9 of one of three servers under load: exactly the calls in flight on it fail (the
/// balancer's count for it equals the callers' count, the others fail none), all UNAVAILABLE;
/// restarted, it receives calls again.
async fn kill_fails_only_the_calls_in_flight_on_it(t: Transport) {
    let (mut servers, channel) = three(t, Pick::PowerOfTwoChoices).await;
    let victim = servers[1].addr.to_string();

    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(Mutex::new(Vec::new()));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (channel, stop, failed) = (channel.clone(), stop.clone(), failed.clone());
        workers.spawn(async move {
            let mut client = TestServiceClient::new(channel);
            while !stop.load(Ordering::Relaxed) {
                let mut req = tonic::Request::new(request(20));
                req.set_timeout(Duration::from_secs(10));
                if let Err(status) = client.unary_call(req).await {
                    failed.lock().unwrap().push(status.code());
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let in_flight_at_kill = channel
        .backends()
        .iter()
        .find(|b| b.name == victim)
        .unwrap()
        .in_flight;
    servers[1].kill();
    // Long enough for the idle timeout to declare a dead HTTP/3 connection lost.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let served_before_restart = servers[1].served();
    servers[1].restart().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while servers[1].served() == served_before_restart {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the restarted server got no call: {:?}",
            channel.backends()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    while workers.join_next().await.is_some() {}

    let failed = failed.lock().unwrap().clone();
    let stats = channel.backends();
    let on_victim = stats.iter().find(|b| b.name == victim).unwrap();
    assert_eq!(on_victim.failed, failed.len() as u64, "{stats:?}");
    assert!(
        stats
            .iter()
            .filter(|b| b.name != victim)
            .all(|b| b.failed == 0),
        "{stats:?}"
    );
    assert!(
        failed.iter().all(|c| *c == tonic::Code::Unavailable),
        "{failed:?}"
    );
    assert!(
        in_flight_at_kill >= 1 && !failed.is_empty(),
        "no call was in flight on the killed server ({in_flight_at_kill}); the test proves nothing"
    );
    assert!(
        failed.len() <= 16,
        "{} failed, more than the callers",
        failed.len()
    );
    assert!(on_victim.ejections >= 1, "{stats:?}");
}

/// A server shutting down gracefully under load (GOAWAY): its calls in flight finish and new
/// calls go to the others, so not one call fails.
async fn a_draining_backend_fails_no_call(t: Transport) {
    let (mut servers, channel) = three(t, Pick::PowerOfTwoChoices).await;
    let loaded = {
        let channel = channel.clone();
        tokio::spawn(async move { load(&channel, 1500, 5).await })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    servers[0].drain().await;
    let served_at_drain = servers[0].served();
    let failed = loaded.await.unwrap();
    assert!(failed.is_empty(), "{failed:?} {:?}", channel.backends());
    assert_eq!(
        servers[0].served(),
        served_at_drain,
        "a drained server got calls"
    );
    assert_eq!(servers.iter().map(|s| s.served()).sum::<usize>(), 1500);
}

/// A resolver whose answer the test sets.
#[derive(Clone, Default)]
struct TestResolver(Arc<Mutex<Vec<SocketAddr>>>);

impl TestResolver {
    fn answer(&self, addrs: &[SocketAddr]) {
        *self.0.lock().unwrap() = addrs.to_vec();
    }
}

impl Resolve for TestResolver {
    fn resolve(
        &self,
        _host: &str,
        _port: u16,
    ) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>> {
        let addrs = self.0.lock().unwrap().clone();
        Box::pin(async move { Ok(addrs) })
    }
}

async fn calls_reach_only(channel: &Channel, servers: &[Killable], expected: &[usize]) {
    let before: Vec<usize> = servers.iter().map(|s| s.served()).collect();
    let failed = load(channel, 90, 1).await;
    assert!(failed.is_empty(), "{failed:?}");
    for (i, s) in servers.iter().enumerate() {
        let got = s.served() - before[i];
        if expected.contains(&i) {
            assert!(got > 0, "server {i} got no call");
        } else {
            assert_eq!(got, 0, "server {i} got {got} calls");
        }
    }
}

async fn dns_answers_add_and_remove_backends(t: Transport) {
    let servers = [
        Killable::start(t).await,
        Killable::start(t).await,
        Killable::start(t).await,
    ];
    let resolver = TestResolver::default();
    resolver.answer(&[servers[0].addr]);
    // The name is the service's; the resolver gives each pod's address.
    let template = backend(t, servers[0].addr);
    let channel = fast()
        .resolver(resolver.clone())
        .resolve_interval(Duration::from_millis(50))
        .dns(template);
    calls_reach_only(&channel, &servers, &[0]).await;

    resolver.answer(&[servers[0].addr, servers[1].addr, servers[2].addr]);
    wait_ready(&channel, 3).await;
    calls_reach_only(&channel, &servers, &[0, 1, 2]).await;

    resolver.answer(&[servers[2].addr]);
    wait_ready(&channel, 1).await;
    calls_reach_only(&channel, &servers, &[2]).await;
}

async fn application_changes_add_and_remove_backends(t: Transport) {
    let servers = [Killable::start(t).await, Killable::start(t).await];
    let (channel, changes) = fast().channel::<usize>(4);
    changes
        .send(Change::Insert(0, backend(t, servers[0].addr)))
        .await
        .unwrap();
    calls_reach_only(&channel, &servers, &[0]).await;
    changes
        .send(Change::Insert(1, backend(t, servers[1].addr)))
        .await
        .unwrap();
    wait_ready(&channel, 2).await;
    calls_reach_only(&channel, &servers, &[0, 1]).await;
    changes.send(Change::Remove(0)).await.unwrap();
    wait_ready(&channel, 1).await;
    calls_reach_only(&channel, &servers, &[1]).await;
}

/// A server killed mid-call: the call fails UNAVAILABLE within a keep-alive interval on every
/// wire — HTTP/2 from the kernel's RST, HTTP/3 from the ICMP port unreachable that its next
/// datagram (here the keep-alive PING) meets. quinn alone would wait for the idle timeout: the
/// default 30 s is kept here.
async fn a_killed_server_fails_its_calls_at_once(t: Transport) {
    let mut server = Killable::start(t).await;
    let channel = endpoint(t, server.addr)
        .connect_timeout(Duration::from_secs(10))
        .keep_alive_interval(Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    let mut client = TestServiceClient::new(channel);
    client.unary_call(request(0)).await.unwrap();
    let call = tokio::spawn(async move { client.unary_call(request(5_000)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let killed = std::time::Instant::now();
    server.kill();
    let status = tokio::time::timeout(Duration::from_secs(3), call)
        .await
        .expect("the call outlived its dead server by 3 s")
        .unwrap()
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(killed.elapsed() < Duration::from_secs(3));
}

/// Connecting to an address where nobody listens fails at once on every wire, not at the
/// connect timeout (TCP: RST; QUIC: ICMP port unreachable).
async fn a_dead_address_fails_the_connect_at_once(t: Transport) {
    let mut server = Killable::start(t).await;
    let addr = server.addr;
    server.kill();
    let started = std::time::Instant::now();
    let err = endpoint(t, addr)
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}: {err:#}",
        started.elapsed()
    );
    // Refused, or (when the kill is still closing the listener) reset during the handshake.
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:#}");
}
