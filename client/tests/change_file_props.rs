//! Property tests of the change-file parser (`zone_client::cli::changes`, the input of
//! `zone-client push`): arbitrary text and mutations of valid files give batches or a readable
//! line error, never a panic; a bad line injected into a valid file is reported at that line;
//! generated valid files parse to exactly the batches they describe.
//!
//! Case counts: `PROPTEST_CASES` per property (default 256); `PROPTEST_MAX_SECS` bounds a long
//! run, as in the other proptest suites, so `scripts/fuzz.sh` runs this one alike.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::TestCaseError;
use zone_client::cli::changes::{ChangeFileError, parse_change_file};
use zone_proto::zone::v1::{Change, ChangeBatch, Record, change::Op};

use test_support::bounded_proptest::{check, parser_config};

/// What any input must satisfy: batches, or an error that names a line of the input (or says
/// there are no changes) in words a user can act on. (A panic in the parser is caught by the
/// runner and fails the case like any other failure.)
fn parses_or_explains(text: &str, default_zone: Option<&str>) -> Result<(), TestCaseError> {
    match parse_change_file(text, default_zone) {
        Ok(batches) => {
            prop_assert!(
                !batches.is_empty() && batches.iter().all(|b| !b.changes.is_empty()),
                "empty batch returned: {batches:?}"
            );
            // A batch only ever exists for a zone (the file's or `--zone`).
            prop_assert!(
                batches.iter().all(|b| !b.zone.is_empty()) || default_zone == Some(""),
                "batch without a zone: {batches:?}"
            );
        }
        Err(e @ ChangeFileError::Line { line, .. }) => {
            let lines = text.lines().count();
            let shown = e.to_string();
            prop_assert!(
                (1..=lines).contains(&line),
                "error on line {line} of {lines}: {shown}"
            );
            prop_assert!(
                shown.starts_with(&format!("line {line}: ")) && shown.len() >= 12,
                "unreadable error {shown:?}"
            );
        }
        Err(ChangeFileError::Empty) => {}
        Err(other) => return Err(TestCaseError::fail(format!("unexpected error {other:?}"))),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Valid files, generated with the batches they should parse to.

const DEFAULT_ZONE: &str = "default.test.";
const ZONES: &[&str] = &["example.com.", "example.org.", "é.test."];
/// Lines that end a batch.
const SEPARATORS: &[&str] = &["---", "", "  ", " --- "];
const BLANKS: &[&str] = &[" ", "  ", "\t", " \t "];
/// Type mnemonics that are not also class mnemonics (a class is optional, so `CH` would be
/// read as one).
const TYPES: &[&str] = &[
    "A",
    "aaaa",
    "MX",
    "TXT",
    "ns",
    "CNAME",
    "SOA",
    "SRV",
    "TYPE65534",
    "NSEC3PARAM",
    "x-private",
];
const CLASSES: &[&str] = &["IN", "in", "CH", "cs", "HS", "CLASS1", "class255"];
const NAMES: &[&str] = &[
    "@",
    "www",
    "www.example.com.",
    "*.wild",
    "_sip._tcp",
    "a-b.c",
    "xn--bcher-kva",
    "é",
];
/// Rdata words; `x=>y` is data (only a standalone `=>` separates an edit).
const WORDS: &[&str] = &[
    "192.0.2.1",
    "2001:db8::1",
    "10",
    "mx.example.com.",
    "\"hello",
    "world\"",
    "x=>y",
    "#not-a-comment",
    "---",
    "zone",
    "add",
    "ñ",
];

fn blank() -> impl Strategy<Value = &'static str> {
    select(BLANKS)
}

/// Leading blanks of a line, one line in three.
fn indent() -> impl Strategy<Value = &'static str> {
    prop_oneof![2 => Just(""), 1 => blank()]
}

/// Trailing blanks of a line, one line in four.
fn trailing() -> impl Strategy<Value = &'static str> {
    prop_oneof![3 => Just(""), 1 => blank()]
}

prop_compose! {
    /// A record as written (mixed-case type and class, no class one time in two); its rdata is
    /// 1 to 4 words whose inner spacing the parser keeps as written.
    fn record()(
        name in select(NAMES),
        ttl in prop_oneof![1 => Just(0), 1 => Just(u32::MAX), 2 => 0..86_400u32],
        class in prop_oneof![Just(""), select(CLASSES)],
        ty in select(TYPES),
        first in select(WORDS),
        more in vec((blank(), select(WORDS)), 0..4),
    ) -> Record {
        let mut rdata = first.to_owned();
        for (blank, word) in more {
            rdata.push_str(blank);
            rdata.push_str(word);
        }
        Record {
            name: name.to_owned(),
            r#type: ty.to_owned(),
            class: class.to_owned(),
            ttl,
            rdata,
        }
    }
}

prop_compose! {
    /// `NAME TTL [CLASS] TYPE RDATA` with random blanks, and the record as the parser should
    /// return it.
    fn rendered_record()(r in record(), b in prop::array::uniform::<_, 4>(blank()))
        -> (String, Record)
    {
        let mut text = format!("{}{}{}", r.name, b[0], r.ttl);
        if !r.class.is_empty() {
            text.push_str(b[1]);
            text.push_str(&r.class);
        }
        text.push_str(b[2]);
        text.push_str(&r.r#type);
        text.push_str(b[3]);
        text.push_str(&r.rdata);
        let parsed = Record {
            class: r.class.to_ascii_uppercase(),
            r#type: r.r#type.to_ascii_uppercase(),
            ..r
        };
        (text, parsed)
    }
}

/// An `add`, `del` or `edit` line (without indent) and the change it describes.
fn change() -> impl Strategy<Value = (String, Change)> {
    let single = |op: Op, directive: &'static str| {
        (blank(), rendered_record()).prop_map(move |(blank, (text, record))| {
            let change = Change {
                op: op.into(),
                record: Some(record),
                previous: None,
            };
            (format!("{directive}{blank}{text}"), change)
        })
    };
    let edit = (
        prop::array::uniform::<_, 3>(blank()),
        rendered_record(),
        rendered_record(),
    )
        .prop_map(|(b, (old_text, old), (text, record))| {
            let change = Change {
                op: Op::Edit.into(),
                record: Some(record),
                previous: Some(old),
            };
            let text = format!("edit{}{old_text}{}=>{}{text}", b[0], b[1], b[2]);
            (text, change)
        });
    prop_oneof![single(Op::Create, "add"), single(Op::Delete, "del"), edit]
}

prop_compose! {
    /// A change line of a batch, with a comment above it one time in four (a comment inside a
    /// batch does not end it).
    fn batch_line()(
        comment in prop::option::weighted(0.25, (indent(), select(WORDS))),
        before in indent(),
        (text, change) in change(),
        after in trailing(),
    ) -> (Option<String>, String, Change) {
        let comment = comment.map(|(indent, word)| format!("{indent}# {word}"));
        (comment, format!("{before}{text}{after}"), change)
    }
}

prop_compose! {
    /// A valid change file and the batches it describes (`--zone` is [`DEFAULT_ZONE`]): 1 to 4
    /// batches of 0 to 4 changes, each after a `zone` line one time in two (otherwise in the
    /// zone before), each ended by a separator; lines end in `\r\n` one file in four.
    fn valid_file()(
        batches in vec(
            (
                prop::option::of((indent(), blank(), select(ZONES))),
                vec(batch_line(), 0..5),
                select(SEPARATORS),
            ),
            1..5,
        ),
        newline in prop_oneof![3 => Just("\n"), 1 => Just("\r\n")],
    ) -> (String, Vec<ChangeBatch>) {
        let mut lines = Vec::new();
        let mut want = Vec::new();
        let mut zone = DEFAULT_ZONE;
        for (zone_line, batch_lines, separator) in batches {
            if let Some((indent, blank, name)) = zone_line {
                zone = name;
                lines.push(format!("{indent}zone{blank}{name}"));
            }
            let mut changes = Vec::new();
            for (comment, line, change) in batch_lines {
                lines.extend(comment);
                lines.push(line);
                changes.push(change);
            }
            lines.push(separator.to_owned());
            if !changes.is_empty() {
                want.push(ChangeBatch {
                    zone: zone.to_owned(),
                    changes,
                    expected_serial: None,
                });
            }
        }
        (lines.join(newline), want)
    }
}

#[test]
fn valid_files_parse_to_the_batches_they_describe() {
    check(
        "change_file_valid",
        parser_config(),
        valid_file(),
        |(text, want)| {
            let got = parse_change_file(&text, Some(DEFAULT_ZONE));
            let want = if want.is_empty() {
                Err(ChangeFileError::Empty)
            } else {
                Ok(want)
            };
            prop_assert_eq!(got, want);
            Ok(())
        },
    );
}

/// Lines that are wrong wherever they stand.
const BAD: &[&str] = &[
    "frob x",
    "zone",
    "zone a. b.",
    "add",
    "add www",
    "add www -1 A 192.0.2.1",
    "add www 4294967296 A 192.0.2.1",
    "del www 300 IN",
    "add www 300 1A x",
    "add www 300 A",
    "edit a 1 A 192.0.2.1 b 1 A 192.0.2.2",
    "edit a 1 A 192.0.2.1 =>",
    "edit => b 1 A 192.0.2.2",
    "Add www 300 A 192.0.2.1",
];

prop_compose! {
    /// A valid file with a line of [`BAD`] inserted anywhere, and that line's number.
    fn file_with_bad_line()(
        (text, _) in valid_file(),
        at in any::<Index>(),
        before in indent(),
        bad in select(BAD),
    ) -> (String, usize) {
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let at = at.index(lines.len() + 1);
        lines.insert(at, format!("{before}{bad}"));
        (lines.join("\n"), at + 1)
    }
}

#[test]
fn a_bad_line_in_a_valid_file_is_reported_at_its_line() {
    check(
        "change_file_bad_line",
        parser_config(),
        file_with_bad_line(),
        |(text, line)| match parse_change_file(&text, Some(DEFAULT_ZONE)) {
            Err(e) if e.line() == Some(line) => Ok(()),
            other => Err(TestCaseError::fail(format!(
                "want an error on line {line}, got {other:?}"
            ))),
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Anything else.

/// Characters a change file is made of, near-misses of its syntax, and any Unicode.
const PIECES: &[&str] = &[
    "zone",
    "add",
    "del",
    "edit",
    "=>",
    "=",
    ">",
    "---",
    "-",
    "#",
    " ",
    "\t",
    "\n",
    "\r\n",
    "\r",
    "IN",
    "CLASS",
    "TYPE",
    "A",
    "300",
    "4294967295",
    "4294967296",
    "-1",
    "@",
    ".",
    "\"",
    "\\",
    "\u{0}",
    "\u{feff}",
    "\u{85}",
    "\u{2028}",
    "\u{3000}",
    "é",
];

/// Text of `pieces` pieces: three in four from [`PIECES`], the others any character.
fn text_of(pieces: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => select(PIECES).prop_map(str::to_owned),
        1 => any::<char>().prop_map(String::from),
    ];
    vec(piece, pieces).prop_map(|pieces| pieces.concat())
}

#[test]
fn arbitrary_text_parses_or_explains_itself() {
    check(
        "change_file_arbitrary",
        parser_config(),
        text_of(0..64),
        |text| {
            parses_or_explains(&text, None)?;
            parses_or_explains(&text, Some(DEFAULT_ZONE))
        },
    );
}

/// Near-misses inserted into valid files.
const NEAR_MISSES: &[&str] = &["=>", "\n", " ", "#", "---", "4294967296", "\u{0}"];

/// One edit of a file's characters; positions are taken modulo the length at that point.
#[derive(Clone, Debug)]
enum Mutation {
    Remove(Index),
    Duplicate(Index),
    Swap(Index, Index),
    Insert(Index, String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<Index>().prop_map(Mutation::Remove),
        any::<Index>().prop_map(Mutation::Duplicate),
        any::<(Index, Index)>().prop_map(|(a, b)| Mutation::Swap(a, b)),
        (any::<Index>(), text_of(0..8))
            .prop_map(|(at, text)| Mutation::Insert(at, text.chars().take(8).collect())),
        (any::<Index>(), select(NEAR_MISSES))
            .prop_map(|(at, piece)| Mutation::Insert(at, piece.to_owned())),
    ]
}

prop_compose! {
    /// A valid file with 1 to 4 random edits: characters dropped, duplicated, swapped, or
    /// inserted (arbitrary text or near-misses of the syntax).
    fn mutated_file()((text, _) in valid_file(), mutations in vec(mutation(), 1..5)) -> String {
        let mut chars: Vec<char> = text.chars().collect();
        for mutation in mutations {
            let len = chars.len();
            match mutation {
                Mutation::Remove(at) if len > 0 => {
                    chars.remove(at.index(len));
                }
                Mutation::Duplicate(at) if len > 0 => {
                    let at = at.index(len);
                    chars.insert(at, chars[at]);
                }
                Mutation::Swap(a, b) if len > 0 => chars.swap(a.index(len), b.index(len)),
                Mutation::Insert(at, piece) => {
                    let at = at.index(len + 1);
                    chars.splice(at..at, piece.chars());
                }
                // Nothing to remove, duplicate or swap in an empty file.
                _ => {}
            }
        }
        chars.into_iter().collect()
    }
}

#[test]
fn mutated_valid_files_parse_or_explain_themselves() {
    check(
        "change_file_mutated",
        parser_config(),
        mutated_file(),
        |text| {
            parses_or_explains(&text, None)?;
            parses_or_explains(&text, Some(DEFAULT_ZONE))
        },
    );
}
