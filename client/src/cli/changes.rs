//! Parser for the change files that `zone-client push` sends as `zone.v1.ChangeBatch`es.
//!
//! The client does not interpret DNS data: a record is split into owner name, TTL, optional class,
//! type and rdata (the rest of the line) and the server validates it.
//!
//! ```text
#![doc = include_str!("change_file_format.txt")]
//! ```

use zone_proto::zone::v1::{Change, ChangeBatch, Record, change::Op};

/// The change-file format as shown by `zone-client push --help`.
pub const FORMAT_HELP: &str = include_str!("change_file_format.txt");

/// Why a change file was rejected.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeFileError {
    /// A line could not be parsed; `line` counts from 1.
    #[error("line {line}: {kind}")]
    Line { line: usize, kind: LineError },
    /// The file holds no changes at all.
    #[error("no changes in file")]
    Empty,
}

impl ChangeFileError {
    /// The 1-based line the error refers to, if it refers to one.
    pub fn line(&self) -> Option<usize> {
        match self {
            ChangeFileError::Line { line, .. } => Some(*line),
            ChangeFileError::Empty => None,
        }
    }
}

/// What is wrong with one line of a change file.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("unknown directive `{0}` (expected zone, add, del, edit or ---)")]
    UnknownDirective(String),
    #[error("`zone` needs exactly one zone name")]
    ZoneName,
    #[error("`{0}` needs a record: NAME TTL [CLASS] TYPE RDATA")]
    MissingRecord(&'static str),
    #[error("`edit` needs `OLD_RECORD => NEW_RECORD`")]
    MissingArrow,
    #[error("record has no TTL: expected NAME TTL [CLASS] TYPE RDATA")]
    MissingTtl,
    #[error("invalid TTL `{0}` (expected seconds, 0..=4294967295)")]
    InvalidTtl(String),
    #[error("record has no type: expected NAME TTL [CLASS] TYPE RDATA")]
    MissingType,
    #[error("invalid record type `{0}`")]
    InvalidType(String),
    #[error("record has no rdata: expected NAME TTL [CLASS] TYPE RDATA")]
    MissingRdata,
    #[error("no zone for this change: add a `zone NAME` line above it or pass --zone")]
    NoZone,
}

/// Parses a change file into batches, in file order. `default_zone` (from `--zone`) applies to
/// batches before the first `zone` line.
pub fn parse_change_file(
    text: &str,
    default_zone: Option<&str>,
) -> Result<Vec<ChangeBatch>, ChangeFileError> {
    let mut parser = Parser {
        zone: default_zone.map(str::to_owned),
        batches: Vec::new(),
        current: Vec::new(),
    };
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        parser
            .line(raw)
            .map_err(|kind| ChangeFileError::Line { line, kind })?;
    }
    parser.end_batch();
    if parser.batches.is_empty() {
        return Err(ChangeFileError::Empty);
    }
    Ok(parser.batches)
}

struct Parser {
    zone: Option<String>,
    batches: Vec<ChangeBatch>,
    current: Vec<Change>,
}

impl Parser {
    fn line(&mut self, raw: &str) -> Result<(), LineError> {
        let line = raw.trim();
        if line.is_empty() || line == "---" {
            self.end_batch();
            return Ok(());
        }
        if line.starts_with('#') {
            return Ok(());
        }
        let (directive, rest) = split_token(line);
        let change = match directive {
            "zone" => {
                let mut names = rest.split_whitespace();
                let (Some(name), None) = (names.next(), names.next()) else {
                    return Err(LineError::ZoneName);
                };
                // A batch belongs to one zone, so a new zone starts a new batch.
                self.end_batch();
                self.zone = Some(name.to_owned());
                return Ok(());
            }
            "add" => Change {
                op: Op::Create.into(),
                record: Some(parse_record(rest, "add")?),
                previous: None,
            },
            "del" => Change {
                op: Op::Delete.into(),
                record: Some(parse_record(rest, "del")?),
                previous: None,
            },
            "edit" => {
                let (old, new) = split_arrow(rest).ok_or(LineError::MissingArrow)?;
                Change {
                    op: Op::Edit.into(),
                    record: Some(parse_record(new, "edit")?),
                    previous: Some(parse_record(old, "edit")?),
                }
            }
            other => return Err(LineError::UnknownDirective(other.to_owned())),
        };
        if self.zone.is_none() {
            return Err(LineError::NoZone);
        }
        self.current.push(change);
        Ok(())
    }

    fn end_batch(&mut self) {
        if self.current.is_empty() {
            return;
        }
        self.batches.push(ChangeBatch {
            zone: self.zone.clone().unwrap_or_default(),
            changes: std::mem::take(&mut self.current),
            expected_serial: None,
        });
    }
}

/// Splits off the first whitespace-delimited token; the rest keeps its inner spacing.
fn split_token(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(end) => (&s[..end], s[end..].trim_start()),
        None => (s, ""),
    }
}

/// Splits `OLD => NEW` at the first `=>` that stands alone as a token.
fn split_arrow(s: &str) -> Option<(&str, &str)> {
    let mut from = 0;
    while let Some(pos) = s[from..].find("=>") {
        let at = from + pos;
        let before = s[..at].chars().next_back();
        let after = s[at + 2..].chars().next();
        if before.is_some_and(char::is_whitespace) && after.is_none_or(char::is_whitespace) {
            return Some((s[..at].trim(), s[at + 2..].trim()));
        }
        from = at + 2;
    }
    None
}

/// Parses `NAME TTL [CLASS] TYPE RDATA` without interpreting the rdata.
fn parse_record(s: &str, directive: &'static str) -> Result<Record, LineError> {
    let (name, rest) = split_token(s);
    if name.is_empty() {
        return Err(LineError::MissingRecord(directive));
    }
    let (ttl, rest) = split_token(rest);
    if ttl.is_empty() {
        return Err(LineError::MissingTtl);
    }
    let ttl: u32 = ttl
        .parse()
        .map_err(|_| LineError::InvalidTtl(ttl.to_owned()))?;
    let (mut token, mut rest) = split_token(rest);
    let mut class = String::new();
    if is_class(token) {
        class = token.to_ascii_uppercase();
        (token, rest) = split_token(rest);
    }
    if token.is_empty() {
        return Err(LineError::MissingType);
    }
    if !is_type_mnemonic(token) {
        return Err(LineError::InvalidType(token.to_owned()));
    }
    let rdata = rest.trim();
    if rdata.is_empty() {
        return Err(LineError::MissingRdata);
    }
    Ok(Record {
        name: name.to_owned(),
        r#type: token.to_ascii_uppercase(),
        class,
        ttl,
        rdata: rdata.to_owned(),
    })
}

/// Class mnemonics of RFC 1035 §3.2.4 and the generic `CLASSnn` form of RFC 3597 §5.
fn is_class(token: &str) -> bool {
    let upper = token.to_ascii_uppercase();
    matches!(upper.as_str(), "IN" | "CH" | "CS" | "HS")
        || upper
            .strip_prefix("CLASS")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// A type mnemonic (`A`, `NSEC3PARAM`, `TYPE65534`): a letter followed by letters, digits or `-`.
fn is_type_mnemonic(token: &str) -> bool {
    let mut bytes = token.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn record(name: &str, ttl: u32, class: &str, ty: &str, rdata: &str) -> Record {
        Record {
            name: name.into(),
            r#type: ty.into(),
            class: class.into(),
            ttl,
            rdata: rdata.into(),
        }
    }

    fn line_error(text: &str) -> (usize, LineError) {
        match parse_change_file(text, Some("example.com.")) {
            Err(ChangeFileError::Line { line, kind }) => (line, kind),
            other => panic!("expected a line error, got {other:?}"),
        }
    }

    #[test]
    fn parses_batches_zones_and_all_directives() {
        let text = "\
# leading comment
zone example.com.
add www.example.com. 300 IN A 192.0.2.10
del old 60 a 192.0.2.99

  # comment inside a batch does not end it
edit mail 3600 MX 10 mx1.example.com. => mail 3600 IN MX 20 mx2.example.com.
add txt 300 TXT \"hello  world\"   \n---\n---\nzone example.org.\nadd @ 300 CH TXT x\n";
        let batches = parse_change_file(text, None).unwrap();
        assert_eq!(batches.len(), 3);

        assert_eq!(batches[0].zone, "example.com.");
        assert_eq!(
            batches[0].changes,
            vec![
                Change {
                    op: Op::Create.into(),
                    record: Some(record("www.example.com.", 300, "IN", "A", "192.0.2.10")),
                    previous: None,
                },
                Change {
                    op: Op::Delete.into(),
                    record: Some(record("old", 60, "", "A", "192.0.2.99")),
                    previous: None,
                },
            ]
        );

        assert_eq!(batches[1].zone, "example.com.");
        assert_eq!(batches[1].changes.len(), 2);
        assert_eq!(
            batches[1].changes[0],
            Change {
                op: Op::Edit.into(),
                record: Some(record("mail", 3600, "IN", "MX", "20 mx2.example.com.")),
                previous: Some(record("mail", 3600, "", "MX", "10 mx1.example.com.")),
            }
        );
        // Rdata keeps its inner spacing; surrounding blanks are trimmed.
        assert_eq!(
            batches[1].changes[1].record.as_ref().unwrap().rdata,
            "\"hello  world\""
        );

        assert_eq!(batches[2].zone, "example.org.");
        assert_eq!(
            batches[2].changes[0].record,
            Some(record("@", 300, "CH", "TXT", "x"))
        );
        assert!(batches.iter().all(|b| b.expected_serial.is_none()));
    }

    #[test]
    fn default_zone_applies_until_first_zone_line() {
        let text = "add a 1 A 192.0.2.1\nzone other.\nadd b 1 A 192.0.2.2\n";
        let batches = parse_change_file(text, Some("example.com.")).unwrap();
        let zones: Vec<_> = batches.iter().map(|b| b.zone.as_str()).collect();
        // The zone line also ends the first batch.
        assert_eq!(zones, ["example.com.", "other."]);
    }

    #[test]
    fn shipped_example_parses() {
        let text = include_str!("../../examples-data/example.com.changes");
        let batches = parse_change_file(text, None).unwrap();
        assert!(batches.len() >= 2);
        assert!(batches.iter().all(|b| b.zone == "example.com."));
    }

    #[test]
    fn errors_carry_the_line_number() {
        let cases: &[(&str, usize, LineError)] = &[
            (
                "add a 1 A 1.2.3.4\nfrob x\n",
                2,
                LineError::UnknownDirective("frob".into()),
            ),
            ("\n\nzone\n", 3, LineError::ZoneName),
            ("zone a. b.\n", 1, LineError::ZoneName),
            ("add\n", 1, LineError::MissingRecord("add")),
            ("del   \n", 1, LineError::MissingRecord("del")),
            ("add www\n", 1, LineError::MissingTtl),
            (
                "# c\nadd www abc A 192.0.2.1\n",
                2,
                LineError::InvalidTtl("abc".into()),
            ),
            (
                "add www -1 A 192.0.2.1\n",
                1,
                LineError::InvalidTtl("-1".into()),
            ),
            (
                "add www 4294967296 A x\n",
                1,
                LineError::InvalidTtl("4294967296".into()),
            ),
            ("add www 300\n", 1, LineError::MissingType),
            ("add www 300 IN\n", 1, LineError::MissingType),
            ("add www 300 1A x\n", 1, LineError::InvalidType("1A".into())),
            ("add www 300 IN A\n", 1, LineError::MissingRdata),
            ("add www 300 A   \n", 1, LineError::MissingRdata),
            (
                "edit a 1 A 192.0.2.1 b 1 A 192.0.2.2\n",
                1,
                LineError::MissingArrow,
            ),
            (
                "edit a 1 A 192.0.2.1 =>\n",
                1,
                LineError::MissingRecord("edit"),
            ),
            ("edit => b 1 A 192.0.2.2\n", 1, LineError::MissingArrow),
        ];
        for (text, line, kind) in cases {
            assert_eq!(line_error(text), (*line, kind.clone()), "input {text:?}");
        }
    }

    #[test]
    fn change_without_zone_is_an_error() {
        let err = parse_change_file("# c\nadd a 1 A 192.0.2.1\n", None).unwrap_err();
        assert_eq!(
            err,
            ChangeFileError::Line {
                line: 2,
                kind: LineError::NoZone
            }
        );
        assert_eq!(err.line(), Some(2));
    }

    #[test]
    fn file_without_changes_is_an_error() {
        for text in ["", "\n# only comments\n---\n", "zone example.com.\n"] {
            let err = parse_change_file(text, None).unwrap_err();
            assert_eq!(err, ChangeFileError::Empty, "input {text:?}");
            assert_eq!(err.line(), None);
        }
    }

    #[test]
    fn arrow_must_be_a_separate_token() {
        // `=>` inside rdata does not split; the standalone one does.
        let text = "edit a 1 TXT x=>y => a 1 TXT z\n";
        let batches = parse_change_file(text, Some("example.com.")).unwrap();
        let change = &batches[0].changes[0];
        assert_eq!(change.previous.as_ref().unwrap().rdata, "x=>y");
        assert_eq!(change.record.as_ref().unwrap().rdata, "z");
    }

    #[test]
    fn error_display_is_human() {
        let err = ChangeFileError::Line {
            line: 7,
            kind: LineError::InvalidTtl("x".into()),
        };
        assert_eq!(
            err.to_string(),
            "line 7: invalid TTL `x` (expected seconds, 0..=4294967295)"
        );
    }
}
