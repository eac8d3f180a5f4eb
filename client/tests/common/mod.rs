//! Shared by the client test suites.

pub mod broken;
