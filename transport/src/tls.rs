//! rustls configurations for both wires: ALPN `h2` over TCP (RFC 9113 §3.2), ALPN `h3` over QUIC
//! (RFC 9114 §3.1, TLS 1.3 only per RFC 9001 §4.2), optional client certificates (mTLS).
//!
//! The ring provider is passed explicitly to every builder instead of relying on a process-wide
//! default, so the crate works whether or not the application installed one.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::error::{Error, Kind};

pub(crate) const ALPN_H2: &[u8] = b"h2";
pub(crate) const ALPN_H3: &[u8] = b"h3";

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn config_error(what: &str, err: impl Into<crate::error::BoxError>) -> Error {
    Error::with(Kind::Config, err).context(what.to_string())
}

pub(crate) fn certs_from_pem(
    pem: &[u8],
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| config_error(what, e))?;
    if certs.is_empty() {
        return Err(Error::new(Kind::Config).context(format!("{what}: no certificate in PEM")));
    }
    Ok(certs)
}

pub(crate) fn key_from_pem(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| config_error(what, e))
}

pub(crate) fn roots_from_pem(pem: &[u8], what: &str) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from_pem(pem, what)? {
        roots.add(cert).map_err(|e| config_error(what, e))?;
    }
    Ok(roots)
}

/// TLS settings of a [`Server`](crate::Server): its certificate chain and key, and optionally the CA
/// that client certificates must chain to (mTLS).
#[derive(Debug)]
pub struct ServerTls {
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_ca: Option<(Arc<RootCertStore>, bool)>,
}

impl Clone for ServerTls {
    fn clone(&self) -> Self {
        ServerTls {
            cert_chain: self.cert_chain.clone(),
            key: self.key.clone_key(),
            client_ca: self.client_ca.clone(),
        }
    }
}

impl ServerTls {
    /// A certificate chain (leaf first) and its private key, both PEM.
    pub fn from_pem(cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, Error> {
        Ok(ServerTls {
            cert_chain: certs_from_pem(cert_chain_pem, "server certificate")?,
            key: key_from_pem(key_pem, "server private key")?,
            client_ca: None,
        })
    }

    /// Asks clients for a certificate chaining to `ca_pem`. With `required`, clients without one are
    /// refused in the handshake; otherwise they are served and handlers see no peer certificate.
    pub fn client_ca_pem(mut self, ca_pem: &[u8], required: bool) -> Result<Self, Error> {
        let roots = roots_from_pem(ca_pem, "client CA")?;
        self.client_ca = Some((Arc::new(roots), required));
        Ok(self)
    }

    /// Builds the rustls server config for one wire.
    /// A secret for QUIC stateless-reset tokens derived from the private key, so a restarted
    /// server (same key) can end its predecessor's connections at once: a client that sends to a
    /// connection the new process does not know gets a stateless reset it can verify (RFC 9000
    /// §10.3) instead of waiting out its idle timeout. The token is an HMAC of the connection ID
    /// (§10.3.2); the key never leaves this hash.
    pub(crate) fn stateless_reset_secret(&self) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"grpc-h3 QUIC stateless reset key v1\0");
        ctx.update(self.key.secret_der());
        let mut secret = [0; 32];
        secret.copy_from_slice(ctx.finish().as_ref());
        secret
    }

    pub(crate) fn server_config(&self, alpn: &[u8]) -> Result<ServerConfig, Error> {
        let provider = provider();
        // QUIC requires TLS 1.3 (RFC 9001 §4.2); TCP keeps 1.2 for older gRPC peers.
        let versions: &[&rustls::SupportedProtocolVersion] = if alpn == ALPN_H3 {
            &[&rustls::version::TLS13]
        } else {
            rustls::DEFAULT_VERSIONS
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| config_error("TLS versions", e))?;
        let builder = match &self.client_ca {
            Some((roots, required)) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
                let verifier = if *required {
                    verifier
                } else {
                    verifier.allow_unauthenticated()
                };
                let verifier = verifier.build().map_err(|e| config_error("client CA", e))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(self.cert_chain.clone(), self.key.clone_key())
            .map_err(|e| config_error("server certificate and key", e))?;
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(config)
    }
}

/// Client configs already built, by ALPN.
type BuiltConfigs = Vec<(&'static [u8], Arc<ClientConfig>)>;

/// Client-side TLS material collected by the [`Endpoint`](crate::Endpoint) builder.
#[derive(Debug)]
pub(crate) struct ClientTls {
    /// TLS session tickets, shared by every connection made from one `Endpoint` (and its clones),
    /// so reconnects resume (RFC 8446 §2.2) and may send 0-RTT data.
    pub(crate) sessions: Arc<rustls::client::ClientSessionMemoryCache>,
    /// Offer 0-RTT early data when resuming (HTTP/3 only).
    pub(crate) early_data: bool,
    pub(crate) roots: Option<RootCertStore>,
    pub(crate) identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    pub(crate) server_name: Option<String>,
    /// Built configs by ALPN, shared by clones: rustls resumes a session only under the very
    /// config (verifier instance) that obtained its ticket, so channels from one endpoint share it.
    built: Arc<std::sync::Mutex<BuiltConfigs>>,
}

impl Default for ClientTls {
    fn default() -> Self {
        ClientTls {
            sessions: Arc::new(rustls::client::ClientSessionMemoryCache::new(64)),
            early_data: false,
            roots: None,
            identity: None,
            server_name: None,
            built: Default::default(),
        }
    }
}

impl Clone for ClientTls {
    fn clone(&self) -> Self {
        ClientTls {
            sessions: self.sessions.clone(),
            early_data: self.early_data,
            roots: self.roots.clone(),
            identity: self
                .identity
                .as_ref()
                .map(|(c, k)| (c.clone(), k.clone_key())),
            server_name: self.server_name.clone(),
            built: self.built.clone(),
        }
    }
}

impl ClientTls {
    /// Call after any change: later connections build fresh configs (clones made before the
    /// change keep theirs).
    pub(crate) fn changed(&mut self) {
        self.built = Default::default();
    }

    /// The rustls config for `alpn`, built once per endpoint.
    pub(crate) fn client_config(&self, alpn: &'static [u8]) -> Result<Arc<ClientConfig>, Error> {
        let mut built = self
            .built
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, config)) = built.iter().find(|(a, _)| *a == alpn) {
            return Ok(config.clone());
        }
        let config = Arc::new(self.build(alpn)?);
        built.push((alpn, config.clone()));
        Ok(config)
    }

    fn build(&self, alpn: &[u8]) -> Result<ClientConfig, Error> {
        let versions: &[&rustls::SupportedProtocolVersion] = if alpn == ALPN_H3 {
            &[&rustls::version::TLS13]
        } else {
            rustls::DEFAULT_VERSIONS
        };
        let roots = match &self.roots {
            Some(r) => r.clone(),
            None => {
                return Err(Error::new(Kind::Config).context(
                    "no trust roots: set the server's CA with Endpoint::ca_certificate_pem",
                ));
            }
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .map_err(|e| config_error("TLS versions", e))?
            .with_root_certificates(roots);
        let mut config = match &self.identity {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(|e| config_error("client certificate and key", e))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![alpn.to_vec()];
        config.resumption = rustls::client::Resumption::store(self.sessions.clone());
        config.enable_early_data = self.early_data && alpn == ALPN_H3;
        Ok(config)
    }

    /// The name verified against the server certificate: the override, else the URI host.
    pub(crate) fn server_name(&self, host: &str) -> Result<ServerName<'static>, Error> {
        let name = self.server_name.as_deref().unwrap_or(host);
        // URIs carry IPv6 literals in brackets; certificates don't.
        let name = name.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(name.to_string())
            .map_err(|e| config_error(&format!("TLS server name `{name}`"), e))
    }
}
