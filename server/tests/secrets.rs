//! No credential, `authorization` value or private key reaches the logs, at any level, from any
//! crate: a zone server with auth and optional mTLS is driven over HTTP/2 and HTTP/3 with good,
//! bad and misdirected credentials while every tracing event (and every `log` record, bridged) of
//! the process is captured at TRACE, then the capture is searched for the secrets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use dev_certs::DevCerts;
use grpc_h3::{Channel, Endpoint, Server, ServerTls, Transport};
use tonic::Code;
use tonic::metadata::MetadataValue;
use zone_proto::zone::v1::change::Op;
use zone_proto::zone::v1::zones_client::ZonesClient;
use zone_proto::zone::v1::{Change, ChangeBatch, Record, RecordQuery};
use zone_server::auth::{AuthLayer, Users};
use zone_server::zones::{ZoneStore, zones_server};

const ZONE: &str = "example.test.";
const ZONE_TEXT: &str = "$ORIGIN example.test.\n$TTL 300\n\
    @ SOA ns1 hostmaster 1 7200 900 1209600 300\n\
    www A 192.0.2.1\n";

/// Distinctive passwords, so any appearance in the log is a leak and not a coincidence.
const ADMIN: (&str, &str) = ("admin", "Adm1n-s3cret-pw-7f3a");
const READER: (&str, &str) = ("reader", "R3ader-s3cret-pw-91c2");
const WRONG_PASSWORD: &str = "Wr0ng-guess-pw-5d0e";
const STRANGER: (&str, &str) = ("mallory", "Mall0ry-s3cret-pw-44b8");
const BEARER: &str = "Bearer tok-8c1f9e2d7a6b5c4d";

/// Everything the process logs, at every level, from every target.
fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        // `try_init` also routes `log` records (rustls, parts of quinn) into tracing.
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .try_init()
            .expect("install the capturing subscriber");
        buf
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn basic(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

fn users() -> Users {
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
}

async fn channel(certs: &DevCerts, transport: Transport, addr: SocketAddr, mtls: bool) -> Channel {
    let mut endpoint = Endpoint::new(format!("https://{addr}"))
        .unwrap()
        .transport(transport)
        .ca_certificate_pem(&certs.ca_pem)
        .unwrap()
        .server_name("localhost")
        .timeout(Duration::from_secs(20));
    if mtls {
        endpoint = endpoint
            .identity_pem(&certs.client_cert_pem, &certs.client_key_pem)
            .unwrap();
    }
    endpoint.connect().await.unwrap()
}

/// A `GetRecord` with `authorization` set to `header` (if any); the status code.
async fn get_record(channel: &Channel, header: Option<&str>) -> Code {
    let mut req = tonic::Request::new(RecordQuery {
        zone: ZONE.into(),
        name: "www".into(),
        r#type: "A".into(),
    });
    if let Some(h) = header {
        req.metadata_mut()
            .insert("authorization", MetadataValue::try_from(h).unwrap());
    }
    match ZonesClient::new(channel.clone()).get_record(req).await {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

/// A `PushChanges` with `authorization: header`; the status code.
async fn push(channel: &Channel, header: &str) -> Code {
    let batch = ChangeBatch {
        zone: ZONE.into(),
        changes: vec![Change {
            op: Op::Create.into(),
            record: Some(Record {
                name: "new".into(),
                r#type: "A".into(),
                class: String::new(),
                ttl: 60,
                rdata: "192.0.2.9".into(),
            }),
            previous: None,
        }],
        expected_serial: None,
    };
    let mut req = tonic::Request::new(tokio_stream::iter(vec![batch]));
    req.metadata_mut()
        .insert("authorization", MetadataValue::try_from(header).unwrap());
    match ZonesClient::new(channel.clone()).push_changes(req).await {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

/// Fragments of the secret part of a PKCS#8 EC key PEM (the private scalar; the public key at its
/// end is in the certificate, which may be logged): base64 windows of the PEM body over the
/// scalar, and the scalar as hex and as a `{:?}` byte list.
fn key_fragments(pem: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(pem).unwrap();
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(&body)
        .unwrap();
    // ECPrivateKey (RFC 5915): version INTEGER 1, privateKey OCTET STRING (32 bytes for P-256).
    let at = der
        .windows(5)
        .position(|w| w == [0x02, 0x01, 0x01, 0x04, 0x20])
        .expect("a P-256 PKCS#8 key")
        + 5;
    let scalar = &der[at..at + 32];
    let mut out = Vec::new();
    // Base64 characters that encode only scalar bytes: 16 of them are 96 bits, no coincidence.
    let (first, last) = (at.div_ceil(3) * 4, (at + 32) / 3 * 4);
    for start in (first..last.saturating_sub(16)).step_by(4) {
        out.push(body[start..start + 16].to_owned());
    }
    for window in scalar.chunks(12).filter(|w| w.len() == 12) {
        out.push(window.iter().map(|b| format!("{b:02x}")).collect());
        out.push(format!("{window:?}").trim_matches(['[', ']']).to_owned());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_logs_at_any_level() {
    let log = captured();
    let certs = DevCerts::generate().unwrap();
    let store = ZoneStore::new();
    store.insert_zone_text(ZONE, ZONE_TEXT).unwrap();
    let tls = ServerTls::from_pem(&certs.server_cert_pem, &certs.server_key_pem)
        .unwrap()
        .client_ca_pem(&certs.ca_pem, false)
        .unwrap();
    let bound = Server::builder()
        .tls(tls)
        .wires(grpc_h3::Wires::Both)
        .add_service(zones_server(store))
        .layer(AuthLayer::new(users()))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (h2, h3) = (bound.h2_addr().unwrap(), bound.h3_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bound.serve_with_shutdown(async {
        let _ = stopped.await;
    }));

    let admin = basic(ADMIN.0, ADMIN.1);
    let wrong = basic(ADMIN.0, WRONG_PASSWORD);
    let stranger = basic(STRANGER.0, STRANGER.1);
    let reader = basic(READER.0, READER.1);
    for (transport, addr) in [(Transport::H2, h2), (Transport::H3, h3)] {
        for mtls in [false, true] {
            let ch = channel(&certs, transport, addr, mtls).await;
            let cases = [
                (Some(admin.as_str()), Code::Ok),
                (Some(wrong.as_str()), Code::Unauthenticated),
                (Some(stranger.as_str()), Code::Unauthenticated),
                (Some(BEARER), Code::Unauthenticated),
                (Some("Basic !!not-base64!!"), Code::Unauthenticated),
                (None, Code::Unauthenticated),
            ];
            for (header, want) in cases {
                let got = get_record(&ch, header).await;
                assert_eq!(got, want, "{transport} mtls={mtls} {header:?}");
            }
            // Right password, no right on the method.
            assert_eq!(push(&ch, &reader).await, Code::PermissionDenied);
            // Twice with good credentials: the second is served from the verification cache.
            assert_eq!(get_record(&ch, Some(&admin)).await, Code::Ok);
        }
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();

    let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    // Which crates spoke, by the first path segment of each line's target.
    let crates: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|l| {
            // `<time> <LEVEL> [spans:] <target>: <message>`: the first plain path ending in ':'.
            l.split_whitespace().skip(2).find_map(|t| {
                let t = t.strip_suffix(':')?;
                let path = (t.contains("::") || t == "grpc_h3")
                    && t.split("::").all(|seg| {
                        !seg.is_empty()
                            && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    });
                path.then(|| t.split("::").next().unwrap_or(t))
            })
        })
        .collect();
    eprintln!("crates in the log: {crates:?}");
    // The capture really holds TRACE output of every layer, or its silence would prove nothing.
    for needle in [
        "TRACE",
        "DEBUG",
        "h2::",
        "quinn",
        "rustls",
        "zone_server::auth",
        "authenticated",
        "rejected: invalid credentials",
    ] {
        assert!(text.contains(needle), "log has no `{needle}`");
    }
    let mut secrets: Vec<String> = vec![
        ADMIN.1.into(),
        READER.1.into(),
        WRONG_PASSWORD.into(),
        STRANGER.1.into(),
        BEARER.into(),
        "tok-8c1f9e2d7a6b5c4d".into(),
        "PRIVATE KEY".into(),
    ];
    for header in [&admin, &wrong, &stranger, &reader] {
        let token = header.trim_start_matches("Basic ");
        secrets.push(header.clone());
        secrets.push(token.to_owned());
        // Also a prefix of the token, in case a log line truncates it.
        secrets.push(token[..12].to_owned());
    }
    for pem in [
        &certs.server_key_pem,
        &certs.client_key_pem,
        &certs.ca_key_pem,
    ] {
        secrets.extend(key_fragments(pem));
    }
    let leaks: Vec<&String> = secrets
        .iter()
        .filter(|s| text.contains(s.as_str()))
        .collect();
    eprintln!(
        "captured {} log lines ({} bytes); searched for {} secret fragments; leaked {}",
        text.lines().count(),
        text.len(),
        secrets.len(),
        leaks.len()
    );
    if !leaks.is_empty() {
        let line = text
            .lines()
            .find(|l| leaks.iter().any(|s| l.contains(s.as_str())))
            .unwrap_or_default();
        panic!("secrets in the log: {leaks:?}\nfirst line: {line}");
    }
}
