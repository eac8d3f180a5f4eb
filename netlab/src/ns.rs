//! Network namespaces for the lab: creation and deletion with `ip netns`, the stale sweep, and
//! running code on a thread that has entered a namespace with setns(2).

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread::JoinHandle;

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

use super::LabError;

/// Every lab namespace starts with this, then `a-`/`b-`, then the owning process id.
pub(crate) const PREFIX: &str = "gh3-";

/// Where `ip netns` bind-mounts named namespaces.
const NETNS_DIR: &str = "/var/run/netns";

/// Namespaces this process created and has not deleted yet, for [`cleanup_all`].
static LIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Runs `ip ARGS…`; a non-zero exit becomes [`LabError::Command`] with its stderr.
pub(crate) fn ip(args: &[&str]) -> Result<String, LabError> {
    let command = format!("ip {}", args.join(" "));
    let out = Command::new("ip").args(args).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            LabError::Unsupported {
                reason: "the `ip` command (iproute2) is not installed".into(),
            }
        } else {
            LabError::Io {
                context: command.clone(),
                source: e,
            }
        }
    })?;
    if !out.status.success() {
        return Err(LabError::Command {
            command,
            detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Names of all named network namespaces (`ip netns list`, ignoring the `(id: N)` suffix).
pub fn list() -> Result<Vec<String>, LabError> {
    Ok(ip(&["netns", "list"])?
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// The pid a lab namespace name carries (`gh3-a-<pid>-<n>`), if it is one of ours.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let rest = rest
        .strip_prefix("a-")
        .or_else(|| rest.strip_prefix("b-"))?;
    rest.split('-').next()?.parse().ok()
}

/// Deletes lab namespaces left behind by processes that no longer exist; returns their names.
pub(crate) fn sweep_stale() -> Result<Vec<String>, LabError> {
    let mut swept = Vec::new();
    for name in list()? {
        let Some(pid) = owner_pid(&name) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() && ip(&["netns", "del", &name]).is_ok() {
            swept.push(name);
        }
    }
    Ok(swept)
}

/// A named namespace owned by this process; deleted on drop.
#[derive(Debug)]
pub(crate) struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `name` with its loopback up.
    pub(crate) fn create(name: String) -> Result<Self, LabError> {
        ip(&["netns", "add", &name]).map_err(|e| match e {
            // No permission to create namespaces (e.g. a container without CAP_SYS_ADMIN).
            LabError::Command { command, detail } => LabError::Unsupported {
                reason: format!("`{command}` failed: {detail}"),
            },
            other => other,
        })?;
        if let Ok(mut live) = LIVE.lock() {
            live.push(name.clone());
        }
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <this namespace> ARGS…`.
    pub(crate) fn ip(&self, args: &[&str]) -> Result<String, LabError> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Runs `f` on a scoped thread that has entered this namespace and returns its result.
    pub(crate) fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, LabError> {
        let file = open(&self.name)?;
        std::thread::scope(|s| {
            s.spawn(move || {
                enter(&file)?;
                drop(file);
                Ok(f())
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// Reads `/proc/sys/<key>` from a thread inside this namespace, trimmed.
    pub(crate) fn sysctl_read(&self, key: &str) -> Result<String, LabError> {
        let path = format!("/proc/sys/{key}");
        self.run_in(|| {
            std::fs::read_to_string(&path)
                .map(|s| s.trim().to_owned())
                .map_err(|e| LabError::Io {
                    context: format!("reading {path} in {}", self.name),
                    source: e,
                })
        })?
    }

    /// Spawns a named OS thread that enters this namespace and then runs `f`.
    pub(crate) fn spawn<F, T>(&self, thread_name: String, f: F) -> Result<JoinHandle<T>, LabError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let file = open(&self.name)?;
        let (tx, rx) = mpsc::sync_channel::<Result<(), LabError>>(1);
        let handle = std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || {
                let entered = enter(&file);
                drop(file);
                let failed = entered.is_err();
                let _ = tx.send(entered);
                if failed {
                    // The caller gets the error from `spawn`; end quietly without running `f`.
                    std::panic::resume_unwind(Box::new("netlab: setns failed"));
                }
                f()
            })
            .map_err(|e| LabError::Io {
                context: "spawning a namespace thread".into(),
                source: e,
            })?;
        match rx.recv() {
            Ok(Ok(())) => Ok(handle),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(LabError::Unsupported {
                reason: "the namespace thread ended before entering the namespace".into(),
            }),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        delete(&self.name);
    }
}

/// Deletes namespace `name` (best effort) and forgets it.
fn delete(name: &str) {
    let _ = ip(&["netns", "del", name]);
    if let Ok(mut live) = LIVE.lock() {
        live.retain(|n| n != name);
    }
}

/// Deletes every lab namespace this process still owns — for signal handlers and exit paths that
/// skip destructors. A [`super::Lab`] still running keeps forwarding into namespaces that no
/// longer have a name, so call this only when the labs are done.
pub fn cleanup_all() {
    let names = LIVE.lock().map(|l| l.clone()).unwrap_or_default();
    for name in names {
        delete(&name);
    }
}

fn open(name: &str) -> Result<File, LabError> {
    let path = format!("{NETNS_DIR}/{name}");
    File::open(&path).map_err(|e| LabError::Io {
        context: format!("opening {path}"),
        source: e,
    })
}

/// Moves the calling thread (only) into the network namespace `file` refers to.
fn enter(file: &File) -> Result<(), LabError> {
    move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network)).map_err(|e| {
        LabError::Io {
            context: "setns(CLONE_NEWNET)".into(),
            source: e.into(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_parses_only_lab_names() {
        assert_eq!(owner_pid("gh3-a-1234-0"), Some(1234));
        assert_eq!(owner_pid("gh3-b-99-12"), Some(99));
        assert_eq!(owner_pid("gh3-b-99"), Some(99));
        assert_eq!(owner_pid("gh3-c-99-1"), None);
        assert_eq!(owner_pid("gh3-a-x-1"), None);
        assert_eq!(owner_pid("other-a-1-1"), None);
    }
}
