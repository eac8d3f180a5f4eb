//! RFC 1035 §5.1 master-file syntax: a tokenizer for entries and a reader that turns a zone file
//! into validated records.
//!
//! Our own lexer rather than hickory's: it tracks line numbers for error messages, decodes `\DDD`
//! escapes as bytes (hickory 0.26 mis-decodes them) and keeps quoted strings intact inside
//! parentheses. Supported: `$ORIGIN`, `$TTL` (RFC 2308 §4), `@`, owner inheritance from a leading
//! blank, TTL and class in either order, parentheses, comments and quoted strings. `$INCLUDE` and
//! `$GENERATE` are refused: a zone is one self-contained file.

use hickory_proto::rr::{Name, RecordType};
use hickory_proto::serialize::txt::parse_ttl;

use super::record::{self, MAX_TTL, ZoneRecord};

/// One character-string or word of an entry: `text` is the raw source (escapes still in place,
/// quotes removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token<'a> {
    pub(crate) text: &'a str,
    pub(crate) quoted: bool,
}

/// Where a logical entry starts and whether it begins with a blank (owner inherited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntryStart {
    pub(crate) line: usize,
    pub(crate) indented: bool,
}

/// A syntax or content error at a 1-based line of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub(crate) line: usize,
    pub(crate) message: String,
}

impl SyntaxError {
    fn new(line: usize, message: impl Into<String>) -> Self {
        Self {
            line,
            message: message.into(),
        }
    }
}

/// Splits master-file text into logical entries (one line, or several joined by parentheses).
#[derive(Debug)]
pub(crate) struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    line: usize,
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        Self {
            src,
            pos: 0,
            line: 1,
        }
    }

    /// Reads the next non-empty entry into `tokens` (cleared first); `Ok(None)` at end of input.
    pub(crate) fn next_entry(
        &mut self,
        tokens: &mut Vec<Token<'a>>,
    ) -> Result<Option<EntryStart>, SyntaxError> {
        tokens.clear();
        let bytes = self.src.as_bytes();
        while self.pos < bytes.len() {
            let start = EntryStart {
                line: self.line,
                indented: matches!(bytes[self.pos], b' ' | b'\t'),
            };
            let mut open_paren: Option<usize> = None;
            loop {
                let Some(&b) = bytes.get(self.pos) else {
                    if let Some(line) = open_paren {
                        return Err(SyntaxError::new(line, "unclosed '('"));
                    }
                    break;
                };
                match b {
                    b' ' | b'\t' | b'\r' => self.pos += 1,
                    b'\n' => {
                        self.pos += 1;
                        self.line += 1;
                        if open_paren.is_none() {
                            break;
                        }
                    }
                    b';' => {
                        while bytes.get(self.pos).is_some_and(|&c| c != b'\n') {
                            self.pos += 1;
                        }
                    }
                    b'(' => {
                        if open_paren.is_some() {
                            return Err(SyntaxError::new(self.line, "nested '('"));
                        }
                        open_paren = Some(self.line);
                        self.pos += 1;
                    }
                    b')' => {
                        if open_paren.take().is_none() {
                            return Err(SyntaxError::new(self.line, "')' without '('"));
                        }
                        self.pos += 1;
                    }
                    b'"' => tokens.push(self.quoted()?),
                    _ => tokens.push(self.word()?),
                }
            }
            if !tokens.is_empty() {
                return Ok(Some(start));
            }
        }
        Ok(None)
    }

    /// A `"..."` string starting at `self.pos`; it may not span lines.
    fn quoted(&mut self) -> Result<Token<'a>, SyntaxError> {
        let bytes = self.src.as_bytes();
        let start = self.pos + 1;
        let mut i = start;
        loop {
            match bytes.get(i) {
                None | Some(b'\n') => {
                    return Err(SyntaxError::new(self.line, "unterminated quoted string"));
                }
                Some(b'\\') => i += 2,
                Some(b'"') => break,
                Some(_) => i += 1,
            }
        }
        let text = self.slice(start, i)?;
        self.pos = i + 1;
        Ok(Token { text, quoted: true })
    }

    /// An unquoted word: everything up to a blank, newline, `;`, parenthesis or quote.
    fn word(&mut self) -> Result<Token<'a>, SyntaxError> {
        let bytes = self.src.as_bytes();
        let start = self.pos;
        let mut i = start;
        while let Some(&b) = bytes.get(i) {
            match b {
                b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(' | b')' | b'"' => break,
                b'\\' => {
                    if matches!(bytes.get(i + 1), None | Some(b'\n')) {
                        return Err(SyntaxError::new(self.line, "'\\' at end of line"));
                    }
                    i += 2;
                }
                _ => i += 1,
            }
        }
        let text = self.slice(start, i)?;
        self.pos = i;
        Ok(Token {
            text,
            quoted: false,
        })
    }

    fn slice(&self, start: usize, end: usize) -> Result<&'a str, SyntaxError> {
        // Token ends are at ASCII delimiters, so this only fails on a '\' before a multi-byte
        // character at the very end of the input.
        self.src
            .get(start..end)
            .ok_or_else(|| SyntaxError::new(self.line, "invalid escape at end of input"))
    }
}

/// Splits a single-line rdata string (from the API) into tokens.
pub(crate) fn tokenize_rdata(text: &str) -> Result<Vec<Token<'_>>, String> {
    if text.contains(['\n', '\r']) {
        return Err("must be a single line".to_owned());
    }
    let mut lexer = Lexer::new(text);
    let mut tokens = Vec::new();
    lexer.next_entry(&mut tokens).map_err(|e| e.message)?;
    Ok(tokens)
}

/// How the zone's own origin is chosen.
#[derive(Debug, Clone)]
pub(crate) enum OriginRule {
    /// The caller names the zone; `$ORIGIN` only changes the base for relative names.
    Explicit(Name),
    /// A `$ORIGIN` before the first record names the zone, else `fallback` (the file stem).
    FromFile { fallback: Name },
}

/// Reads records one by one from master-file text.
#[derive(Debug)]
pub(crate) struct ZoneReader<'a> {
    lexer: Lexer<'a>,
    tokens: Vec<Token<'a>>,
    rule: OriginRule,
    saw_origin_directive: bool,
    current_origin: Name,
    zone_origin: Option<Name>,
    last_owner: Option<Name>,
    default_ttl: Option<u32>,
    last_ttl: Option<u32>,
}

impl<'a> ZoneReader<'a> {
    pub(crate) fn new(text: &'a str, rule: OriginRule) -> Self {
        let current_origin = match &rule {
            OriginRule::Explicit(origin) => origin.clone(),
            OriginRule::FromFile { fallback } => fallback.clone(),
        };
        Self {
            lexer: Lexer::new(text),
            tokens: Vec::new(),
            rule,
            saw_origin_directive: false,
            current_origin,
            zone_origin: None,
            last_owner: None,
            default_ttl: None,
            last_ttl: None,
        }
    }

    /// The zone's origin, known once the first record has been read.
    pub(crate) fn zone_origin(&self) -> Option<&Name> {
        self.zone_origin.as_ref()
    }

    /// The next record with its line, `Ok(None)` at end of input.
    pub(crate) fn next_record(&mut self) -> Result<Option<(usize, ZoneRecord)>, SyntaxError> {
        let mut tokens = std::mem::take(&mut self.tokens);
        let result = loop {
            let Some(start) = self.lexer.next_entry(&mut tokens)? else {
                break Ok(None);
            };
            match self.entry(start, &tokens) {
                Ok(Some(record)) => break Ok(Some((start.line, record))),
                Ok(None) => continue,
                Err(message) => break Err(SyntaxError::new(start.line, message)),
            }
        };
        self.tokens = tokens;
        result
    }

    /// One entry: a directive (`Ok(None)`) or a record.
    fn entry(
        &mut self,
        start: EntryStart,
        tokens: &[Token<'_>],
    ) -> Result<Option<ZoneRecord>, String> {
        let mut rest = tokens;
        let owner = if start.indented {
            self.last_owner
                .clone()
                .ok_or("record without owner name (line starts with a blank)")?
        } else {
            let [first, tail @ ..] = rest else {
                return Err("empty entry".to_owned());
            };
            rest = tail;
            if !first.quoted && first.text.starts_with('$') {
                self.directive(first.text, rest)?;
                return Ok(None);
            }
            let zone = self.zone_origin_for_record().clone();
            let owner = if first.text == "@" {
                self.current_origin.clone()
            } else {
                record::parse_domain(first.text, &self.current_origin)
                    .map_err(|e| format!("owner name `{}`: {e}", first.text))?
            };
            if !zone.zone_of(&owner) {
                return Err(format!(
                    "owner name `{}` is outside zone `{}`",
                    record::name_text(&owner),
                    record::name_text(&zone)
                ));
            }
            self.last_owner = Some(owner.clone());
            owner
        };
        let zone = self.zone_origin_for_record().clone();

        // [<TTL>] [<class>] <type> or [<class>] [<TTL>] <type> (RFC 1035 §5.1).
        let mut ttl = None;
        let mut class_seen = false;
        let rtype = loop {
            let [token, tail @ ..] = rest else {
                return Err("missing record type".to_owned());
            };
            rest = tail;
            if ttl.is_none() && token.text.starts_with(|c: char| c.is_ascii_digit()) {
                let value =
                    parse_ttl(token.text).map_err(|e| format!("TTL `{}`: {e}", token.text))?;
                ttl = Some(value);
            } else if !class_seen && record::is_class_mnemonic(token.text) {
                record::parse_class(token.text)?;
                class_seen = true;
            } else {
                break record::parse_type(token.text)?;
            }
        };
        let ttl = match ttl {
            Some(ttl) => {
                self.last_ttl = Some(ttl);
                ttl
            }
            None => self
                .default_ttl
                .or(self.last_ttl)
                .ok_or("no TTL given and no $TTL in effect")?,
        };
        if ttl > MAX_TTL {
            return Err(format!("TTL {ttl} exceeds 2^31-1 (RFC 2181 §8)"));
        }
        if rtype == RecordType::SOA && owner != zone {
            return Err("SOA record must be at the zone apex".to_owned());
        }
        let rdata = record::canonical_rdata(rtype, rest, &self.current_origin)
            .map_err(|e| format!("{rtype} rdata: {e}"))?;
        Ok(Some(ZoneRecord {
            name: owner,
            rtype,
            ttl,
            rdata,
        }))
    }

    fn directive(&mut self, name: &str, args: &[Token<'_>]) -> Result<(), String> {
        match name.to_ascii_uppercase().as_str() {
            "$ORIGIN" => {
                let [arg] = args else {
                    return Err("$ORIGIN takes one domain name".to_owned());
                };
                self.current_origin = record::parse_domain(arg.text, &self.current_origin)
                    .map_err(|e| format!("$ORIGIN `{}`: {e}", arg.text))?;
                self.saw_origin_directive = true;
                Ok(())
            }
            "$TTL" => {
                let [arg] = args else {
                    return Err("$TTL takes one TTL".to_owned());
                };
                let ttl = parse_ttl(arg.text).map_err(|e| format!("$TTL `{}`: {e}", arg.text))?;
                self.default_ttl = Some(ttl);
                Ok(())
            }
            "$INCLUDE" => Err("$INCLUDE is not supported (a zone is one file)".to_owned()),
            other => Err(format!("unknown directive `{other}`")),
        }
    }

    /// Fixes the zone origin when the first record is read.
    fn zone_origin_for_record(&mut self) -> &Name {
        self.zone_origin.get_or_insert_with(|| match &self.rule {
            OriginRule::Explicit(origin) => origin.clone(),
            OriginRule::FromFile { .. } if self.saw_origin_directive => self.current_origin.clone(),
            OriginRule::FromFile { fallback } => fallback.clone(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::str::FromStr;

    type Entries = Vec<(EntryStart, Vec<(String, bool)>)>;

    fn entries(text: &str) -> Result<Entries, SyntaxError> {
        let mut lexer = Lexer::new(text);
        let mut tokens = Vec::new();
        let mut out = Vec::new();
        while let Some(start) = lexer.next_entry(&mut tokens)? {
            out.push((
                start,
                tokens
                    .iter()
                    .map(|t| (t.text.to_owned(), t.quoted))
                    .collect(),
            ));
        }
        Ok(out)
    }

    #[test]
    fn parentheses_join_lines_and_comments_are_dropped() {
        let text = "; header\n\n@ IN SOA ns1 host (  ; c\n 1 ; serial\n 2 3 4 5 )\n  A 192.0.2.1\n";
        let got = entries(text).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0].0,
            EntryStart {
                line: 3,
                indented: false
            }
        );
        let words: Vec<_> = got[0].1.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            words,
            ["@", "IN", "SOA", "ns1", "host", "1", "2", "3", "4", "5"]
        );
        assert_eq!(
            got[1].0,
            EntryStart {
                line: 6,
                indented: true
            }
        );
    }

    #[test]
    fn quoted_strings_keep_blanks_semicolons_and_escapes() {
        let got = entries("x TXT \"a b; c\" \"q\\\"q\" plain\n").unwrap();
        assert_eq!(
            got[0].1[2..],
            [
                ("a b; c".to_owned(), true),
                ("q\\\"q".to_owned(), true),
                ("plain".to_owned(), false)
            ]
        );
    }

    #[test]
    fn syntax_errors_carry_the_line() {
        assert_eq!(entries("a A 1\nb TXT \"open\n").unwrap_err().line, 2);
        assert_eq!(entries("a A 1\n\nb SOA ( 1 2\n").unwrap_err().line, 3);
        assert_eq!(entries("a A 1 )\n").unwrap_err().line, 1);
        assert!(entries("a ( ( b ) )\n").is_err());
    }

    #[test]
    fn reader_applies_origin_ttl_and_owner_inheritance() {
        let text = "$ORIGIN Example.COM.\n$TTL 1h\n@ SOA ns1 hostmaster 7 2 3 4 5\n  NS ns1\n\
                    www 60 IN A 192.0.2.1\n    IN 120 AAAA 2001:DB8::1\n";
        let fallback = Name::from_str("stem.").unwrap();
        let mut reader = ZoneReader::new(text, OriginRule::FromFile { fallback });
        let mut got = Vec::new();
        while let Some((line, r)) = reader.next_record().unwrap() {
            got.push((line, r.to_proto()));
        }
        assert_eq!(
            record::name_text(reader.zone_origin().unwrap()),
            "example.com."
        );
        let summary: Vec<_> = got
            .iter()
            .map(|(l, r)| format!("{l} {} {} {} {}", r.name, r.ttl, r.r#type, r.rdata))
            .collect();
        assert_eq!(
            summary,
            [
                "3 example.com. 3600 SOA ns1.example.com. hostmaster.example.com. 7 2 3 4 5",
                "4 example.com. 3600 NS ns1.example.com.",
                "5 www.example.com. 60 A 192.0.2.1",
                "6 www.example.com. 120 AAAA 2001:db8::1",
            ]
        );
    }

    #[test]
    fn reader_without_origin_directive_uses_the_fallback() {
        let fallback = Name::from_str("stem.test.").unwrap();
        let mut reader = ZoneReader::new("a 5 A 192.0.2.1\n", OriginRule::FromFile { fallback });
        let (_, r) = reader.next_record().unwrap().unwrap();
        assert_eq!(record::name_text(&r.name), "a.stem.test.");
    }

    #[test]
    fn reader_errors_name_the_line_and_reason() {
        let origin = Name::from_str("example.com.").unwrap();
        let cases = [
            ("a 5 A 192.0.2.1\nb 5 A 300.1.1.1\n", 2, "A rdata"),
            ("a 5 FOO 1\n", 1, "unknown record type"),
            ("a 5 CH A 192.0.2.1\n", 1, "class CH"),
            ("a.example.net. 5 A 192.0.2.1\n", 1, "outside zone"),
            ("  5 A 192.0.2.1\n", 1, "without owner"),
            ("a A 192.0.2.1\n", 1, "no TTL"),
            ("$INCLUDE other.zone\n", 1, "$INCLUDE"),
            ("www 5 SOA a. b. 1 2 3 4 5\n", 1, "apex"),
        ];
        for (text, line, needle) in cases {
            let mut reader = ZoneReader::new(text, OriginRule::Explicit(origin.clone()));
            let err = loop {
                match reader.next_record() {
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("{text:?} parsed"),
                    Err(e) => break e,
                }
            };
            assert_eq!(err.line, line, "{text:?}: {}", err.message);
            assert!(err.message.contains(needle), "{text:?}: {}", err.message);
        }
    }
}
