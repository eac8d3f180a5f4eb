//! Shared by the examples: the generated code of their two services and a development certificate
//! set (a CA and a server certificate for `localhost`, made with rcgen on each run).

/// `helloworld.Greeter`, tonic's helloworld service.
pub mod hello {
    tonic::include_proto!("helloworld");
}

/// `grpc.examples.echo.Echo`, tonic's streaming example service.
pub mod echo {
    tonic::include_proto!("grpc.examples.echo");
}

/// TLS for an example server on 127.0.0.1 and the CA its clients trust.
pub fn dev_tls() -> Result<(grpc_h3::ServerTls, Vec<u8>), Box<dyn std::error::Error>> {
    let certs = dev_certs::DevCerts::generate()?;
    let tls = grpc_h3::ServerTls::from_pem(&certs.server_cert_pem, &certs.server_key_pem)?;
    Ok((tls, certs.ca_pem))
}
