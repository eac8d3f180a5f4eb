use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::*;

fn der(pem: &[u8]) -> CertificateDer<'static> {
    let mut certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(certs.len(), 1);
    certs.remove(0)
}

fn roots(certs: &DevCerts) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots.add(der(&certs.ca_pem)).unwrap();
    Arc::new(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_verifier(certs: &DevCerts) -> Arc<WebPkiServerVerifier> {
    WebPkiServerVerifier::builder_with_provider(roots(certs), provider())
        .build()
        .unwrap()
}

fn verify_server(certs: &DevCerts, cert_pem: &[u8], name: &str) -> Result<(), rustls::Error> {
    let name = ServerName::try_from(name.to_string()).unwrap();
    server_verifier(certs)
        .verify_server_cert(&der(cert_pem), &[], &name, &[], UnixTime::now())
        .map(|_| ())
}

fn verify_client(certs: &DevCerts, cert_pem: &[u8]) -> Result<(), rustls::Error> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(certs), provider())
        .build()
        .unwrap();
    verifier
        .verify_client_cert(&der(cert_pem), &[], UnixTime::now())
        .map(|_| ())
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn server_certificate_verifies_for_every_local_name() {
    let certs = DevCerts::generate().unwrap();
    for name in ["localhost", "127.0.0.1", "::1"] {
        verify_server(&certs, &certs.server_cert_pem, name)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn server_certificate_is_rejected_for_other_names() {
    let certs = DevCerts::generate().unwrap();
    for name in ["example.com", "127.0.0.2"] {
        assert!(
            verify_server(&certs, &certs.server_cert_pem, name).is_err(),
            "{name}"
        );
    }
}

#[test]
fn leaves_are_not_trusted_under_another_ca() {
    let certs = DevCerts::generate().unwrap();
    let other = DevCerts::generate().unwrap();
    assert!(verify_server(&other, &certs.server_cert_pem, "localhost").is_err());
    assert!(verify_client(&other, &certs.client_cert_pem).is_err());
}

#[test]
fn client_certificate_verifies_for_client_auth_only() {
    let certs = DevCerts::generate().unwrap();
    verify_client(&certs, &certs.client_cert_pem).unwrap();
    // EKU separates the roles: neither leaf is accepted in the other's place.
    assert!(verify_client(&certs, &certs.server_cert_pem).is_err());
    assert!(verify_server(&certs, &certs.client_cert_pem, "localhost").is_err());
}

#[test]
fn certificate_contents_match_the_contract() {
    use x509_parser::extensions::GeneralName;
    let certs = DevCerts::generate().unwrap();

    let ca_der = der(&certs.ca_pem);
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
    assert!(ca.is_ca());
    assert!(ca.key_usage().unwrap().unwrap().value.key_cert_sign());

    let server_der = der(&certs.server_cert_pem);
    let (_, server) = x509_parser::parse_x509_certificate(&server_der).unwrap();
    assert!(!server.is_ca());
    let sans: Vec<String> = server
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => d.to_string(),
            GeneralName::IPAddress(ip) => match ip.len() {
                4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).unwrap()).to_string(),
                16 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).unwrap()).to_string(),
                _ => panic!("bad ip length"),
            },
            other => panic!("unexpected SAN {other:?}"),
        })
        .collect();
    assert_eq!(sans, ["localhost", "127.0.0.1", "::1"]);
    let eku = server.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth);
    assert_eq!(server.issuer(), ca.subject());
    // ECDSA P-256 with SHA-256.
    assert_eq!(
        server.signature_algorithm.algorithm,
        x509_parser::oid_registry::OID_SIG_ECDSA_WITH_SHA256
    );

    let client_der = der(&certs.client_cert_pem);
    let (_, client) = x509_parser::parse_x509_certificate(&client_der).unwrap();
    let cn = client.subject().iter_common_name().next().unwrap();
    assert_eq!(cn.as_str().unwrap(), CLIENT_COMMON_NAME);
    let eku = client.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
}

#[test]
fn load_or_generate_writes_files_with_private_key_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested/certs");
    let certs = DevCerts::load_or_generate(&dir).unwrap();
    for key in [CA_KEY_FILE, SERVER_KEY_FILE, CLIENT_KEY_FILE] {
        assert_eq!(mode(&dir.join(key)), 0o600, "{key}");
    }
    for cert in [CA_CERT_FILE, SERVER_CERT_FILE, CLIENT_CERT_FILE] {
        assert_eq!(mode(&dir.join(cert)), 0o644, "{cert}");
    }
    assert_eq!(
        fs::read(dir.join(SERVER_CERT_FILE)).unwrap(),
        certs.server_cert_pem
    );
    assert_eq!(
        fs::read(dir.join(CLIENT_KEY_FILE)).unwrap(),
        certs.client_key_pem
    );
    assert!(!dir.join(LOCK_FILE).exists());
    // Only the six files remain: no temporaries left behind.
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 6);
    verify_server(&certs, &certs.server_cert_pem, "localhost").unwrap();
}

#[test]
fn load_or_generate_reuses_a_complete_set() {
    let tmp = tempfile::tempdir().unwrap();
    let first = DevCerts::load_or_generate(tmp.path()).unwrap();
    let second = DevCerts::load_or_generate(tmp.path()).unwrap();
    assert_eq!(first, second);
}

#[test]
fn missing_leaves_are_reissued_under_the_existing_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let first = DevCerts::load_or_generate(tmp.path()).unwrap();
    fs::remove_file(tmp.path().join(SERVER_KEY_FILE)).unwrap();
    let second = DevCerts::load_or_generate(tmp.path()).unwrap();
    assert_eq!(first.ca_pem, second.ca_pem);
    assert_ne!(first.server_key_pem, second.server_key_pem);
    // The new leaves chain to the CA that clients already trust.
    verify_server(&first, &second.server_cert_pem, "127.0.0.1").unwrap();
    verify_client(&first, &second.client_cert_pem).unwrap();
    assert_eq!(mode(&tmp.path().join(SERVER_KEY_FILE)), 0o600);
}

#[test]
fn missing_ca_regenerates_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let first = DevCerts::load_or_generate(tmp.path()).unwrap();
    fs::remove_file(tmp.path().join(CA_KEY_FILE)).unwrap();
    let second = DevCerts::load_or_generate(tmp.path()).unwrap();
    assert_ne!(first.ca_pem, second.ca_pem);
    verify_server(&second, &second.server_cert_pem, "localhost").unwrap();
}

#[test]
fn corrupt_key_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    DevCerts::load_or_generate(tmp.path()).unwrap();
    fs::write(tmp.path().join(SERVER_KEY_FILE), b"not a key").unwrap();
    let err = DevCerts::load_or_generate(tmp.path()).unwrap_err();
    assert!(matches!(err, Error::InvalidKey { .. }), "{err:?}");
    assert!(err.to_string().contains(SERVER_KEY_FILE), "{err}");
    // The broken file is left alone for the user to inspect.
    assert_eq!(
        fs::read(tmp.path().join(SERVER_KEY_FILE)).unwrap(),
        b"not a key"
    );
}

#[test]
fn corrupt_certificate_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    DevCerts::load_or_generate(tmp.path()).unwrap();
    fs::write(tmp.path().join(CA_CERT_FILE), b"garbage").unwrap();
    let err = DevCerts::load_or_generate(tmp.path()).unwrap_err();
    assert!(matches!(err, Error::InvalidCertificate { .. }), "{err:?}");
    assert!(err.to_string().contains(CA_CERT_FILE), "{err}");
}

#[test]
fn uncreatable_directory_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("plain-file");
    fs::write(&file, b"x").unwrap();
    let err = DevCerts::load_or_generate(&file.join("certs")).unwrap_err();
    assert!(matches!(err, Error::CreateDir { .. }), "{err:?}");
    assert!(err.to_string().contains("plain-file"), "{err}");
}

#[test]
fn concurrent_first_generation_yields_one_consistent_set() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let dir = dir.clone();
            std::thread::spawn(move || DevCerts::load_or_generate(&dir).unwrap())
        })
        .collect();
    let sets: Vec<DevCerts> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for set in &sets {
        assert_eq!(set, &sets[0]);
    }
    verify_server(&sets[0], &sets[0].server_cert_pem, "localhost").unwrap();
}

#[test]
fn debug_output_hides_keys() {
    let certs = DevCerts::generate().unwrap();
    let shown = format!("{certs:?}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
}
