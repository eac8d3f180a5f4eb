//! The transport's integration tests, one binary (one link instead of one per file): the
//! behaviour matrix over HTTP/2, HTTP/3 and Auto, and the wire-specific cases beside it.
//! tests/README.md lists every case.

mod amplification;
mod auto;
mod bad_input;
mod balance;
mod early_data;
mod ephemeral_bind;
mod errors;
mod limits;
mod matrix;
mod path;
mod peer_resets;
mod props;
mod tls_policy;
