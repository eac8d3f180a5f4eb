//! End-to-end tests of `zone.v1.Zones` behind the per-RPC auth layer: the real service, store and
//! `AuthLayer` on an in-process `grpc_h3::Server` with TLS, called through generated clients over
//! `grpc_h3` channels. Every behaviour in `matrix!` runs over HTTP/2 and HTTP/3 alike.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use dev_certs::DevCerts;
use grpc_h3::{Channel, Endpoint, Server, ServerTls, Transport};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::{Code, Status, Streaming};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use zone_proto::grpc_testing::Empty;
use zone_proto::grpc_testing::unimplemented_service_client::UnimplementedServiceClient;
use zone_proto::zone::v1::change::Op;
use zone_proto::zone::v1::sync_message::Kind;
use zone_proto::zone::v1::zones_client::ZonesClient;
use zone_proto::zone::v1::zones_server::ZonesServer;
use zone_proto::zone::v1::{
    Ack, Change, ChangeBatch, PushResult, Record, RecordBatch, RecordQuery, Subscribe, SyncMessage,
    TransferRequest, ZoneCursor,
};
use zone_server::auth::{AuthLayer, Users};
use zone_server::zones::{ZoneStore, ZonesService, zones_server};

use test_support::matrix;

matrix!(
    get_record_returns_the_records,
    transfer_zone_full_streams_every_record_in_batches,
    transfer_zone_since_serial_streams_only_the_changes,
    push_changes_applies_each_batch_atomically,
    sync_delivers_snapshot_then_live_updates_in_order,
    unknown_zone_is_not_found,
    malformed_record_is_invalid_argument,
    unknown_method_is_unimplemented,
    auth_without_credentials_is_unauthenticated,
    auth_wrong_password_is_unauthenticated,
    auth_method_right_is_enforced,
    auth_zone_right_is_enforced,
    health_check_needs_no_credentials,
);

const ZONE: &str = "example.test.";
const SERIAL: u32 = 100;
const ZONE_TEXT: &str = "$ORIGIN example.test.\n$TTL 300\n\
    @ SOA ns1 hostmaster 100 7200 900 1209600 300\n\
    @ NS ns1\n\
    @ MX 10 mail\n\
    ns1 A 192.0.2.53\n\
    mail A 192.0.2.25\n\
    www A 192.0.2.1\n\
    www AAAA 2001:db8::1\n\
    _sip._tcp SRV 10 5 5060 ns1\n";
/// Records in `ZONE_TEXT`.
const ZONE_RECORDS: usize = 8;

/// A second zone, for users restricted to it.
const OTHER_ZONE: &str = "other.test.";
const OTHER_TEXT: &str = "$ORIGIN other.test.\n$TTL 300\n\
    @ SOA ns1 hostmaster 7 7200 900 1209600 300\n\
    @ NS ns1\n\
    ns1 A 192.0.2.54\n";

/// Every method, every zone.
const ADMIN: (&str, &str) = ("admin", "admin-pw");
/// Only `GetRecord`, every zone.
const READER: (&str, &str) = ("reader", "reader-pw");
/// Every Zones method, only `OTHER_ZONE`.
const OTHER: (&str, &str) = ("other", "other-pw");

/// Bound on every wait for a message, so a hang fails instead of stalling the run.
const WAIT: Duration = Duration::from_secs(10);

/// The transport matrix's certificates: `test_support::fixture::endpoint` trusts their CA.
fn certs() -> &'static DevCerts {
    test_support::fixture::certs()
}

/// The users file, hashed once per test process (argon2 is slow in debug builds).
fn users() -> Users {
    static USERS: OnceLock<Users> = OnceLock::new();
    USERS
        .get_or_init(|| {
            let mut users = Users::new();
            users
                .add(ADMIN.0, ADMIN.1.as_bytes(), &["*"], None::<&[&str]>)
                .unwrap();
            users
                .add(
                    READER.0,
                    READER.1.as_bytes(),
                    &["zone.v1.Zones/GetRecord"],
                    None::<&[&str]>,
                )
                .unwrap();
            users
                .add(
                    OTHER.0,
                    OTHER.1.as_bytes(),
                    &["zone.v1.Zones/*"],
                    Some(&[OTHER_ZONE]),
                )
                .unwrap();
            users
        })
        .clone()
}

fn store() -> ZoneStore {
    let store = ZoneStore::new();
    store.insert_zone_text(ZONE, ZONE_TEXT).unwrap();
    store.insert_zone_text(OTHER_ZONE, OTHER_TEXT).unwrap();
    store
}

fn basic(user: &str, password: &str) -> MetadataValue<Ascii> {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}").parse().unwrap()
}

/// Adds `authorization: Basic …` to every call when set.
#[derive(Clone)]
struct Credentials(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Credentials {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

fn credentials(user: Option<(&str, &str)>) -> Credentials {
    Credentials(user.map(|(u, p)| basic(u, p)))
}

type Client = ZonesClient<InterceptedService<Channel, Credentials>>;

fn zones_client(channel: Channel, user: Option<(&str, &str)>) -> Client {
    ZonesClient::with_interceptor(channel, credentials(user))
}

/// The zone service, health and the auth layer on a TLS `grpc_h3::Server` on loopback.
struct Fixture {
    transport: Transport,
    addr: SocketAddr,
    channel: Channel,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Fixture {
    async fn start(transport: Transport) -> Fixture {
        let certs = certs();
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<ZonesServer<ZonesService>>().await;
        let bound = Server::builder()
            .tls(ServerTls::from_pem(&certs.server_cert_pem, &certs.server_key_pem).unwrap())
            .wires(grpc_h3::Wires::from(transport))
            .add_service(zones_server(store()))
            .add_service(health_service)
            .layer(AuthLayer::new(users()))
            .bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = match transport {
            Transport::H3 => bound.h3_addr(),
            _ => bound.h2_addr(),
        }
        .unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(bound.serve_with_shutdown(async {
            let _ = rx.await;
        }));
        Fixture {
            transport,
            addr,
            channel: connect(transport, addr).await,
            shutdown: Some(tx),
        }
    }

    /// A new connection to the server (a separate client).
    async fn connect(&self) -> Channel {
        connect(self.transport, self.addr).await
    }

    fn client(&self, user: Option<(&str, &str)>) -> Client {
        zones_client(self.channel.clone(), user)
    }

    fn admin(&self) -> Client {
        self.client(Some(ADMIN))
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A channel as the transport matrix makes them (Auto with HTTP/3 announced, so over HTTP/3).
async fn connect(transport: Transport, addr: SocketAddr) -> Channel {
    let channel = test_support::fixture::endpoint(transport, addr)
        .timeout(Duration::from_secs(20))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{transport}: connect: {e}"));
    assert_eq!(
        channel.transport_in_use(),
        test_support::fixture::carried_over(transport)
    );
    channel
}

fn query(zone: &str, name: &str, rtype: &str) -> RecordQuery {
    RecordQuery {
        zone: zone.into(),
        name: name.into(),
        r#type: rtype.into(),
    }
}

fn a_record(name: &str, address: &str) -> Record {
    Record {
        name: name.into(),
        r#type: "A".into(),
        class: String::new(),
        ttl: 60,
        rdata: address.into(),
    }
}

fn create(record: Record) -> Change {
    Change {
        op: Op::Create.into(),
        record: Some(record),
        previous: None,
    }
}

fn batch(zone: &str, changes: Vec<Change>) -> ChangeBatch {
    ChangeBatch {
        zone: zone.into(),
        changes,
        expected_serial: None,
    }
}

/// Sends `batches` on one PushChanges call.
async fn push(client: &mut Client, batches: Vec<ChangeBatch>) -> Result<PushResult, Status> {
    client
        .push_changes(futures::stream::iter(batches))
        .await
        .map(tonic::Response::into_inner)
}

/// All batches of a TransferZone call; an error either before or during the stream.
async fn transfer(
    client: &mut Client,
    request: TransferRequest,
) -> Result<Vec<RecordBatch>, Status> {
    let mut stream = client.transfer_zone(request).await?.into_inner();
    let mut batches = Vec::new();
    while let Some(batch) = tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("transfer stalled")?
    {
        batches.push(batch);
    }
    Ok(batches)
}

fn full(zone: &str, batch_size: u32) -> TransferRequest {
    TransferRequest {
        zone: zone.into(),
        since_serial: None,
        batch_size,
    }
}

fn since(zone: &str, serial: u32) -> TransferRequest {
    TransferRequest {
        zone: zone.into(),
        since_serial: Some(serial),
        batch_size: 0,
    }
}

/// The zone's records as (name, type, rdata), via a full transfer.
async fn zone_contents(client: &mut Client) -> (u32, BTreeSet<(String, String, String)>) {
    let batches = transfer(client, full(ZONE, 0)).await.unwrap();
    let serial = batches.last().unwrap().serial;
    let records = batches
        .iter()
        .flat_map(|b| &b.records)
        .map(|r| (r.name.clone(), r.r#type.clone(), r.rdata.clone()))
        .collect();
    (serial, records)
}

async fn serial_of(client: &mut Client, zone: &str) -> u32 {
    client
        .get_record(query(zone, zone, "SOA"))
        .await
        .unwrap()
        .into_inner()
        .serial
}

/// A Sync call: the sender for client messages and the server's stream.
struct SyncCall {
    tx: mpsc::Sender<SyncMessage>,
    /// `Err` when the server refused the call before any message.
    inbound: Result<Streaming<SyncMessage>, Status>,
}

impl SyncCall {
    async fn start(client: &mut Client, first: SyncMessage) -> SyncCall {
        let (tx, rx) = mpsc::channel(8);
        tx.send(first).await.unwrap();
        let inbound = client
            .sync(ReceiverStream::new(rx))
            .await
            .map(tonic::Response::into_inner);
        SyncCall { tx, inbound }
    }

    /// The next server message, or the status that ended the stream.
    async fn next(&mut self) -> Result<SyncMessage, Status> {
        let inbound = self.inbound.as_mut().map_err(|s| s.clone())?;
        tokio::time::timeout(WAIT, inbound.message())
            .await
            .expect("no Sync message in time")?
            .ok_or_else(|| Status::internal("test: Sync stream ended without status"))
    }

    async fn send(&self, kind: Kind) {
        self.tx
            .send(SyncMessage { kind: Some(kind) })
            .await
            .unwrap();
    }
}

fn subscribe(zone: &str, serial: u32) -> SyncMessage {
    SyncMessage {
        kind: Some(Kind::Subscribe(Subscribe {
            zones: vec![ZoneCursor {
                zone: zone.into(),
                serial,
            }],
        })),
    }
}

fn ack(zone: &str, serial: u32) -> Kind {
    Kind::Ack(Ack {
        zone: zone.into(),
        serial,
    })
}

fn assert_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, what: &str) -> Status {
    match result {
        Ok(v) => panic!("{what}: want {code:?}, got Ok({v:?})"),
        Err(status) => {
            assert_eq!(status.code(), code, "{what}: {status:?}");
            status
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The behaviours.

async fn get_record_returns_the_records(t: Transport) {
    let fx = Fixture::start(t).await;
    let mut client = fx.admin();

    let www = client
        .get_record(query(ZONE, "www.example.test.", "A"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((www.zone.as_str(), www.serial), (ZONE, SERIAL), "{t}");
    let got: Vec<_> = www
        .records
        .iter()
        .map(|r| (r.name.as_str(), r.r#type.as_str(), r.rdata.as_str(), r.ttl))
        .collect();
    assert_eq!(got, [("www.example.test.", "A", "192.0.2.1", 300)], "{t}");

    // No type: every record at the name; a relative name is taken relative to the zone.
    let all = client
        .get_record(query(ZONE, "www", ""))
        .await
        .unwrap()
        .into_inner();
    let types: BTreeSet<_> = all.records.iter().map(|r| r.r#type.as_str()).collect();
    assert_eq!(types, BTreeSet::from(["A", "AAAA"]), "{t}");

    // NODATA: the name exists, the type does not — an empty set, not an error. Same for an empty
    // non-terminal (`_tcp` only has a child).
    for (name, rtype) in [("www", "MX"), ("_tcp", "")] {
        let empty = client
            .get_record(query(ZONE, name, rtype))
            .await
            .unwrap_or_else(|s| panic!("{t}: {name} {rtype}: {s:?}"))
            .into_inner();
        assert!(empty.records.is_empty(), "{t}: {name}: {empty:?}");
        assert_eq!(empty.serial, SERIAL, "{t}");
    }

    // NXDOMAIN: NOT_FOUND.
    assert_code(
        client.get_record(query(ZONE, "absent", "A")).await,
        Code::NotFound,
        "absent name",
    );
}

async fn transfer_zone_full_streams_every_record_in_batches(t: Transport) {
    let fx = Fixture::start(t).await;
    let mut client = fx.admin();

    let batches = transfer(&mut client, full(ZONE, 3)).await.unwrap();
    let shape: Vec<_> = batches.iter().map(|b| (b.records.len(), b.last)).collect();
    assert_eq!(shape, [(3, false), (3, false), (2, true)], "{t}");
    assert!(
        batches
            .iter()
            .all(|b| b.zone == ZONE && b.serial == SERIAL && b.changes.is_empty()),
        "{t}: {batches:?}"
    );
    let records: BTreeSet<_> = batches
        .iter()
        .flat_map(|b| &b.records)
        .map(|r| (r.name.as_str(), r.r#type.as_str(), r.rdata.as_str()))
        .collect();
    assert_eq!(
        records.len(),
        ZONE_RECORDS,
        "{t}: duplicates in {records:?}"
    );
    assert!(
        records.contains(&("mail.example.test.", "A", "192.0.2.25")),
        "{t}: {records:?}"
    );
    assert_eq!(batches[0].records[0].r#type, "SOA", "{t}: SOA first");

    // The default batch size holds the small zone in one last batch.
    let one = transfer(&mut client, full(ZONE, 0)).await.unwrap();
    assert_eq!(one.len(), 1, "{t}");
    assert!(one[0].last && one[0].records.len() == ZONE_RECORDS, "{t}");
}

async fn transfer_zone_since_serial_streams_only_the_changes(t: Transport) {
    let fx = Fixture::start(t).await;
    let mut client = fx.admin();
    let new = a_record("new.example.test.", "192.0.2.99");
    let pushed = push(&mut client, vec![batch(ZONE, vec![create(new.clone())])])
        .await
        .unwrap();
    assert_eq!(pushed.serial, SERIAL + 1, "{t}");

    let batches = transfer(&mut client, since(ZONE, SERIAL)).await.unwrap();
    assert_eq!(batches.len(), 1, "{t}: {batches:?}");
    let b = &batches[0];
    assert_eq!(
        (b.zone.as_str(), b.serial, b.last),
        (ZONE, SERIAL + 1, true),
        "{t}"
    );
    assert!(
        b.records.is_empty(),
        "{t}: an incremental batch carries changes only"
    );
    let created: Vec<_> = b
        .changes
        .iter()
        .filter(|c| c.op == Op::Create as i32)
        .filter_map(|c| c.record.as_ref())
        .map(|r| (r.name.as_str(), r.r#type.as_str(), r.rdata.as_str()))
        .collect();
    assert_eq!(created, [("new.example.test.", "A", "192.0.2.99")], "{t}");
    // Anything else in the batch is the SOA serial bump, never an untouched record.
    assert!(
        b.changes
            .iter()
            .filter(|c| c.op != Op::Create as i32)
            .all(|c| c.record.as_ref().is_some_and(|r| r.r#type == "SOA")),
        "{t}: {:?}",
        b.changes
    );

    // Up to date: nothing at all; ahead of the zone: OUT_OF_RANGE.
    assert!(
        transfer(&mut client, since(ZONE, SERIAL + 1))
            .await
            .unwrap()
            .is_empty(),
        "{t}"
    );
    assert_code(
        transfer(&mut client, since(ZONE, SERIAL + 2)).await,
        Code::OutOfRange,
        "serial ahead",
    );
}

async fn push_changes_applies_each_batch_atomically(t: Transport) {
    let fx = Fixture::start(t).await;
    let mut client = fx.admin();
    let (_, before) = zone_contents(&mut client).await;

    let good = batch(ZONE, vec![create(a_record("good", "192.0.2.10"))]);
    // One valid change followed by one whose rdata is not an IPv4 address.
    let mixed = batch(
        ZONE,
        vec![
            create(a_record("half", "192.0.2.11")),
            create(a_record("broken", "192.0.2.300")),
        ],
    );
    let after = batch(ZONE, vec![create(a_record("after", "192.0.2.12"))]);
    let status = assert_code(
        push(&mut client, vec![good, mixed, after]).await,
        Code::InvalidArgument,
        "batch with a bad change",
    );
    assert!(
        status.message().contains("changes[1]"),
        "{t}: the message names the bad change: {status:?}"
    );

    // The first batch stays applied; the failing one applied nothing, the later one never ran.
    let (serial, records) = zone_contents(&mut client).await;
    assert_eq!(serial, SERIAL + 1, "{t}");
    let mut want = before.clone();
    want.insert(("good.example.test.".into(), "A".into(), "192.0.2.10".into()));
    // The SOA's rdata carries the serial; compare everything else exactly.
    let without_soa = |set: &BTreeSet<(String, String, String)>| -> BTreeSet<_> {
        set.iter().filter(|r| r.1 != "SOA").cloned().collect()
    };
    assert_eq!(without_soa(&records), without_soa(&want), "{t}");
    for name in ["half", "broken", "after"] {
        assert_code(
            client.get_record(query(ZONE, name, "")).await,
            Code::NotFound,
            name,
        );
    }

    // A fresh call applies again, and reports every batch.
    let result = push(
        &mut client,
        vec![
            batch(ZONE, vec![create(a_record("half", "192.0.2.11"))]),
            batch(ZONE, vec![create(a_record("after", "192.0.2.12"))]),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        result,
        PushResult {
            zone: ZONE.into(),
            serial: SERIAL + 3,
            batches_applied: 2,
            changes_applied: 2,
        },
        "{t}"
    );
}

async fn sync_delivers_snapshot_then_live_updates_in_order(t: Transport) {
    let fx = Fixture::start(t).await;
    let mut edge = fx.admin();
    let mut sync = SyncCall::start(&mut edge, subscribe("Example.Test", 0)).await;

    let Some(Kind::Snapshot(snapshot)) = sync.next().await.unwrap().kind else {
        panic!("{t}: want a snapshot first")
    };
    assert_eq!(
        (
            snapshot.zone.as_str(),
            snapshot.serial,
            snapshot.records.len()
        ),
        (ZONE, SERIAL, ZONE_RECORDS),
        "{t}"
    );
    sync.send(ack(ZONE, SERIAL)).await;

    // Another client, on its own connection, pushes two batches.
    let mut pusher = zones_client(fx.connect().await, Some(ADMIN));
    let pushed = push(
        &mut pusher,
        vec![
            batch(ZONE, vec![create(a_record("live1", "192.0.2.21"))]),
            batch(ZONE, vec![create(a_record("live2", "192.0.2.22"))]),
        ],
    )
    .await
    .unwrap();
    assert_eq!(pushed.serial, SERIAL + 2, "{t}");

    for (serial, name) in [
        (SERIAL + 1, "live1.example.test."),
        (SERIAL + 2, "live2.example.test."),
    ] {
        let Some(Kind::Update(update)) = sync.next().await.unwrap().kind else {
            panic!("{t}: want update {serial}")
        };
        assert_eq!((update.zone.as_str(), update.serial), (ZONE, serial), "{t}");
        assert!(
            update
                .changes
                .iter()
                .any(|c| c.record.as_ref().is_some_and(|r| r.name == name)),
            "{t}: {update:?}"
        );
        sync.send(ack(ZONE, serial)).await;
    }

    // The acks were accepted: the stream is still live and delivers the next update.
    push(
        &mut pusher,
        vec![batch(ZONE, vec![create(a_record("live3", "192.0.2.23"))])],
    )
    .await
    .unwrap();
    let Some(Kind::Update(update)) = sync.next().await.unwrap().kind else {
        panic!("{t}: want update {}", SERIAL + 3)
    };
    assert_eq!(update.serial, SERIAL + 3, "{t}");

    // Acknowledging a serial that was never sent ends the stream with INVALID_ARGUMENT.
    sync.send(ack(ZONE, SERIAL + 4)).await;
    let status = assert_code(sync.next().await, Code::InvalidArgument, "ack ahead");
    assert!(
        status.message().contains(&(SERIAL + 4).to_string()),
        "{t}: {status:?}"
    );
}

async fn unknown_zone_is_not_found(t: Transport) {
    let fx = Fixture::start(t).await;
    let mut client = fx.admin();
    let zone = "unknown.test.";
    assert_code(
        client
            .get_record(query(zone, "www.unknown.test.", ""))
            .await,
        Code::NotFound,
        "GetRecord",
    );
    assert_code(
        transfer(&mut client, full(zone, 0)).await,
        Code::NotFound,
        "TransferZone",
    );
    assert_code(
        transfer(&mut client, since(zone, 1)).await,
        Code::NotFound,
        "TransferZone since",
    );
    assert_code(
        push(
            &mut client,
            vec![batch(
                zone,
                vec![create(a_record("www.unknown.test.", "192.0.2.1"))],
            )],
        )
        .await,
        Code::NotFound,
        "PushChanges",
    );
    let mut sync = SyncCall::start(&mut client, subscribe(zone, 0)).await;
    assert_code(sync.next().await, Code::NotFound, "Sync");
}

async fn malformed_record_is_invalid_argument(t: Transport) {
    let fx = Fixture::start(t).await;
    let mut client = fx.admin();
    let cases = [
        ("bad rdata", a_record("x", "not-an-address")),
        (
            "name outside the zone",
            a_record("www.elsewhere.test.", "192.0.2.1"),
        ),
        (
            "unknown type",
            Record {
                r#type: "NOTATYPE".into(),
                ..a_record("x", "192.0.2.1")
            },
        ),
    ];
    for (what, record) in cases {
        assert_code(
            push(&mut client, vec![batch(ZONE, vec![create(record)])]).await,
            Code::InvalidArgument,
            what,
        );
    }
    for (what, q) in [
        (
            "query name outside the zone",
            query(ZONE, "www.elsewhere.test.", ""),
        ),
        ("query name with a space", query(ZONE, "bad name", "")),
        ("query type unknown", query(ZONE, "www", "NOTATYPE")),
    ] {
        assert_code(client.get_record(q).await, Code::InvalidArgument, what);
    }
    assert_eq!(
        serial_of(&mut client, ZONE).await,
        SERIAL,
        "{t}: nothing applied"
    );
}

async fn unknown_method_is_unimplemented(t: Transport) {
    let fx = Fixture::start(t).await;
    let call = |user| {
        let mut client =
            UnimplementedServiceClient::with_interceptor(fx.channel.clone(), credentials(user));
        async move { client.unimplemented_call(Empty {}).await }
    };
    assert_code(
        call(Some(ADMIN)).await,
        Code::Unimplemented,
        "unknown service",
    );
    // The auth layer guards every path, so an unknown one does not answer anonymous callers either.
    assert_code(
        call(None).await,
        Code::Unauthenticated,
        "unknown service, anonymous",
    );
    // The connection still works afterwards.
    assert_eq!(serial_of(&mut fx.admin(), ZONE).await, SERIAL, "{t}");
}

async fn auth_without_credentials_is_unauthenticated(t: Transport) {
    let fx = Fixture::start(t).await;
    let mut anonymous = fx.client(None);
    assert_code(
        anonymous.get_record(query(ZONE, "www", "")).await,
        Code::Unauthenticated,
        "GetRecord",
    );
    assert_code(
        transfer(&mut anonymous, full(ZONE, 0)).await,
        Code::Unauthenticated,
        "TransferZone",
    );
    assert_code(
        push(
            &mut anonymous,
            vec![batch(ZONE, vec![create(a_record("anon", "192.0.2.1"))])],
        )
        .await,
        Code::Unauthenticated,
        "PushChanges",
    );
    assert_code(
        fx.admin().get_record(query(ZONE, "anon", "")).await,
        Code::NotFound,
        "the anonymous push applied nothing",
    );
}

async fn auth_wrong_password_is_unauthenticated(t: Transport) {
    let fx = Fixture::start(t).await;
    let wrong = assert_code(
        fx.client(Some((ADMIN.0, READER.1)))
            .get_record(query(ZONE, "www", ""))
            .await,
        Code::Unauthenticated,
        "wrong password",
    );
    let unknown = assert_code(
        fx.client(Some(("nobody", ADMIN.1)))
            .get_record(query(ZONE, "www", ""))
            .await,
        Code::Unauthenticated,
        "unknown user",
    );
    // One message for both, so user names cannot be probed.
    assert_eq!(wrong.message(), unknown.message(), "{t}");
    // The right password still works on the same connection.
    fx.admin()
        .get_record(query(ZONE, "www", ""))
        .await
        .unwrap_or_else(|s| panic!("{t}: {s:?}"));
}

async fn auth_method_right_is_enforced(t: Transport) {
    let fx = Fixture::start(t).await;
    let mut reader = fx.client(Some(READER));
    let set = reader
        .get_record(query(ZONE, "www", "A"))
        .await
        .unwrap_or_else(|s| panic!("{t}: reader may GetRecord: {s:?}"))
        .into_inner();
    assert_eq!(set.records.len(), 1, "{t}");

    assert_code(
        transfer(&mut reader, full(ZONE, 0)).await,
        Code::PermissionDenied,
        "reader TransferZone",
    );
    let denied = assert_code(
        push(
            &mut reader,
            vec![batch(ZONE, vec![create(a_record("reader", "192.0.2.1"))])],
        )
        .await,
        Code::PermissionDenied,
        "reader PushChanges",
    );
    assert!(
        denied.message().contains("zone.v1.Zones/PushChanges"),
        "{t}: {denied:?}"
    );
    let mut sync = SyncCall::start(&mut reader, subscribe(ZONE, 0)).await;
    assert_code(sync.next().await, Code::PermissionDenied, "reader Sync");
    assert_code(
        fx.admin().get_record(query(ZONE, "reader", "")).await,
        Code::NotFound,
        "the denied push applied nothing",
    );
}

async fn auth_zone_right_is_enforced(t: Transport) {
    let fx = Fixture::start(t).await;
    let mut other = fx.client(Some(OTHER));

    // Allowed zone: OK for reads and writes.
    let set = other
        .get_record(query(OTHER_ZONE, "ns1", "A"))
        .await
        .unwrap_or_else(|s| panic!("{t}: {s:?}"))
        .into_inner();
    assert_eq!(set.records.len(), 1, "{t}");
    push(
        &mut other,
        vec![batch(
            OTHER_ZONE,
            vec![create(a_record("www", "192.0.2.2"))],
        )],
    )
    .await
    .unwrap_or_else(|s| panic!("{t}: {s:?}"));

    // Any other zone, existing or not: PERMISSION_DENIED, so existence does not leak.
    for zone in [ZONE, "unknown.test."] {
        assert_code(
            other.get_record(query(zone, zone, "")).await,
            Code::PermissionDenied,
            zone,
        );
        assert_code(
            transfer(&mut other, full(zone, 0)).await,
            Code::PermissionDenied,
            zone,
        );
        let mut sync = SyncCall::start(&mut other, subscribe(zone, 0)).await;
        assert_code(sync.next().await, Code::PermissionDenied, zone);
    }
    assert_code(
        push(
            &mut other,
            vec![batch(ZONE, vec![create(a_record("intruder", "192.0.2.3"))])],
        )
        .await,
        Code::PermissionDenied,
        "push into another zone",
    );
    assert_eq!(serial_of(&mut fx.admin(), ZONE).await, SERIAL, "{t}");
}

async fn health_check_needs_no_credentials(t: Transport) {
    let fx = Fixture::start(t).await;
    let response = HealthClient::new(fx.channel.clone())
        .check(HealthCheckRequest {
            service: "zone.v1.Zones".into(),
        })
        .await
        .unwrap_or_else(|s| panic!("{t}: health: {s:?}"));
    assert_eq!(
        response.get_ref().status,
        ServingStatus::Serving as i32,
        "{t}"
    );
}

/// Outside the matrix: plaintext exists only for HTTP/2 (h2c; HTTP/3 always runs over QUIC's TLS),
/// so there is no second transport to run this over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_over_plaintext_are_refused() {
    let bound = Server::builder()
        .wires(grpc_h3::Wires::H2)
        .add_service(zones_server(store()))
        .layer(AuthLayer::new(users()))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = bound.h2_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(bound.serve_with_shutdown(async {
        let _ = rx.await;
    }));
    let channel = Endpoint::new(format!("http://{addr}"))
        .unwrap()
        .transport(Transport::H2)
        .timeout(Duration::from_secs(20))
        .connect()
        .await
        .unwrap();

    let status = assert_code(
        zones_client(channel, Some(ADMIN))
            .get_record(query(ZONE, "www", ""))
            .await,
        Code::Unauthenticated,
        "valid credentials over h2c",
    );
    assert!(
        status.message().contains("TLS"),
        "the message says TLS is required: {status:?}"
    );
    let _ = tx.send(());
}
