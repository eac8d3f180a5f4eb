//! The authenticated caller, as the auth layer leaves it in request extensions for handlers.

/// Inserted into request extensions by [`crate::auth::AuthLayer`] after a successful credential and
/// method-right check. Handlers use it for rights that depend on the message (zones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedUser {
    /// The user name from the credentials.
    pub name: String,
    /// Zones this user may touch (FQDN, lower case, with trailing dot); `None` means every zone.
    pub zones: Option<Vec<String>>,
}

impl AuthenticatedUser {
    /// Whether this user may touch `zone` (compared case-insensitively, trailing dot optional).
    pub fn may_access_zone(&self, zone: &str) -> bool {
        match &self.zones {
            None => true,
            Some(allowed) => {
                let want = normalize(zone);
                allowed.iter().any(|z| normalize(z) == want)
            }
        }
    }
}

fn normalize(zone: &str) -> String {
    let mut z = zone.trim().to_ascii_lowercase();
    if !z.ends_with('.') {
        z.push('.');
    }
    z
}

/// Checks the zone right of the caller of `request`; no [`AuthenticatedUser`] (auth disabled) allows
/// everything. Returns `PERMISSION_DENIED` naming the zone otherwise.
pub fn check_zone_access(extensions: &http::Extensions, zone: &str) -> Result<(), tonic::Status> {
    match extensions.get::<AuthenticatedUser>() {
        Some(user) if !user.may_access_zone(zone) => Err(tonic::Status::permission_denied(
            format!("user `{}` has no right on zone `{zone}`", user.name),
        )),
        _ => Ok(()),
    }
}
