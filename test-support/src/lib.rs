//! What the workspace's tests share, so no test file is copied or pulled in with `#[path]`:
//!
//! - [`matrix!`]: one list of behaviours, each `async fn case(t: Transport)`, run as a test over
//!   every wire — HTTP/2, HTTP/3 and Auto;
//! - [`fixture`]: the server the transport matrix runs against (a TestService whose handlers
//!   report what the transport did), its clients and raw helpers;
//! - [`bounded_proptest`]: the time-bounded proptest runner of every property test;
//! - [`killable`]: a server in a runtime of its own, to kill as kill -9 would;
//! - [`nats`]: a real `nats-server -js` per test (or a printed skip when it is not installed).

pub mod bounded_proptest;
pub mod fixture;
pub mod killable;
pub mod nats;

/// Defines `mod h2`, `mod h3` and `mod auto`, each with one `#[tokio::test]` per listed behaviour
/// `async fn case(t: Transport)` of the invoking module. `matrix!(@wires [h2 H2, h3 H3] case, …)`
/// names the wires where a behaviour is specific to some of them.
#[macro_export]
macro_rules! matrix {
    ($($case:ident),* $(,)?) => {
        $crate::matrix!(@wires [h2 H2, h3 H3, auto Auto] $($case),*);
    };
    (@wires [] $($case:ident),* $(,)?) => {};
    (@wires [$module:ident $variant:ident $(, $more:ident $more_variant:ident)*]
        $($case:ident),* $(,)?) => {
        $crate::matrix!(@transport $module, $variant, $($case),*);
        $crate::matrix!(@wires [$($more $more_variant),*] $($case),*);
    };
    (@transport $module:ident, $variant:ident, $($case:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(grpc_h3::Transport::$variant).await
                }
            )*
        }
    };
}
