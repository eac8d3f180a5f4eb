use std::sync::Mutex;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use grpc_h3::Transport;
use tonic::Code;
use tower::ServiceExt as _;
use tower_layer::Layer as _;

use super::*;
use crate::auth::users::cheap_argon2;

const NO_ZONES: Option<&[&str]> = None;

fn users() -> Users {
    let argon = cheap_argon2();
    let mut users = Users::new();
    users
        .add_with(
            &argon,
            "alice",
            b"alice-pw",
            &["zone.v1.Zones/*"],
            Some(&["example.com."]),
        )
        .unwrap();
    users
        .add_with(
            &argon,
            "bob",
            b"bob-pw",
            &["zone.v1.Zones/GetRecord"],
            NO_ZONES,
        )
        .unwrap();
    users
        .add_with(&argon, "root", b"root:pw", &["*"], NO_ZONES)
        .unwrap();
    users
}

/// What the inner service saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    user: Option<AuthenticatedUser>,
    had_authorization: bool,
    other_header: Option<String>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

fn recorder(
    log: Log,
) -> impl tower_service::Service<
    http::Request<()>,
    Response = http::Response<tonic::body::Body>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
+ Sync
+ 'static {
    tower::service_fn(move |req: http::Request<()>| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(Seen {
                user: req.extensions().get::<AuthenticatedUser>().cloned(),
                had_authorization: req.headers().contains_key(AUTHORIZATION),
                other_header: req
                    .headers()
                    .get("x-other")
                    .map(|v| v.to_str().unwrap().to_string()),
            });
            Ok::<_, Infallible>(http::Response::new(tonic::body::Body::default()))
        }
    })
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// A request as grpc-h3 would hand it to the layer; `tls: None` leaves out `ConnectionInfo`.
fn request(path: &str, authorization: Option<&str>, tls: Option<bool>) -> http::Request<()> {
    let mut builder = http::Request::builder()
        .method("POST")
        .uri(format!("https://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("x-other", "kept");
    if let Some(value) = authorization {
        builder = builder.header(AUTHORIZATION, value);
    }
    let mut req = builder.body(()).unwrap();
    if let Some(tls) = tls {
        req.extensions_mut().insert(ConnectionInfo::new(
            if tls { Transport::H3 } else { Transport::H2 },
            Some("127.0.0.1:40000".parse().unwrap()),
            Some("127.0.0.1:50051".parse().unwrap()),
            tls,
        ));
    }
    req
}

struct Harness {
    layer: AuthLayer,
    log: Log,
}

impl Harness {
    fn new() -> Harness {
        Harness::with(AuthLayer::new(users()))
    }

    fn with(layer: AuthLayer) -> Harness {
        Harness {
            layer,
            log: Arc::default(),
        }
    }

    /// Sends one request; returns the gRPC status of a rejection, `None` when it went through.
    async fn call(&self, req: http::Request<()>) -> Option<Status> {
        let svc = self.layer.layer(recorder(self.log.clone()));
        let response = svc.oneshot(req).await.unwrap();
        Status::from_header_map(response.headers())
    }

    fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }
}

fn assert_status(status: Option<Status>, code: Code, message: &str) {
    let status = status.unwrap_or_else(|| panic!("expected {code:?}, request went through"));
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(message),
        "{:?} lacks {message:?}",
        status.message()
    );
}

const GET_RECORD: &str = "/zone.v1.Zones/GetRecord";
const PUSH: &str = "/zone.v1.Zones/PushChanges";

#[tokio::test]
async fn valid_credentials_pass_with_user_and_zones() {
    let h = Harness::new();
    let auth = basic("alice", "alice-pw");
    assert!(
        h.call(request(GET_RECORD, Some(&auth), Some(true)))
            .await
            .is_none()
    );
    let seen = h.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].user,
        Some(AuthenticatedUser {
            name: "alice".into(),
            zones: Some(vec!["example.com.".into()]),
        })
    );
}

#[tokio::test]
async fn authorization_header_is_stripped_and_others_kept() {
    let h = Harness::new();
    let auth = basic("alice", "alice-pw");
    assert!(
        h.call(request(PUSH, Some(&auth), Some(true)))
            .await
            .is_none()
    );
    let seen = h.seen();
    assert!(!seen[0].had_authorization);
    assert_eq!(seen[0].other_header.as_deref(), Some("kept"));
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_answer() {
    let h = Harness::new();
    let wrong = basic("alice", "nope");
    let unknown = basic("mallory", "alice-pw");
    let a = h.call(request(GET_RECORD, Some(&wrong), Some(true))).await;
    let b = h
        .call(request(GET_RECORD, Some(&unknown), Some(true)))
        .await;
    assert_status(a.clone(), Code::Unauthenticated, BAD_CREDENTIALS);
    assert_status(b.clone(), Code::Unauthenticated, BAD_CREDENTIALS);
    assert_eq!(a.unwrap().message(), b.unwrap().message());
    // The unknown user cost an argon2 run too (no timing shortcut).
    assert_eq!(h.layer.argon2_runs(), 2);
    assert!(h.seen().is_empty());
}

#[tokio::test]
async fn valid_user_without_the_right_is_permission_denied() {
    let h = Harness::new();
    let auth = basic("bob", "bob-pw");
    assert!(
        h.call(request(GET_RECORD, Some(&auth), Some(true)))
            .await
            .is_none()
    );
    let denied = h.call(request(PUSH, Some(&auth), Some(true))).await;
    assert_status(denied, Code::PermissionDenied, "zone.v1.Zones/PushChanges");
    assert_eq!(h.seen().len(), 1);
}

#[tokio::test]
async fn star_right_allows_every_method_and_password_may_contain_colons() {
    let h = Harness::new();
    let auth = basic("root", "root:pw");
    let paths = [
        "/grpc.testing.TestService/EmptyCall",
        PUSH,
        "/no.Such/Method",
    ];
    for path in paths {
        assert!(
            h.call(request(path, Some(&auth), Some(true)))
                .await
                .is_none(),
            "{path}"
        );
    }
    let seen = h.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].user.as_ref().unwrap().zones, None);
}

#[tokio::test]
async fn credentials_without_tls_are_refused_before_checking_them() {
    let h = Harness::new();
    let auth = basic("alice", "alice-pw");
    let plain = h.call(request(GET_RECORD, Some(&auth), Some(false))).await;
    assert_status(plain, Code::Unauthenticated, NO_TLS);
    // No ConnectionInfo: the layer cannot tell, so it refuses as well.
    let unknown = h.call(request(GET_RECORD, Some(&auth), None)).await;
    assert_status(unknown, Code::Unauthenticated, NO_TLS);
    assert_eq!(h.layer.argon2_runs(), 0);
    assert!(h.seen().is_empty());
}

#[tokio::test]
async fn missing_credentials_are_unauthenticated() {
    let h = Harness::new();
    let status = h.call(request(GET_RECORD, None, Some(true))).await;
    assert_status(status, Code::Unauthenticated, "missing credentials");
    assert!(h.seen().is_empty());
}

#[tokio::test]
async fn malformed_headers_are_unauthenticated_without_argon2() {
    let h = Harness::new();
    let no_colon = format!("Basic {}", STANDARD.encode("alicealice-pw"));
    let empty_user = format!("Basic {}", STANDARD.encode(":alice-pw"));
    let not_utf8_user = format!("Basic {}", STANDARD.encode(b"\xff\xfe:pw"));
    let cases = [
        "Basic !!!not-base64!!!",
        "Basic",
        "Basic ",
        "YWxpY2U6YWxpY2UtcHc=",
        no_colon.as_str(),
        empty_user.as_str(),
        not_utf8_user.as_str(),
    ];
    for value in cases {
        let status = h.call(request(GET_RECORD, Some(value), Some(true))).await;
        assert_status(status, Code::Unauthenticated, "malformed");
    }
    let bearer = h
        .call(request(GET_RECORD, Some("Bearer abc"), Some(true)))
        .await;
    assert_status(bearer, Code::Unauthenticated, "expected Basic");
    let mut binary = request(GET_RECORD, None, Some(true));
    binary.headers_mut().insert(
        AUTHORIZATION,
        http::HeaderValue::from_bytes(b"Basic \xff").unwrap(),
    );
    assert_status(h.call(binary).await, Code::Unauthenticated, "malformed");
    assert_eq!(h.layer.argon2_runs(), 0);
    assert!(h.seen().is_empty());
}

#[tokio::test]
async fn scheme_is_case_insensitive_and_padding_optional() {
    let h = Harness::new();
    let auth = format!("bAsIc {}", STANDARD_NO_PAD.encode("bob:bob-pw"));
    assert!(
        h.call(request(GET_RECORD, Some(&auth), Some(true)))
            .await
            .is_none()
    );
    assert_eq!(h.seen()[0].user.as_ref().unwrap().name, "bob");
}

#[tokio::test]
async fn several_authorization_headers_are_refused() {
    let h = Harness::new();
    let mut req = request(GET_RECORD, Some(&basic("bob", "bob-pw")), Some(true));
    req.headers_mut().append(
        AUTHORIZATION,
        http::HeaderValue::from_str(&basic("root", "root:pw")).unwrap(),
    );
    assert_status(h.call(req).await, Code::Unauthenticated, "several");
    assert!(h.seen().is_empty());
}

#[tokio::test]
async fn health_is_public_even_without_tls_and_credentials_are_stripped() {
    let h = Harness::new();
    let check = "/grpc.health.v1.Health/Check";
    assert!(h.call(request(check, None, Some(false))).await.is_none());
    let auth = basic("alice", "wrong");
    assert!(h.call(request(check, Some(&auth), None)).await.is_none());
    let seen = h.seen();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter()
            .all(|s| s.user.is_none() && !s.had_authorization)
    );
    assert_eq!(h.layer.argon2_runs(), 0);
}

#[tokio::test]
async fn public_prefixes_are_configurable() {
    let none_public = AuthLayer::builder(users())
        .public_prefixes(Vec::<String>::new())
        .build();
    let h = Harness::with(none_public);
    let check = "/grpc.health.v1.Health/Check";
    assert_status(
        h.call(request(check, None, Some(true))).await,
        Code::Unauthenticated,
        "missing",
    );
    let reflection_public = AuthLayer::builder(users())
        .public_prefixes(["/grpc.reflection.v1.ServerReflection/"])
        .build();
    let h = Harness::with(reflection_public);
    let path = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
    assert!(h.call(request(path, None, Some(true))).await.is_none());
}

#[tokio::test]
async fn cache_hit_skips_argon2_but_wrong_password_does_not_hit() {
    let h = Harness::new();
    let auth = basic("alice", "alice-pw");
    for _ in 0..5 {
        assert!(
            h.call(request(GET_RECORD, Some(&auth), Some(true)))
                .await
                .is_none()
        );
    }
    assert_eq!(h.layer.argon2_runs(), 1);
    let wrong = basic("alice", "alice-pw2");
    assert_status(
        h.call(request(GET_RECORD, Some(&wrong), Some(true))).await,
        Code::Unauthenticated,
        BAD_CREDENTIALS,
    );
    assert_eq!(h.layer.argon2_runs(), 2);
    // Another user with the same password is verified separately.
    let bob = basic("bob", "alice-pw");
    assert!(
        h.call(request(GET_RECORD, Some(&bob), Some(true)))
            .await
            .is_some()
    );
    assert_eq!(h.layer.argon2_runs(), 3);
    assert_eq!(h.seen().len(), 5);
}

#[tokio::test]
async fn zero_ttl_disables_the_cache() {
    let h = Harness::with(
        AuthLayer::builder(users())
            .cache_ttl(Duration::ZERO)
            .build(),
    );
    let auth = basic("bob", "bob-pw");
    for _ in 0..3 {
        assert!(
            h.call(request(GET_RECORD, Some(&auth), Some(true)))
                .await
                .is_none()
        );
    }
    assert_eq!(h.layer.argon2_runs(), 3);
}

#[tokio::test]
async fn works_as_a_boxed_clone_sync_service() {
    // The shape grpc_h3::Server::layer expects: Layer<BoxCloneSyncService<..>> whose output can be
    // boxed again as Clone + Send + Sync.
    type Boxed = tower::util::BoxCloneSyncService<
        http::Request<()>,
        http::Response<tonic::body::Body>,
        Infallible,
    >;
    let log: Log = Arc::default();
    let inner: Boxed = Boxed::new(recorder(log.clone()));
    let layered: Boxed = Boxed::new(AuthLayer::new(users()).layer(inner));
    let auth = basic("bob", "bob-pw");
    let resp = layered
        .clone()
        .oneshot(request(GET_RECORD, Some(&auth), Some(true)))
        .await
        .unwrap();
    assert!(Status::from_header_map(resp.headers()).is_none());
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn rejection_is_a_trailers_only_grpc_response() {
    let h = Harness::new();
    let svc = h.layer.layer(recorder(h.log.clone()));
    let resp = svc
        .oneshot(request(GET_RECORD, None, Some(true)))
        .await
        .unwrap();
    assert_eq!(resp.status(), http::StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/grpc");
    assert_eq!(resp.headers()["grpc-status"], "16");
}

#[test]
fn cache_is_bounded_per_user_and_in_total() {
    let cache = VerifiedCache::new(Duration::from_secs(60), 6);
    for i in 0..10u8 {
        cache.insert("alice", [i; 32]);
    }
    assert_eq!(cache.len(), CACHE_PER_USER);
    assert!(cache.contains("alice", &[9; 32]));
    assert!(!cache.contains("alice", &[0; 32]));
    for i in 0..10u8 {
        cache.insert(&format!("user{i}"), [i; 32]);
        assert!(cache.len() <= 6, "{}", cache.len());
    }
    assert!(cache.contains("user9", &[9; 32]));
}

#[test]
fn cache_entries_expire() {
    let cache = VerifiedCache::new(Duration::from_millis(5), 16);
    cache.insert("alice", [1; 32]);
    assert!(cache.contains("alice", &[1; 32]));
    std::thread::sleep(Duration::from_millis(20));
    assert!(!cache.contains("alice", &[1; 32]));
}

#[test]
fn cache_digest_depends_on_user_hash_and_password_and_process_key() {
    let cache = VerifiedCache::new(Duration::from_secs(60), 16);
    let d = cache.digest("alice", "$h1", b"pw");
    assert_eq!(d, cache.digest("alice", "$h1", b"pw"));
    assert_ne!(d, cache.digest("alicf", "$h1", b"pw"));
    assert_ne!(d, cache.digest("alice", "$h2", b"pw"));
    assert_ne!(d, cache.digest("alice", "$h1", b"pW"));
    // Field boundaries are unambiguous.
    assert_ne!(cache.digest("ab", "c", b""), cache.digest("a", "bc", b""));
    let other = VerifiedCache::new(Duration::from_secs(60), 16);
    assert_ne!(d, other.digest("alice", "$h1", b"pw"));
}

#[test]
fn debug_output_hides_cache_key_and_hashes() {
    let layer = AuthLayer::new(users());
    let shown = format!("{layer:?}");
    assert!(!shown.contains("argon2id"), "{shown}");
    assert!(!shown.contains("key"), "{shown}");
}
