//! The users file: per user an argon2id password hash, the methods they may call and optionally the
//! zones they may touch, stored as TOML.
//!
//! ```toml
//! [users.alice]
//! hash = "$argon2id$v=19$m=19456,t=2,p=1$…"
//! allow = ["zone.v1.Zones/*"]
//! zones = ["example.com."]          # optional; absent = every zone
//! ```
//!
//! Unknown keys are rejected rather than ignored: a misspelt `zones` must not silently grant every
//! zone.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};

/// Errors of reading, writing or editing a users file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UsersError {
    /// The file could not be read.
    #[error("reading users file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The file could not be written.
    #[error("writing users file {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The TOML is malformed or has unknown keys.
    #[error("users file{}: {source}", path_suffix(.path))]
    Parse {
        /// The file, when parsed from one.
        path: Option<PathBuf>,
        /// The cause (with line and column).
        source: Box<toml::de::Error>,
    },
    /// Serialising to TOML failed.
    #[error("serialising users: {0}")]
    Serialize(#[from] toml::ser::Error),
    /// A user name is empty, contains `:` (RFC 7617 forbids it) or control characters.
    #[error("invalid user name `{name}`: {reason}")]
    InvalidName {
        /// The rejected name (control characters escaped).
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// A method pattern is not `pkg.Service/Method`, `pkg.Service/*`, a `*`-suffixed prefix or `*`.
    #[error("invalid method pattern `{pattern}`: {reason}")]
    InvalidPattern {
        /// The rejected pattern.
        pattern: String,
        /// Why.
        reason: &'static str,
    },
    /// A zone name is empty or not a plain domain name.
    #[error("invalid zone `{zone}`: {reason}")]
    InvalidZone {
        /// The rejected zone.
        zone: String,
        /// Why.
        reason: &'static str,
    },
    /// A stored hash is not an argon2 PHC string.
    #[error("user `{user}`: invalid password hash: {reason}")]
    InvalidHash {
        /// The user.
        user: String,
        /// Why.
        reason: String,
    },
    /// `add` of a name that exists.
    #[error("user `{0}` already exists")]
    Exists(String),
    /// Hashing the password failed.
    #[error("hashing password: {0}")]
    Hash(String),
}

fn path_suffix(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!(" {}", p.display()))
        .unwrap_or_default()
}

/// A method right: an exact full method name (`zone.v1.Zones/GetRecord`), a prefix ending in `*`
/// (`zone.v1.Zones/*`), or `*` alone for every method. A leading `/` is accepted and dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MethodPattern(String);

impl MethodPattern {
    /// Validates `pattern`.
    pub fn parse(pattern: &str) -> Result<MethodPattern, UsersError> {
        let invalid = |reason| UsersError::InvalidPattern {
            pattern: pattern.escape_debug().to_string(),
            reason,
        };
        let p = pattern.strip_prefix('/').unwrap_or(pattern);
        if p.is_empty() {
            return Err(invalid("empty"));
        }
        if let Some(bad) = p
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '*' | '-')))
        {
            return Err(invalid(if bad.is_whitespace() {
                "contains whitespace"
            } else {
                "only letters, digits, `.`, `_`, `-`, `/` and a final `*` are allowed"
            }));
        }
        let (body, wildcard) = match p.strip_suffix('*') {
            Some(prefix) => (prefix, true),
            None => (p, false),
        };
        if body.contains('*') {
            return Err(invalid("`*` is only allowed at the end"));
        }
        if body.matches('/').count() > 1 {
            return Err(invalid("expected `package.Service/Method`"));
        }
        if !wildcard {
            match body.split_once('/') {
                Some((service, method)) if !service.is_empty() && !method.is_empty() => {}
                _ => {
                    return Err(invalid(
                        "expected `package.Service/Method`, `package.Service/*` or `*`",
                    ));
                }
            }
        } else if body.starts_with('/') {
            return Err(invalid("empty service name"));
        }
        Ok(MethodPattern(p.to_string()))
    }

    /// Whether the full method name `method` (`pkg.Service/Method`, no leading `/`) matches.
    pub fn matches(&self, method: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => method.starts_with(prefix),
            None => method == self.0,
        }
    }

    /// The pattern as written (without a leading `/`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MethodPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for MethodPattern {
    type Err = UsersError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MethodPattern::parse(s)
    }
}

impl TryFrom<String> for MethodPattern {
    type Error = UsersError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        MethodPattern::parse(&s)
    }
}

impl From<MethodPattern> for String {
    fn from(p: MethodPattern) -> String {
        p.0
    }
}

/// One user's entry.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    hash: String,
    #[serde(default)]
    allow: Vec<MethodPattern>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    zones: Option<Vec<String>>,
}

// The hash stays out of debug output: it is an offline-crackable secret.
impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("allow", &self.allow)
            .field("zones", &self.zones)
            .finish_non_exhaustive()
    }
}

impl User {
    /// The method rights.
    pub fn allow(&self) -> &[MethodPattern] {
        &self.allow
    }

    /// Zones this user may touch (normalised: lower case, trailing dot); `None` = every zone.
    pub fn zones(&self) -> Option<&[String]> {
        self.zones.as_deref()
    }

    /// Whether any right matches the full method name (`pkg.Service/Method`).
    pub fn allows(&self, method: &str) -> bool {
        self.allow.iter().any(|p| p.matches(method))
    }

    /// The argon2 PHC hash string.
    pub fn password_hash(&self) -> &str {
        &self.hash
    }

    /// Runs argon2 over `password` with the stored parameters and salt; slow by design, call it
    /// off the async runtime. Output comparison is constant-time (password-hash's `Output`).
    pub fn verify_password(&self, password: &[u8]) -> bool {
        verify_phc(&self.hash, password)
    }
}

pub(crate) fn verify_phc(hash: &str, password: &[u8]) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password, &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Hashes `password` with argon2id and a random 16-byte salt.
pub(crate) fn hash_password(argon: &Argon2<'_>, password: &[u8]) -> Result<String, UsersError> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| UsersError::Hash(e.to_string()))?;
    argon
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| UsersError::Hash(e.to_string()))
}

/// argon2id with the crate's default cost (19 MiB, 2 passes, 1 lane — OWASP's recommendation).
pub(crate) fn default_argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::DEFAULT)
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    users: BTreeMap<String, User>,
}

/// The set of users, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Users {
    users: BTreeMap<String, User>,
}

impl Users {
    /// No users.
    pub fn new() -> Users {
        Users::default()
    }

    /// Reads and validates a users file.
    pub fn load(path: &Path) -> Result<Users, UsersError> {
        let text = std::fs::read_to_string(path).map_err(|source| UsersError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Users::parse(&text, Some(path))
    }

    /// Like [`Users::load`], but a missing file is an empty set (for `user add` on a new file).
    pub fn load_or_empty(path: &Path) -> Result<Users, UsersError> {
        match std::fs::metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Users::new()),
            _ => Users::load(path),
        }
    }

    /// Parses and validates users-file TOML.
    pub fn from_toml_str(text: &str) -> Result<Users, UsersError> {
        Users::parse(text, None)
    }

    fn parse(text: &str, path: Option<&Path>) -> Result<Users, UsersError> {
        let file: UsersFile = toml::from_str(text).map_err(|source| UsersError::Parse {
            path: path.map(Path::to_path_buf),
            source: Box::new(source),
        })?;
        let mut users = BTreeMap::new();
        for (name, mut user) in file.users {
            validate_name(&name)?;
            validate_hash(&name, &user.hash)?;
            if let Some(zones) = user.zones.take() {
                user.zones = Some(normalize_zones(&zones)?);
            }
            users.insert(name, user);
        }
        Ok(Users { users })
    }

    /// The TOML text of the users file.
    pub fn to_toml_string(&self) -> Result<String, UsersError> {
        let file = UsersFile {
            users: self.users.clone(),
        };
        Ok(toml::to_string(&file)?)
    }

    /// Writes the users file atomically (temporary file in the same directory, then rename),
    /// readable by the owner only (mode 0600 from creation on).
    pub fn save(&self, path: &Path) -> Result<(), UsersError> {
        let text = self.to_toml_string()?;
        let write_err = |source| UsersError::Write {
            path: path.to_path_buf(),
            source,
        };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(".users.")
            .suffix(".tmp")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .tempfile_in(dir)
            .map_err(write_err)?;
        tmp.write_all(text.as_bytes()).map_err(write_err)?;
        tmp.as_file().sync_all().map_err(write_err)?;
        tmp.persist(path).map_err(|e| write_err(e.error))?;
        Ok(())
    }

    /// Adds a user with an argon2id hash of `password` (random salt). Rejects an existing name,
    /// a name that is empty or contains `:`, invalid patterns and invalid zones.
    pub fn add(
        &mut self,
        name: &str,
        password: &[u8],
        allow: &[impl AsRef<str>],
        zones: Option<&[impl AsRef<str>]>,
    ) -> Result<(), UsersError> {
        self.add_with(&default_argon2(), name, password, allow, zones)
    }

    pub(crate) fn add_with(
        &mut self,
        argon: &Argon2<'_>,
        name: &str,
        password: &[u8],
        allow: &[impl AsRef<str>],
        zones: Option<&[impl AsRef<str>]>,
    ) -> Result<(), UsersError> {
        validate_name(name)?;
        if self.users.contains_key(name) {
            return Err(UsersError::Exists(name.to_string()));
        }
        let allow = allow
            .iter()
            .map(|p| MethodPattern::parse(p.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        let zones = zones.map(normalize_zones).transpose()?;
        let hash = hash_password(argon, password)?;
        self.users
            .insert(name.to_string(), User { hash, allow, zones });
        Ok(())
    }

    /// Removes a user; false when there was none.
    pub fn remove(&mut self, name: &str) -> bool {
        self.users.remove(name).is_some()
    }

    /// The user called `name`.
    pub fn get(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// All users, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &User)> {
        self.users.iter().map(|(n, u)| (n.as_str(), u))
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

fn validate_name(name: &str) -> Result<(), UsersError> {
    let invalid = |reason| UsersError::InvalidName {
        name: name.escape_debug().to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("empty"));
    }
    if name.contains(':') {
        return Err(invalid(
            "`:` separates user and password in Basic credentials",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("control characters"));
    }
    if name.trim() != name {
        return Err(invalid("leading or trailing whitespace"));
    }
    Ok(())
}

fn validate_hash(user: &str, hash: &str) -> Result<(), UsersError> {
    let invalid = |reason: String| UsersError::InvalidHash {
        user: user.to_string(),
        reason,
    };
    let parsed = PasswordHash::new(hash).map_err(|e| invalid(e.to_string()))?;
    if Algorithm::try_from(parsed.algorithm).is_err() {
        return Err(invalid(format!(
            "algorithm `{}` is not argon2",
            parsed.algorithm
        )));
    }
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err(invalid("salt or hash output missing".to_string()));
    }
    Params::try_from(&parsed).map_err(|e| invalid(e.to_string()))?;
    Ok(())
}

/// Lower-cases zones and adds the trailing dot, as [`crate::identity::AuthenticatedUser`] expects.
fn normalize_zones(zones: &[impl AsRef<str>]) -> Result<Vec<String>, UsersError> {
    zones
        .iter()
        .map(|z| {
            let zone = z.as_ref();
            let invalid = |reason| UsersError::InvalidZone {
                zone: zone.escape_debug().to_string(),
                reason,
            };
            let mut z = zone.trim().to_ascii_lowercase();
            if z.is_empty() {
                return Err(invalid("empty"));
            }
            if z.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(invalid("contains whitespace"));
            }
            if !z.ends_with('.') {
                z.push('.');
            }
            if z.contains("..") {
                return Err(invalid("empty label"));
            }
            Ok(z)
        })
        .collect()
}

/// Cheap argon2id parameters (256 KiB, one pass) so tests do not spend seconds hashing.
#[cfg(test)]
pub(crate) fn cheap_argon2() -> Argon2<'static> {
    match Params::new(256, 1, 1, None) {
        Ok(params) => Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
        Err(e) => panic!("test argon2 params: {e}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn cheap() -> Argon2<'static> {
        cheap_argon2()
    }

    const NO_ZONES: Option<&[&str]> = None;

    #[test]
    fn exact_pattern_matches_only_its_method() {
        let p = MethodPattern::parse("zone.v1.Zones/GetRecord").unwrap();
        assert!(p.matches("zone.v1.Zones/GetRecord"));
        assert!(!p.matches("zone.v1.Zones/GetRecords"));
        assert!(!p.matches("zone.v1.Zones/PushChanges"));
        assert!(!p.matches("zone.v1.Zone/GetRecord"));
    }

    #[test]
    fn service_wildcard_matches_every_method_of_that_service_only() {
        let p = MethodPattern::parse("zone.v1.Zones/*").unwrap();
        assert!(p.matches("zone.v1.Zones/GetRecord"));
        assert!(p.matches("zone.v1.Zones/Sync"));
        assert!(!p.matches("zone.v1.ZonesAdmin/Drop"));
        assert!(!p.matches("grpc.testing.TestService/EmptyCall"));
    }

    #[test]
    fn star_matches_everything_and_leading_slash_is_dropped() {
        let all = MethodPattern::parse("*").unwrap();
        assert!(all.matches("grpc.testing.TestService/EmptyCall"));
        let p = MethodPattern::parse("/zone.v1.Zones/GetRecord").unwrap();
        assert_eq!(p.as_str(), "zone.v1.Zones/GetRecord");
        assert!(p.matches("zone.v1.Zones/GetRecord"));
        let prefix = MethodPattern::parse("zone.v1.*").unwrap();
        assert!(prefix.matches("zone.v1.Zones/Sync"));
    }

    #[test]
    fn invalid_patterns_are_rejected() {
        for bad in [
            "",
            "/",
            "zone.v1.Zones",
            "zone.v1.Zones/",
            "/GetRecord",
            "zone.v1.Zones/*/x",
            "zone.*.Zones/GetRecord",
            "**",
            "a/b/c",
            "zone.v1.Zones/Get Record",
            "zone.v1.Zones/GetRecord\n",
            "//*",
        ] {
            assert!(
                matches!(
                    MethodPattern::parse(bad),
                    Err(UsersError::InvalidPattern { .. })
                ),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn add_then_verify_password() {
        let mut users = Users::new();
        users
            .add_with(&cheap(), "alice", b"s3cret", &["zone.v1.Zones/*"], NO_ZONES)
            .unwrap();
        let alice = users.get("alice").unwrap();
        assert!(alice.password_hash().starts_with("$argon2id$"));
        assert!(alice.verify_password(b"s3cret"));
        assert!(!alice.verify_password(b"s3cret "));
        assert!(!alice.verify_password(b""));
        assert!(alice.allows("zone.v1.Zones/GetRecord"));
        assert!(!alice.allows("grpc.testing.TestService/EmptyCall"));
    }

    #[test]
    fn add_with_default_cost_uses_argon2id_defaults() {
        let mut users = Users::new();
        users.add("bob", b"pw", &["*"], NO_ZONES).unwrap();
        let hash = users.get("bob").unwrap().password_hash().to_string();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(users.get("bob").unwrap().verify_password(b"pw"));
    }

    #[test]
    fn same_password_gets_different_salts() {
        let mut users = Users::new();
        users
            .add_with(&cheap(), "a", b"pw", &["*"], NO_ZONES)
            .unwrap();
        users
            .add_with(&cheap(), "b", b"pw", &["*"], NO_ZONES)
            .unwrap();
        assert_ne!(
            users.get("a").unwrap().password_hash(),
            users.get("b").unwrap().password_hash()
        );
    }

    #[test]
    fn add_rejects_bad_names_patterns_and_duplicates() {
        let mut users = Users::new();
        for name in ["", "a:b", "tab\there", " alice"] {
            let err = users
                .add_with(&cheap(), name, b"pw", &["*"], NO_ZONES)
                .unwrap_err();
            assert!(
                matches!(err, UsersError::InvalidName { .. }),
                "{name:?}: {err}"
            );
        }
        let err = users
            .add_with(&cheap(), "alice", b"pw", &["zone.v1.Zones"], NO_ZONES)
            .unwrap_err();
        assert!(matches!(err, UsersError::InvalidPattern { .. }), "{err}");
        assert!(users.is_empty());
        users
            .add_with(&cheap(), "alice", b"pw", &["*"], NO_ZONES)
            .unwrap();
        let err = users
            .add_with(&cheap(), "alice", b"other", &["*"], NO_ZONES)
            .unwrap_err();
        assert!(matches!(err, UsersError::Exists(_)), "{err}");
        assert!(users.get("alice").unwrap().verify_password(b"pw"));
    }

    #[test]
    fn zones_are_normalised() {
        let mut users = Users::new();
        users
            .add_with(
                &cheap(),
                "z",
                b"pw",
                &["*"],
                Some(&["Example.COM", "other.test."]),
            )
            .unwrap();
        assert_eq!(
            users.get("z").unwrap().zones().unwrap(),
            ["example.com.", "other.test."]
        );
        let err = users
            .add_with(&cheap(), "y", b"pw", &["*"], Some(&[""]))
            .unwrap_err();
        assert!(matches!(err, UsersError::InvalidZone { .. }), "{err}");
    }

    #[test]
    fn toml_round_trip() {
        let mut users = Users::new();
        users
            .add_with(
                &cheap(),
                "alice",
                b"pw",
                &["zone.v1.Zones/*", "grpc.testing.TestService/EmptyCall"],
                Some(&["example.com."]),
            )
            .unwrap();
        users
            .add_with(&cheap(), "bob", b"pw2", &["*"], NO_ZONES)
            .unwrap();
        let text = users.to_toml_string().unwrap();
        assert!(text.contains("[users.alice]"), "{text}");
        assert!(!text.contains("zones = []"), "{text}");
        let back = Users::from_toml_str(&text).unwrap();
        assert_eq!(back, users);
        assert!(back.get("bob").unwrap().zones().is_none());
        assert!(back.get("bob").unwrap().verify_password(b"pw2"));
    }

    #[test]
    fn handwritten_file_parses() {
        let mut users = Users::new();
        users
            .add_with(&cheap(), "x", b"pw", &["*"], NO_ZONES)
            .unwrap();
        let hash = users.get("x").unwrap().password_hash().to_string();
        let text = format!(
            "[users.alice]\nhash = \"{hash}\"\nallow = [\"zone.v1.Zones/*\", \"zone.v1.Zones/GetRecord\"]\nzones = [\"Example.com\"]\n"
        );
        let parsed = Users::from_toml_str(&text).unwrap();
        let alice = parsed.get("alice").unwrap();
        assert_eq!(alice.allow().len(), 2);
        assert_eq!(alice.zones().unwrap(), ["example.com."]);
        assert!(alice.verify_password(b"pw"));
    }

    #[test]
    fn invalid_files_are_rejected_with_reasons() {
        let cases = [
            (
                "[users.a]\nhash = \"plain\"\nallow = [\"*\"]\n",
                "invalid password hash",
            ),
            (
                "[users.a]\nhash = \"$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\"\nallow = [\"bad pattern\"]\n",
                "whitespace",
            ),
            (
                "[users.a]\nhash = \"$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\"\nallow = [\"*\"]\nzone = [\"x.\"]\n",
                "unknown field",
            ),
            (
                "[users.\"a:b\"]\nhash = \"$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\"\n",
                "invalid user name",
            ),
            (
                "[users.a]\nhash = \"$scrypt$ln=16,r=8,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\"\n",
                "not argon2",
            ),
            ("[users.a\n", "users file"),
        ];
        for (text, want) in cases {
            let err = Users::from_toml_str(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn save_is_owner_only_and_load_reads_it_back() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("users.toml");
        let mut users = Users::load_or_empty(&path).unwrap();
        assert!(users.is_empty());
        users
            .add_with(&cheap(), "alice", b"pw", &["*"], NO_ZONES)
            .unwrap();
        users.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(Users::load(&path).unwrap(), users);
        // Overwrite keeps the mode and leaves no temporaries.
        users.remove("alice");
        users.save(&path).unwrap();
        assert!(Users::load(&path).unwrap().is_empty());
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn load_of_missing_file_names_the_path() {
        let err = Users::load(Path::new("/nonexistent/users.toml")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/users.toml"), "{err}");
    }

    #[test]
    fn debug_output_hides_the_hash() {
        let mut users = Users::new();
        users
            .add_with(&cheap(), "alice", b"pw", &["*"], NO_ZONES)
            .unwrap();
        assert!(!format!("{users:?}").contains("argon2"));
    }
}
