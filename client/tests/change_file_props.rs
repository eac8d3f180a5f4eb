//! Property tests of the change-file parser (`zone_client::cli::changes`, the input of
//! `zone-client push`): arbitrary text and mutations of valid files give batches or a readable
//! line error, never a panic; generated valid files parse to exactly the batches they describe.
//!
//! zone-client has no proptest dependency, so this is a bounded randomized driver: a seeded
//! generator (`FUZZ_SEED`, printed on failure), `PROPTEST_CASES` cases per property (default
//! 256), `PROPTEST_MAX_SECS` as a time budget, and a greedy shrink of a failing input — the same
//! knobs and `PROPS` report lines as the proptest suites, so `scripts/fuzz.sh` runs it alike.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use zone_client::cli::changes::{ChangeFileError, parse_change_file};
use zone_proto::zone::v1::{Change, ChangeBatch, Record, change::Op};

/// SplitMix64: small, seedable, good enough to pick test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.below(items.len())]
    }
}

fn env_number(var: &str) -> Option<u64> {
    std::env::var(var).ok().and_then(|v| v.parse().ok())
}

/// Runs `property` on `cases` generated inputs; on a failure shrinks the input and panics with
/// the seed and the smallest failing input.
fn check<T: Shrink + std::fmt::Debug>(
    name: &str,
    generate: impl Fn(&mut Rng) -> T,
    property: impl Fn(&T) -> Result<(), String>,
) {
    let cases = env_number("PROPTEST_CASES").unwrap_or(256);
    let budget = env_number("PROPTEST_MAX_SECS").map(Duration::from_secs);
    let seed = env_number("FUZZ_SEED").unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        now.unwrap().as_nanos() as u64
    });
    let mut rng = Rng(seed);
    // A panic in the parser is a failure like any other, not the end of the run.
    let run = |input: &T| match catch_unwind(AssertUnwindSafe(|| property(input))) {
        Ok(result) => result,
        Err(panic) => Err(format!("panicked: {:?}", panic_message(&panic))),
    };
    let started = Instant::now();
    let mut ran = 0;
    while ran < cases {
        if budget.is_some_and(|b| started.elapsed() > b) {
            eprintln!("PROPS {name}: {ran} of {cases} cases run (time budget), 0 failures");
            return;
        }
        let input = generate(&mut rng);
        ran += 1;
        if let Err(first) = run(&input) {
            let (input, why) = input.shrink(first, &run);
            panic!("PROPS {name}: FAILED after {ran} cases (FUZZ_SEED={seed}): {why}\n{input:?}");
        }
    }
    eprintln!("PROPS {name}: {ran} of {cases} cases run, 0 failures");
}

/// How a failing input is made smaller before it is reported.
trait Shrink: Sized {
    fn shrink(self, why: String, run: &impl Fn(&Self) -> Result<(), String>) -> (Self, String);
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic".to_owned()
    }
}

/// Greedy shrink of a text: drop whole lines, then single characters, while it still fails.
impl Shrink for String {
    fn shrink(self, why: String, run: &impl Fn(&String) -> Result<(), String>) -> (String, String) {
        let (mut text, mut why) = (self, why);
        let try_smaller = |candidate: String, text: &mut String, why: &mut String| {
            run(&candidate).err().map(|e| {
                *text = candidate;
                *why = e;
            })
        };
        let mut i = 0;
        while i < text.lines().count() {
            let mut lines: Vec<&str> = text.lines().collect();
            lines.remove(i);
            if try_smaller(lines.join("\n"), &mut text, &mut why).is_none() {
                i += 1;
            }
        }
        let mut i = 0;
        while i < text.chars().count() {
            let candidate = text
                .chars()
                .enumerate()
                .filter_map(|(j, c)| (j != i).then_some(c))
                .collect();
            if try_smaller(candidate, &mut text, &mut why).is_none() {
                i += 1;
            }
        }
        (text, why)
    }
}

/// A generated file with its expected parse: shrinking the text would lose the expectation.
impl Shrink for (String, Vec<ChangeBatch>) {
    fn shrink(self, why: String, _: &impl Fn(&Self) -> Result<(), String>) -> (Self, String) {
        (self, why)
    }
}

/// What any input must satisfy: batches, or an error that names a line of the input (or says
/// there are no changes) in words a user can act on.
fn parses_or_explains(text: &str, default_zone: Option<&str>) -> Result<(), String> {
    match parse_change_file(text, default_zone) {
        Ok(batches) => {
            if batches.is_empty() || batches.iter().any(|b| b.changes.is_empty()) {
                return Err(format!("empty batch returned: {batches:?}"));
            }
            // A batch only ever exists for a zone (the file's or `--zone`).
            if batches.iter().any(|b| b.zone.is_empty()) && default_zone != Some("") {
                return Err(format!("batch without a zone: {batches:?}"));
            }
            Ok(())
        }
        Err(e @ ChangeFileError::Line { line, .. }) => {
            let lines = text.lines().count();
            let shown = e.to_string();
            if line == 0 || line > lines {
                return Err(format!("error on line {line} of {lines}: {shown}"));
            }
            if !shown.starts_with(&format!("line {line}: ")) || shown.len() < 12 {
                return Err(format!("unreadable error {shown:?}"));
            }
            Ok(())
        }
        Err(ChangeFileError::Empty) => Ok(()),
        Err(other) => Err(format!("unexpected error {other:?}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Valid files, generated from the batches they should parse to.

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

fn blank(rng: &mut Rng) -> &'static str {
    rng.pick(BLANKS)
}

fn record(rng: &mut Rng) -> Record {
    let words = 1 + rng.below(4);
    let mut rdata = String::new();
    for i in 0..words {
        if i > 0 {
            // Inner spacing of the rdata is kept as written.
            rdata.push_str(blank(rng));
        }
        rdata.push_str(rng.pick(WORDS));
    }
    let ttl = match rng.below(4) {
        0 => 0,
        1 => u32::MAX,
        _ => rng.next() as u32 % 86_400,
    };
    Record {
        name: rng.pick(NAMES).to_owned(),
        r#type: rng.pick(TYPES).to_owned(),
        class: if rng.chance(2) {
            rng.pick(CLASSES).to_owned()
        } else {
            String::new()
        },
        ttl,
        rdata,
    }
}

/// `NAME TTL [CLASS] TYPE RDATA` with random blanks; the record as the parser should return it.
fn render_record(rng: &mut Rng, r: &Record) -> (String, Record) {
    let mut text = format!("{}{}{}", r.name, blank(rng), r.ttl);
    if !r.class.is_empty() {
        text.push_str(blank(rng));
        text.push_str(&r.class);
    }
    text.push_str(blank(rng));
    text.push_str(&r.r#type);
    text.push_str(blank(rng));
    text.push_str(&r.rdata);
    let parsed = Record {
        class: r.class.to_ascii_uppercase(),
        r#type: r.r#type.to_ascii_uppercase(),
        ..r.clone()
    };
    (text, parsed)
}

/// A valid change file and the batches it describes (`--zone` is [`DEFAULT_ZONE`]).
fn valid_file(rng: &mut Rng) -> (String, Vec<ChangeBatch>) {
    let mut lines = Vec::new();
    let mut batches = Vec::new();
    let mut zone = DEFAULT_ZONE.to_owned();
    for _ in 0..1 + rng.below(4) {
        if rng.chance(2) {
            zone = rng
                .pick(&["example.com.", "example.org.", "é.test."])
                .to_owned();
            lines.push(format!("{}zone{}{zone}", indent(rng), blank(rng)));
        }
        let mut changes = Vec::new();
        for _ in 0..rng.below(5) {
            if rng.chance(4) {
                // A comment inside a batch does not end it.
                lines.push(format!("{}# {}", indent(rng), rng.pick(WORDS)));
            }
            let (text, change) = change(rng);
            lines.push(format!("{}{text}{}", indent(rng), trailing(rng)));
            changes.push(change);
        }
        lines.push(rng.pick(&["---", "", "  ", " --- "]).to_owned());
        if !changes.is_empty() {
            batches.push(ChangeBatch {
                zone: zone.clone(),
                changes,
                expected_serial: None,
            });
        }
    }
    let newline = if rng.chance(4) { "\r\n" } else { "\n" };
    (lines.join(newline), batches)
}

const DEFAULT_ZONE: &str = "default.test.";

fn indent(rng: &mut Rng) -> &'static str {
    if rng.chance(3) { blank(rng) } else { "" }
}

fn trailing(rng: &mut Rng) -> &'static str {
    if rng.chance(4) { blank(rng) } else { "" }
}

fn change(rng: &mut Rng) -> (String, Change) {
    let generated = record(rng);
    let (text, record) = render_record(rng, &generated);
    match rng.below(3) {
        0 => (
            format!("add{}{text}", blank(rng)),
            Change {
                op: Op::Create.into(),
                record: Some(record),
                previous: None,
            },
        ),
        1 => (
            format!("del{}{text}", blank(rng)),
            Change {
                op: Op::Delete.into(),
                record: Some(record),
                previous: None,
            },
        ),
        _ => {
            let generated = self::record(rng);
            let (old_text, old) = render_record(rng, &generated);
            let text = format!(
                "edit{}{old_text}{}=>{}{text}",
                blank(rng),
                blank(rng),
                blank(rng)
            );
            let change = Change {
                op: Op::Edit.into(),
                record: Some(record),
                previous: Some(old),
            };
            (text, change)
        }
    }
}

#[test]
fn valid_files_parse_to_the_batches_they_describe() {
    check("change_file_valid", valid_file, |(text, want)| {
        let got = parse_change_file(text, Some(DEFAULT_ZONE));
        let want = if want.is_empty() {
            Err(ChangeFileError::Empty)
        } else {
            Ok(want.clone())
        };
        if got != want {
            return Err(format!("got {got:?}\nwant {want:?}"));
        }
        Ok(())
    });
}

#[test]
fn a_bad_line_in_a_valid_file_is_reported_at_its_line() {
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
    let generate = |rng: &mut Rng| {
        let (text, _) = valid_file(rng);
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let at = rng.below(lines.len() + 1);
        lines.insert(at, format!("{}{}", indent(rng), rng.pick(BAD)));
        (lines.join("\n"), at + 1)
    };
    check(
        "change_file_bad_line",
        generate,
        |(text, line)| match parse_change_file(text, Some(DEFAULT_ZONE)) {
            Err(e) if e.line() == Some(*line) => Ok(()),
            other => Err(format!("want an error on line {line}, got {other:?}")),
        },
    );
}

impl Shrink for (String, usize) {
    fn shrink(self, why: String, _: &impl Fn(&Self) -> Result<(), String>) -> (Self, String) {
        (self, why)
    }
}

// ---------------------------------------------------------------------------------------------
// Anything else.

/// Characters a change file is made of, near-misses of its syntax, and any Unicode.
fn arbitrary_text(rng: &mut Rng) -> String {
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
    let mut text = String::new();
    for _ in 0..rng.below(64) {
        if rng.chance(4) {
            text.push(char::from_u32(rng.next() as u32 % 0x11_0000).unwrap_or('\u{fffd}'));
        } else {
            text.push_str(rng.pick(PIECES));
        }
    }
    text
}

#[test]
fn arbitrary_text_parses_or_explains_itself() {
    check("change_file_arbitrary", arbitrary_text, |text| {
        parses_or_explains(text, None)?;
        parses_or_explains(text, Some(DEFAULT_ZONE))
    });
}

/// A valid file with a few random edits: characters and lines dropped, duplicated, swapped,
/// or replaced by near-misses.
fn mutated_file(rng: &mut Rng) -> String {
    let (text, _) = valid_file(rng);
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(chars.len() + 1);
        match rng.below(5) {
            0 if at < chars.len() => {
                chars.remove(at);
            }
            1 if at < chars.len() => {
                let c = chars[at];
                chars.insert(at, c);
            }
            2 if at < chars.len() => {
                let other = rng.below(chars.len());
                chars.swap(at, other);
            }
            3 => {
                let piece = arbitrary_text(rng);
                let piece: Vec<char> = piece.chars().take(8).collect();
                chars.splice(at..at, piece);
            }
            _ => {
                let piece = rng.pick(&["=>", "\n", " ", "#", "---", "4294967296", "\u{0}"]);
                chars.splice(at..at, piece.chars());
            }
        }
    }
    chars.into_iter().collect()
}

#[test]
fn mutated_valid_files_parse_or_explain_themselves() {
    check("change_file_mutated", mutated_file, |text| {
        parses_or_explains(text, None)?;
        parses_or_explains(text, Some(DEFAULT_ZONE))
    });
}
