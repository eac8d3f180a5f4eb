//! Human output of `zone-client`: record tables, RFC 1035 §5 master-file lines, change lines and
//! gRPC status codes in words.

use std::fmt::Write as _;

use tonic::Code;
use zone_proto::zone::v1::{Change, Record, change::Op};

/// Renders records as a table with aligned columns NAME TTL CLASS TYPE RDATA (TTL right-aligned).
pub fn record_table(records: &[Record]) -> String {
    const HEADER: [&str; 5] = ["NAME", "TTL", "CLASS", "TYPE", "RDATA"];
    let rows: Vec<[String; 5]> = records
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.ttl.to_string(),
                class_of(r).to_owned(),
                r.r#type.clone(),
                r.rdata.clone(),
            ]
        })
        .collect();
    let mut widths = HEADER.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header = HEADER.map(str::to_owned);
    for row in std::iter::once(&header).chain(&rows) {
        let [name, ttl, class, ty, rdata] = row;
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{name:<w0$}  {ttl:>w1$}  {class:<w2$}  {ty:<w3$}  {rdata}",
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
        );
    }
    out
}

/// One record as a master-file line (RFC 1035 §5.1): `NAME TTL CLASS TYPE RDATA`.
pub fn master_line(record: &Record) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}",
        record.name,
        record.ttl,
        class_of(record),
        record.r#type,
        record.rdata
    )
}

/// The `$ORIGIN` line that starts a master file for `zone`.
pub fn origin_line(zone: &str) -> String {
    if zone.ends_with('.') {
        format!("$ORIGIN {zone}")
    } else {
        format!("$ORIGIN {zone}.")
    }
}

/// One change in change-file syntax (`add …`, `del …`, `edit … => …`), so printed changes can be
/// pushed again.
pub fn change_line(change: &Change) -> String {
    let record = change.record.as_ref().map(record_text).unwrap_or_default();
    match change.op() {
        Op::Create => format!("add {record}"),
        Op::Delete => format!("del {record}"),
        Op::Edit => {
            let previous = change
                .previous
                .as_ref()
                .map(record_text)
                .unwrap_or_default();
            format!("edit {previous} => {record}")
        }
        Op::Unspecified => format!("# unknown change: {record}"),
    }
}

/// Counts of created, deleted and edited records, printed as `+N -M ~K`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChangeCounts {
    pub created: usize,
    pub deleted: usize,
    pub edited: usize,
}

impl ChangeCounts {
    pub fn of(changes: &[Change]) -> Self {
        let mut counts = ChangeCounts::default();
        for change in changes {
            match change.op() {
                Op::Create => counts.created += 1,
                Op::Delete => counts.deleted += 1,
                Op::Edit => counts.edited += 1,
                Op::Unspecified => {}
            }
        }
        counts
    }
}

impl std::fmt::Display for ChangeCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "+{} -{} ~{}", self.created, self.deleted, self.edited)
    }
}

/// A gRPC status as `code in words: message`, e.g. `permission denied: no right to …`.
pub fn status_text(status: &tonic::Status) -> String {
    let words = code_words(status.code());
    let message = status.message().trim();
    if message.is_empty() {
        words.to_owned()
    } else {
        format!("{words}: {message}")
    }
}

/// The status code in lower-case words.
pub fn code_words(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown error",
        Code::InvalidArgument => "invalid argument",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "resource exhausted",
        Code::FailedPrecondition => "failed precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal error",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

fn record_text(record: &Record) -> String {
    format!(
        "{} {} {} {} {}",
        record.name,
        record.ttl,
        class_of(record),
        record.r#type,
        record.rdata
    )
}

fn class_of(record: &Record) -> &str {
    // The proto defines an empty class as IN.
    if record.class.is_empty() {
        "IN"
    } else {
        &record.class
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn rec(name: &str, ttl: u32, class: &str, ty: &str, rdata: &str) -> Record {
        Record {
            name: name.into(),
            r#type: ty.into(),
            class: class.into(),
            ttl,
            rdata: rdata.into(),
        }
    }

    #[test]
    fn table_aligns_columns() {
        let table = record_table(&[
            rec("www.example.com.", 300, "", "A", "192.0.2.10"),
            rec("example.com.", 86400, "IN", "MX", "10 mail.example.com."),
        ]);
        assert_eq!(
            table,
            "\
NAME                TTL  CLASS  TYPE  RDATA
www.example.com.    300  IN     A     192.0.2.10
example.com.      86400  IN     MX    10 mail.example.com.
"
        );
    }

    #[test]
    fn change_lines_round_trip_through_the_parser() {
        let changes = vec![
            Change {
                op: Op::Create.into(),
                record: Some(rec("a.example.com.", 1, "", "A", "192.0.2.1")),
                previous: None,
            },
            Change {
                op: Op::Edit.into(),
                record: Some(rec("a.example.com.", 2, "IN", "TXT", "\"x y\"")),
                previous: Some(rec("a.example.com.", 1, "IN", "TXT", "\"x\"")),
            },
            Change {
                op: Op::Delete.into(),
                record: Some(rec("b.example.com.", 3, "IN", "AAAA", "2001:db8::1")),
                previous: None,
            },
        ];
        let text: String = changes.iter().map(|c| change_line(c) + "\n").collect();
        let parsed = crate::cli::changes::parse_change_file(&text, Some("example.com.")).unwrap();
        assert_eq!(parsed.len(), 1);
        let mut expected = changes.clone();
        expected[0].record.as_mut().unwrap().class = "IN".into();
        assert_eq!(parsed[0].changes, expected);
        assert_eq!(ChangeCounts::of(&changes).to_string(), "+1 -1 ~1");
    }

    #[test]
    fn status_text_names_the_code() {
        let status = tonic::Status::permission_denied("user bob may not call PushChanges");
        assert_eq!(
            status_text(&status),
            "permission denied: user bob may not call PushChanges"
        );
        assert_eq!(status_text(&tonic::Status::not_found("")), "not found");
    }

    #[test]
    fn master_lines_default_the_class() {
        assert_eq!(
            master_line(&rec("www.example.com.", 300, "", "A", "192.0.2.1")),
            "www.example.com.\t300\tIN\tA\t192.0.2.1"
        );
        assert_eq!(origin_line("example.com"), "$ORIGIN example.com.");
        assert_eq!(origin_line("example.com."), "$ORIGIN example.com.");
    }
}
