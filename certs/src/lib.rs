//! Development certificates: a private CA plus server and client leaf certificates, generated with
//! rcgen (ECDSA P-256) and cached in a directory so every binary and test trusts the same CA.
//!
//! Layout of a certificate directory (PEM files):
//!
//! | file         | content                                                              |
//! |--------------|----------------------------------------------------------------------|
//! | `ca.pem`     | CA certificate (basicConstraints CA, keyCertSign) — the trust root    |
//! | `ca.key`     | CA private key (mode 0600)                                           |
//! | `server.pem` | server leaf: SANs `localhost`, `127.0.0.1`, `::1`; EKU serverAuth     |
//! | `server.key` | server private key (mode 0600)                                       |
//! | `client.pem` | client leaf: CN `zone-client`; EKU clientAuth (for mTLS)              |
//! | `client.key` | client private key (mode 0600)                                       |
//!
//! [`DevCerts::load_or_generate`] reuses a complete set. When only some files exist it keeps an
//! existing CA (so clients that already trust `ca.pem` keep working) and reissues the leaves;
//! without a CA it generates everything. Files that exist but cannot be read or parsed are an
//! error, never silently overwritten. First-time generation takes a lock file
//! (`.dev-certs.lock`) so that several processes starting at once in the same directory end up
//! with one consistent set.
//!
//! These certificates are for development and tests only: the CA key sits next to the
//! certificates, and validity runs from 1975 to 4096 (rcgen's defaults).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// File name of the CA certificate in a certificate directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key.
pub const CA_KEY_FILE: &str = "ca.key";
/// File name of the server certificate.
pub const SERVER_CERT_FILE: &str = "server.pem";
/// File name of the server private key.
pub const SERVER_KEY_FILE: &str = "server.key";
/// File name of the client certificate.
pub const CLIENT_CERT_FILE: &str = "client.pem";
/// File name of the client private key.
pub const CLIENT_KEY_FILE: &str = "client.key";

/// Names the server certificate is valid for.
pub const SERVER_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
/// Common name of the client certificate.
pub const CLIENT_COMMON_NAME: &str = "zone-client";

const LOCK_FILE: &str = ".dev-certs.lock";
/// How long to wait for another process that is generating into the same directory. A lock file
/// older than this is taken to be left over by a crashed process and is removed.
const LOCK_WAIT: Duration = Duration::from_secs(10);
const LOCK_POLL: Duration = Duration::from_millis(25);

/// Errors of generating, loading or storing development certificates.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// rcgen failed to generate a key or sign a certificate.
    #[error("generating development certificates: {0}")]
    Generate(#[from] rcgen::Error),
    /// The certificate directory could not be created.
    #[error("creating certificate directory {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A file exists but could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A file could not be written.
    #[error("writing {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A key file does not hold a PEM private key rcgen can use.
    #[error("{} is not a usable PEM private key: {source}", path.display())]
    InvalidKey {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: rcgen::Error,
    },
    /// A certificate file does not hold a PEM certificate.
    #[error("{} holds no PEM certificate", path.display())]
    InvalidCertificate {
        /// The file.
        path: PathBuf,
    },
    /// Another process held the generation lock for too long.
    #[error(
        "timed out waiting for {} (another process generating certificates?); remove it if stale",
        path.display()
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
}

/// A CA and server/client leaf certificates signed by it, all PEM-encoded.
#[derive(Clone, PartialEq, Eq)]
pub struct DevCerts {
    /// CA certificate (the trust root for clients and for mTLS client verification).
    pub ca_pem: Vec<u8>,
    /// CA private key (needed only to issue further leaves).
    pub ca_key_pem: Vec<u8>,
    /// Server certificate.
    pub server_cert_pem: Vec<u8>,
    /// Server private key (PKCS#8).
    pub server_key_pem: Vec<u8>,
    /// Client certificate for mTLS.
    pub client_cert_pem: Vec<u8>,
    /// Client private key (PKCS#8).
    pub client_key_pem: Vec<u8>,
}

// Keys stay out of debug output so a stray `{:?}` cannot leak them into logs.
impl std::fmt::Debug for DevCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCerts")
            .field("ca_pem", &format_args!("{} bytes", self.ca_pem.len()))
            .field(
                "server_cert_pem",
                &format_args!("{} bytes", self.server_cert_pem.len()),
            )
            .field(
                "client_cert_pem",
                &format_args!("{} bytes", self.client_cert_pem.len()),
            )
            .finish_non_exhaustive()
    }
}

impl DevCerts {
    /// Generates a fresh CA and both leaves in memory.
    pub fn generate() -> Result<DevCerts, Error> {
        let ca_key = KeyPair::generate()?;
        let ca_params = ca_params();
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca_pem = ca_cert.pem().into_bytes();
        let ca_key_pem = ca_key.serialize_pem().into_bytes();
        let issuer = Issuer::new(ca_params, ca_key);
        let (server_cert_pem, server_key_pem) = issue_server(&issuer)?;
        let (client_cert_pem, client_key_pem) = issue_client(&issuer)?;
        Ok(DevCerts {
            ca_pem,
            ca_key_pem,
            server_cert_pem,
            server_key_pem,
            client_cert_pem,
            client_key_pem,
        })
    }

    /// Loads the certificate set from `dir`, generating and writing whatever is missing (see the
    /// module docs). Creates `dir` if needed; private keys are created with mode 0600.
    pub fn load_or_generate(dir: &Path) -> Result<DevCerts, Error> {
        fs::create_dir_all(dir).map_err(|source| Error::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        if let Some(certs) = load_complete(dir)? {
            return Ok(certs);
        }
        let _lock = DirLock::acquire(dir)?;
        // Another process may have finished while we waited for the lock.
        if let Some(certs) = load_complete(dir)? {
            return Ok(certs);
        }
        let ca = match (
            read_optional(&dir.join(CA_CERT_FILE))?,
            read_optional(&dir.join(CA_KEY_FILE))?,
        ) {
            (Some(ca_pem), Some(ca_key_pem)) => {
                validate_cert(&dir.join(CA_CERT_FILE), &ca_pem)?;
                parse_key(&dir.join(CA_KEY_FILE), &ca_key_pem)?;
                Some((ca_pem, ca_key_pem))
            }
            _ => None,
        };
        let certs = match ca {
            Some((ca_pem, ca_key_pem)) => reissue_leaves(dir, ca_pem, ca_key_pem)?,
            None => DevCerts::generate()?,
        };
        certs.write_to(dir)?;
        Ok(certs)
    }

    /// Writes all six files into `dir` (which must exist), each atomically (temporary file and
    /// rename); key files get mode 0600, certificates 0644.
    pub fn write_to(&self, dir: &Path) -> Result<(), Error> {
        // The CA goes last: a reader that sees a complete set then sees matching leaves.
        write_atomic(&dir.join(SERVER_KEY_FILE), &self.server_key_pem, 0o600)?;
        write_atomic(&dir.join(SERVER_CERT_FILE), &self.server_cert_pem, 0o644)?;
        write_atomic(&dir.join(CLIENT_KEY_FILE), &self.client_key_pem, 0o600)?;
        write_atomic(&dir.join(CLIENT_CERT_FILE), &self.client_cert_pem, 0o644)?;
        write_atomic(&dir.join(CA_KEY_FILE), &self.ca_key_pem, 0o600)?;
        write_atomic(&dir.join(CA_CERT_FILE), &self.ca_pem, 0o644)?;
        Ok(())
    }
}

/// The CA's parameters. Fixed, so that a reissued leaf names the same issuer.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "grpc-h3 development CA");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "grpc-h3 development");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn issue_server(issuer: &Issuer<'_, KeyPair>) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let names: Vec<String> = SERVER_NAMES.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(names)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, SERVER_NAMES[0]);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    issue_leaf(params, issuer)
}

fn issue_client(issuer: &Issuer<'_, KeyPair>) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, CLIENT_COMMON_NAME);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    issue_leaf(params, issuer)
}

fn issue_leaf(
    params: CertificateParams,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem().into_bytes(), key.serialize_pem().into_bytes()))
}

/// Issues both leaves under an existing CA (its subject read from the certificate, so a CA that
/// someone else generated works too).
fn reissue_leaves(dir: &Path, ca_pem: Vec<u8>, ca_key_pem: Vec<u8>) -> Result<DevCerts, Error> {
    let ca_path = dir.join(CA_CERT_FILE);
    let ca_key = parse_key(&dir.join(CA_KEY_FILE), &ca_key_pem)?;
    let ca_text = std::str::from_utf8(&ca_pem).map_err(|_| Error::InvalidCertificate {
        path: ca_path.clone(),
    })?;
    let issuer = Issuer::from_ca_cert_pem(ca_text, ca_key)
        .map_err(|_| Error::InvalidCertificate { path: ca_path })?;
    let (server_cert_pem, server_key_pem) = issue_server(&issuer)?;
    let (client_cert_pem, client_key_pem) = issue_client(&issuer)?;
    Ok(DevCerts {
        ca_pem,
        ca_key_pem,
        server_cert_pem,
        server_key_pem,
        client_cert_pem,
        client_key_pem,
    })
}

/// Reads all six files; `None` when any is missing.
fn load_complete(dir: &Path) -> Result<Option<DevCerts>, Error> {
    let mut contents = Vec::with_capacity(6);
    for name in [
        CA_CERT_FILE,
        CA_KEY_FILE,
        SERVER_CERT_FILE,
        SERVER_KEY_FILE,
        CLIENT_CERT_FILE,
        CLIENT_KEY_FILE,
    ] {
        let path = dir.join(name);
        match read_optional(&path)? {
            Some(bytes) => contents.push((path, bytes)),
            None => return Ok(None),
        }
    }
    for (i, (path, bytes)) in contents.iter().enumerate() {
        // Even indices are certificates, odd ones keys (order of the list above).
        if i % 2 == 0 {
            validate_cert(path, bytes)?;
        } else {
            parse_key(path, bytes)?;
        }
    }
    let mut it = contents.into_iter().map(|(_, bytes)| bytes);
    let mut next = || it.next().unwrap_or_default();
    Ok(Some(DevCerts {
        ca_pem: next(),
        ca_key_pem: next(),
        server_cert_pem: next(),
        server_key_pem: next(),
        client_cert_pem: next(),
        client_key_pem: next(),
    }))
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, Error> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn parse_key(path: &Path, pem: &[u8]) -> Result<KeyPair, Error> {
    let text = std::str::from_utf8(pem).map_err(|_| Error::InvalidKey {
        path: path.to_path_buf(),
        source: rcgen::Error::CouldNotParseKeyPair,
    })?;
    KeyPair::from_pem(text).map_err(|source| Error::InvalidKey {
        path: path.to_path_buf(),
        source,
    })
}

fn validate_cert(path: &Path, pem: &[u8]) -> Result<(), Error> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let has = |needle: &[u8]| pem.windows(needle.len()).any(|w| w == needle);
    if has(BEGIN) && has(END) {
        Ok(())
    } else {
        Err(Error::InvalidCertificate {
            path: path.to_path_buf(),
        })
    }
}

/// Writes `bytes` to a fresh temporary file created with `mode`, then renames it over `path`, so
/// the final file never exists with wider permissions or partial content.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    let write_err = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(write_err)
}

/// An exclusive lock on a certificate directory, held as a lock file created with `create_new`.
struct DirLock {
    path: PathBuf,
}

impl DirLock {
    fn acquire(dir: &Path) -> Result<DirLock, Error> {
        let path = dir.join(LOCK_FILE);
        let start = Instant::now();
        loop {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(_) => return Ok(DirLock { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if start.elapsed() > LOCK_WAIT {
                        return Err(Error::Locked { path });
                    }
                    if lock_is_stale(&path) {
                        // Left by a crashed process; the next round retries creating it.
                        let _ = fs::remove_file(&path);
                    } else {
                        std::thread::sleep(LOCK_POLL);
                    }
                }
                Err(source) => return Err(Error::Write { path, source }),
            }
        }
    }
}

fn lock_is_stale(path: &Path) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > LOCK_WAIT)
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
