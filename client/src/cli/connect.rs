//! Connection set-up for `zone-client`: the `grpc_h3` channel and per-RPC Basic credentials
//! (RFC 7617) attached by a tonic interceptor.

use std::io::IsTerminal as _;
use std::path::Path;

use base64::Engine as _;
use grpc_h3::{Channel, Endpoint, Transport};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use zone_proto::zone::v1::zones_client::ZonesClient;

use super::CliError;

/// Environment variable holding the password for `--user`.
pub const PASSWORD_ENV: &str = "ZONE_PASSWORD";

/// The generated client over our channel with credentials attached.
pub type Client = ZonesClient<InterceptedService<Channel, Credentials>>;

/// Adds `authorization: Basic …` to every call; without a user it adds nothing.
#[derive(Clone, Default)]
pub struct Credentials {
    header: Option<MetadataValue<Ascii>>,
}

// Hand-written so the header never ends up in logs.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("header", &self.header.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Credentials {
    /// No credentials: calls carry no `authorization` header.
    pub fn none() -> Self {
        Credentials { header: None }
    }

    /// Basic credentials for `user` and `password` (RFC 7617 §2).
    pub fn basic(user: &str, password: &str) -> Result<Self, CliError> {
        // RFC 7617 §2: the user-id cannot contain a colon.
        if user.contains(':') {
            return Err(CliError::Usage("--user must not contain `:`".into()));
        }
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let mut header = MetadataValue::try_from(format!("Basic {token}"))
            .map_err(|_| CliError::Usage("credentials cannot be sent as a header".into()))?;
        header.set_sensitive(true);
        Ok(Credentials {
            header: Some(header),
        })
    }

    /// Credentials for `--user`: the password comes from `ZONE_PASSWORD`, else from a no-echo
    /// prompt when stdin is a terminal. Passwords are never taken from the command line.
    pub fn for_user(user: Option<&str>) -> Result<Self, CliError> {
        let Some(user) = user else {
            return Ok(Credentials::none());
        };
        let password = match std::env::var(PASSWORD_ENV) {
            Ok(password) => password,
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(CliError::Usage(format!(
                    "{PASSWORD_ENV} is not valid UTF-8"
                )));
            }
            Err(std::env::VarError::NotPresent) if std::io::stdin().is_terminal() => {
                rpassword::prompt_password(format!("password for {user}: ")).map_err(|e| {
                    CliError::Usage(format!("cannot read the password from the terminal: {e}"))
                })?
            }
            Err(std::env::VarError::NotPresent) => {
                return Err(CliError::Usage(format!(
                    "no password for --user {user}: set {PASSWORD_ENV} or run from a terminal"
                )));
            }
        };
        Credentials::basic(user, &password)
    }
}

impl tonic::service::Interceptor for Credentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(header) = &self.header {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
        }
        Ok(request)
    }
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions<'a> {
    pub addr: &'a str,
    pub transport: Transport,
    pub ca: Option<&'a Path>,
    pub server_name: Option<&'a str>,
    pub plaintext: bool,
}

/// Connects eagerly so that an unreachable server is reported before any output.
pub async fn connect(
    opts: &ConnectOptions<'_>,
    credentials: Credentials,
) -> Result<Client, CliError> {
    let items = crate::servers::parse(opts.addr).map_err(CliError::Usage)?;
    let endpoints = items
        .iter()
        .map(|addr| endpoint(opts, addr))
        .collect::<Result<Vec<_>, _>>()?;
    let channel = crate::servers::connect(&items, endpoints)
        .await
        .map_err(|source| CliError::Connect {
            addr: opts.addr.to_owned(),
            transport: opts.transport,
            source,
        })?;
    tracing::info!(transport = %channel.transport_in_use(), "connected to {}", opts.addr);
    // Sync snapshots carry a whole zone in one message: accept what the server may send.
    Ok(ZonesClient::with_interceptor(channel, credentials)
        .max_decoding_message_size(zone_proto::MAX_ZONE_MESSAGE_SIZE))
}

/// Builds the endpoint of one server `addr` of `--addr`; every problem here is a usage error
/// (exit 2).
fn endpoint(opts: &ConnectOptions<'_>, addr: &str) -> Result<Endpoint, CliError> {
    if opts.plaintext {
        if opts.ca.is_some() {
            return Err(CliError::Usage(
                "--ca and --plaintext exclude each other".into(),
            ));
        }
        if opts.transport == Transport::H3 {
            return Err(CliError::Usage(
                "--plaintext needs --transport h2: HTTP/3 always uses TLS".into(),
            ));
        }
    }
    let scheme = if opts.plaintext { "http" } else { "https" };
    let mut endpoint = Endpoint::new(format!("{scheme}://{addr}"))
        .map_err(|e| CliError::Usage(format!("invalid --addr `{addr}`: {e}")))?
        .transport(opts.transport);
    if !opts.plaintext {
        let Some(ca) = opts.ca else {
            return Err(CliError::Usage(
                "no CA certificate: pass --ca FILE (a dev server writes its CA to ca.pem in its \
                 --cert-dir), or --plaintext for an h2c test server"
                    .into(),
            ));
        };
        let pem = std::fs::read(ca).map_err(|e| {
            CliError::Usage(format!("cannot read CA certificate {}: {e}", ca.display()))
        })?;
        endpoint = endpoint.ca_certificate_pem(&pem).map_err(|e| {
            CliError::Usage(format!("invalid CA certificate {}: {e}", ca.display()))
        })?;
    }
    if let Some(name) = opts.server_name {
        endpoint = endpoint.server_name(name);
    }
    Ok(endpoint)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use tonic::service::Interceptor as _;

    #[test]
    fn basic_credentials_set_the_authorization_header() {
        let mut creds = Credentials::basic("alice", "s3cr:et").unwrap();
        let request = creds.call(tonic::Request::new(())).unwrap();
        let header = request.metadata().get("authorization").unwrap();
        // base64("alice:s3cr:et")
        assert_eq!(header.to_str().unwrap(), "Basic YWxpY2U6czNjcjpldA==");
        assert!(!format!("{creds:?}").contains("YWxp"));
    }

    #[test]
    fn no_user_sends_no_header() {
        let mut creds = Credentials::none();
        let request = creds.call(tonic::Request::new(())).unwrap();
        assert!(request.metadata().get("authorization").is_none());
    }

    #[test]
    fn user_with_colon_is_refused() {
        assert!(matches!(
            Credentials::basic("a:b", "x"),
            Err(CliError::Usage(_))
        ));
    }

    #[test]
    fn missing_ca_is_a_usage_error_naming_the_flag_or_path() {
        let opts = ConnectOptions {
            addr: "127.0.0.1:1",
            transport: Transport::H2,
            ca: None,
            server_name: None,
            plaintext: false,
        };
        let err = endpoint(&opts, opts.addr).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--ca"), "{err}");

        let missing = Path::new("/nonexistent/zone-client-test/ca.pem");
        let opts = ConnectOptions {
            ca: Some(missing),
            ..opts
        };
        let err = endpoint(&opts, opts.addr).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string()
                .contains("/nonexistent/zone-client-test/ca.pem"),
            "{err}"
        );
    }
}
