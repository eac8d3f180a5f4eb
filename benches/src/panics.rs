//! Panic bookkeeping, so that a case that panics or hangs is recorded with *where* the code
//! panicked (tonic-h3's internals included), not only with the bare message.

use std::any::Any;
use std::collections::VecDeque;
use std::panic::PanicHookInfo;
use std::sync::{Mutex, PoisonError};

/// Panics remembered for matching against later join errors.
const KEEP: usize = 32;

#[derive(Debug, Clone)]
struct Record {
    seq: u64,
    message: String,
    location: String,
}

#[derive(Debug, Default)]
struct Log {
    seq: u64,
    recent: VecDeque<Record>,
}

static LOG: Mutex<Log> = Mutex::new(Log {
    seq: 0,
    recent: VecDeque::new(),
});

fn payload_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-text panic payload".to_string()
    }
}

/// A source path without the cargo registry prefix (`h3-quinn-0.0.10/src/lib.rs`).
fn short_path(file: &str) -> &str {
    match file.find("/registry/src/") {
        Some(i) => {
            let rest = &file[i + "/registry/src/".len()..];
            rest.split_once('/').map_or(rest, |(_, path)| path)
        }
        None => file,
    }
}

fn record(info: &PanicHookInfo<'_>) -> Record {
    let message = payload_text(info.payload());
    let location = info.location().map_or_else(
        || "unknown location".to_string(),
        |l| format!("{}:{}", short_path(l.file()), l.line()),
    );
    let mut log = LOG.lock().unwrap_or_else(PoisonError::into_inner);
    log.seq += 1;
    let rec = Record {
        seq: log.seq,
        message,
        location,
    };
    if log.recent.len() == KEEP {
        log.recent.pop_front();
    }
    log.recent.push_back(rec.clone());
    rec
}

/// Replaces the default hook: every panic is remembered and printed as one line.
pub fn install_hook() {
    std::panic::set_hook(Box::new(|info| {
        let rec = record(info);
        let thread = std::thread::current();
        eprintln!(
            "zone-bench: thread '{}' panicked at {}: {}",
            thread.name().unwrap_or("unnamed"),
            rec.location,
            rec.message
        );
    }));
}

/// A position in the panic log, for [`since`].
pub fn mark() -> u64 {
    LOG.lock().unwrap_or_else(PoisonError::into_inner).seq
}

/// `message at location` of every panic after `mark`.
pub fn since(mark: u64) -> Vec<String> {
    let log = LOG.lock().unwrap_or_else(PoisonError::into_inner);
    log.recent
        .iter()
        .filter(|r| r.seq > mark)
        .map(|r| format!("{} at {}", r.message, r.location))
        .collect()
}

/// The text of a panic payload, with the location of the latest remembered panic of the same
/// message.
pub fn describe(payload: Box<dyn Any + Send>) -> String {
    let message = payload_text(payload.as_ref());
    let log = LOG.lock().unwrap_or_else(PoisonError::into_inner);
    match log.recent.iter().rev().find(|r| r.message == message) {
        Some(r) => format!("{message} at {}", r.location),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_paths_are_shortened() {
        assert_eq!(
            short_path(
                "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/h3-quinn-0.0.10/src/lib.rs"
            ),
            "h3-quinn-0.0.10/src/lib.rs"
        );
        assert_eq!(short_path("benches/src/main.rs"), "benches/src/main.rs");
    }

    #[test]
    fn payloads_become_text() {
        assert_eq!(describe(Box::new("a static str")), "a static str");
        assert_eq!(describe(Box::new(String::from("owned"))), "owned");
        assert_eq!(describe(Box::new(3u8)), "non-text panic payload");
    }
}
