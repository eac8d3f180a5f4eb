//! The zone server the edge suites sync from: a `ZoneStore` journaled to a redb file, served by
//! grpc-h3's `Server` over HTTP/3 and HTTP/2 with TLS (dev certificates), stoppable so that a
//! suite can start it again on the same journal.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use grpc_h3::{Server, ServerTls, Wires};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use zone_server::journal::{JournalOptions, RedbJournal};
use zone_server::zones::{ZoneStore, zones_server};

/// The certificates every suite's servers and clients share.
pub fn certs() -> &'static dev_certs::DevCerts {
    static CERTS: std::sync::OnceLock<dev_certs::DevCerts> = std::sync::OnceLock::new();
    CERTS.get_or_init(|| dev_certs::DevCerts::generate().unwrap())
}

/// A store holding `zone` from master-file `text`, journaled to `dir/origin.redb` (reopened with
/// its batches when it exists).
pub async fn journaled_store(dir: &Path, zone: &str, text: &str) -> (ZoneStore, Arc<RedbJournal>) {
    let store = ZoneStore::new();
    store.insert_zone_text(zone, text).unwrap();
    let journal = RedbJournal::open(dir.join("origin.redb")).unwrap();
    store
        .attach_journal(journal.clone(), JournalOptions::default())
        .await
        .unwrap();
    (store, journal)
}

/// `Zones` over `store`, listening until [`Serving::stop`].
#[derive(Debug)]
pub struct Serving {
    /// The bound address (UDP for HTTP/3 and TCP for HTTP/2).
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), grpc_h3::Error>>>,
}

impl Serving {
    pub async fn start(store: &ZoneStore, addr: SocketAddr) -> Serving {
        let c = certs();
        let bound = Server::builder()
            .tls(ServerTls::from_pem(&c.server_cert_pem, &c.server_key_pem).unwrap())
            .wires(Wires::Both)
            .drain_timeout(Duration::from_millis(200))
            .add_service(zones_server(store.clone()))
            .bind(addr)
            .await
            .unwrap();
        let addr = bound.h2_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(bound.serve_with_shutdown(async {
            let _ = stopped.await;
        }));
        Serving {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops serving; fails the test if the server does not stop within 5 s or stopped with an
    /// error.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("server did not stop")
                .unwrap()
                .unwrap();
        }
    }
}
