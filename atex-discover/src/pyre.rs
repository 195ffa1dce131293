//! Python `re` compatibility: Python patterns compiled with fancy-regex, and
//! `search`, `match`, full match (`^X$`) and `sub` with Python semantics.
//!
//! fmf evaluates user regexes (filters, `~` context operators, `-~`/`~`
//! merge suffixes) with Python's `re`, so the pattern syntax is translated
//! where Python and fancy-regex differ:
//!
//! - `$` outside multi-line mode matches at the end *or before a final
//!   `\n`* in Python; it becomes `(?=\n?\z)`.
//! - `\Z` is Python's absolute end (`\z`); fancy-regex's `\Z` ignores
//!   trailing newlines.
//! - `[` inside a class is a literal in Python, a nested class in
//!   fancy-regex; `&&` and `~~` are literals in Python, set operators in
//!   regex-syntax. They are escaped.
//! - `\b` inside a class is a backspace, `\0` and three-digit escapes are
//!   octal, `(?#...)` is a comment, the `a`/`L`/`u` flags are dropped.
//! - Escapes of ASCII letters that Python does not know (`\h`, `\K`, `\e`,
//!   `\p`, ...) are errors in Python (`bad escape`) and stay errors here.
//!
//! Known deviation: `\N{NAME}` is not supported (reported as an error).
//!
//! Compiled patterns are cached process-wide: filters and adjust rules
//! evaluate the same few patterns for every node of a tree.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock};

/// A pattern Python's `re` would reject (Python's `re.error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PyReError {
    /// What is wrong, with the offending pattern.
    pub message: String,
}

impl PyReError {
    fn new(message: impl Into<String>) -> Self {
        PyReError {
            message: message.into(),
        }
    }
}

/// A compiled Python regular expression. Cloning is cheap (shared).
#[derive(Debug, Clone)]
pub struct PyRegex {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pattern: String,
    regex: fancy_regex::Regex,
    /// Set when the pattern has no metacharacter: plain substring tests are
    /// much faster than running a regex.
    literal: Option<String>,
    /// The pattern compiled to never match empty, for `sub` (built on use).
    not_empty: OnceLock<Option<fancy_regex::Regex>>,
    /// `"^" + pattern + "$"`, compiled on first use by `full_match_dollar`.
    full: OnceLock<Option<PyRegex>>,
    /// Number of capture groups (without group 0).
    groups: usize,
    names: HashMap<String, usize>,
}

/// Compile a Python pattern (cached).
pub fn compile(pattern: &str) -> Result<PyRegex, PyReError> {
    static CACHE: OnceLock<Mutex<HashMap<String, Result<PyRegex, PyReError>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Ok(map) = cache.lock()
        && let Some(hit) = map.get(pattern)
    {
        return hit.clone();
    }
    let compiled = compile_uncached(pattern);
    if let Ok(mut map) = cache.lock() {
        // Bound memory for pathological inputs (patterns built from data).
        if map.len() >= 4096 {
            map.clear();
        }
        map.insert(pattern.to_owned(), compiled.clone());
    }
    compiled
}

/// `re.match("^" + pattern + "$", text)`: fmf's filter value matching. The
/// pattern is concatenated as a string, as Python does, so `a|b` means
/// `^a` or `b$`.
pub fn full_match(pattern: &str, text: &str) -> Result<bool, PyReError> {
    if is_literal(pattern) {
        return Ok(text == pattern || text.strip_suffix('\n') == Some(pattern));
    }
    let regex = compile(&format!("^{pattern}$"))?;
    Ok(regex.match_start(text))
}

/// True when the pattern has no metacharacter, so it matches itself only.
fn is_literal(pattern: &str) -> bool {
    pattern.chars().all(|c| !".^$*+?{}[]\\|()#".contains(c))
}

fn compile_uncached(pattern: &str) -> Result<PyRegex, PyReError> {
    let translated = translate(pattern)?;
    let regex = fancy_regex::RegexBuilder::new(&translated)
        .build()
        .map_err(|e| PyReError::new(format!("{e} in pattern '{pattern}'")))?;
    let mut names = HashMap::new();
    for (index, name) in regex.capture_names().enumerate() {
        if let Some(name) = name {
            names.insert(name.to_owned(), index);
        }
    }
    let groups = regex.captures_len().saturating_sub(1);
    let literal = is_literal(pattern).then(|| pattern.to_owned());
    Ok(PyRegex {
        inner: Arc::new(Inner {
            pattern: pattern.to_owned(),
            regex,
            literal,
            not_empty: OnceLock::new(),
            full: OnceLock::new(),
            groups,
            names,
        }),
    })
}

impl PyRegex {
    /// The Python pattern this was compiled from.
    pub fn as_str(&self) -> &str {
        &self.inner.pattern
    }

    /// `re.search(pattern, s) is not None`.
    pub fn search(&self, s: &str) -> bool {
        if let Some(literal) = &self.inner.literal {
            return s.contains(literal.as_str());
        }
        // A runtime error is the backtrack limit; Python would keep going
        // for a very long time, so "no match" is the practical answer.
        self.inner.regex.is_match(s).unwrap_or(false)
    }

    /// `re.match(pattern, s) is not None` (anchored at the start).
    pub fn match_start(&self, s: &str) -> bool {
        if let Some(literal) = &self.inner.literal {
            return s.starts_with(literal.as_str());
        }
        // The leftmost match starts at 0 whenever some match can start there.
        matches!(self.inner.regex.find(s), Ok(Some(m)) if m.start() == 0)
    }

    /// `re.match("^" + pattern + "$", s) is not None`: a full match where
    /// `$` also matches before one trailing `"\n"`.
    pub fn full_match_dollar(&self, s: &str) -> bool {
        if let Some(literal) = &self.inner.literal {
            return s.strip_suffix('\n').unwrap_or(s) == literal || (s == literal.as_str());
        }
        let full = self
            .inner
            .full
            .get_or_init(|| compile(&format!("^{}$", self.inner.pattern)).ok());
        full.as_ref().is_some_and(|regex| regex.match_start(s))
    }

    /// The spans of the groups of the first match (`re.search`), group 0
    /// first; `None` for a group that did not take part.
    pub fn captures(&self, s: &str) -> Option<Vec<Option<(usize, usize)>>> {
        let caps = self.inner.regex.captures(s).ok()??;
        Some(
            (0..caps.len())
                .map(|i| caps.get(i).map(|m| (m.start(), m.end())))
                .collect(),
        )
    }

    /// `re.sub(pattern, repl, s)` with Python's replacement syntax
    /// (`\1`, `\g<1>`, `\g<name>`, `\\`, `\n` and the other escapes).
    pub fn sub(&self, repl: &str, s: &str) -> Result<String, PyReError> {
        let template = self.parse_template(repl)?;
        let regex = &self.inner.regex;
        let mut out = String::with_capacity(s.len());
        let mut last = 0;
        let mut pos = 0;
        // Python allows an empty match right after a non-empty one, but not
        // two matches at the same position when the first was empty.
        let mut must_advance = false;
        while pos <= s.len() {
            let Some(caps) = regex
                .captures_from_pos(s, pos)
                .map_err(|e| PyReError::new(e.to_string()))?
            else {
                break;
            };
            let Some(whole) = caps.get(0) else { break };
            let (start, end) = (whole.start(), whole.end());
            let caps = if must_advance && start == end && start == pos {
                // Python tries a non-empty match at the same position
                // first, and only then moves on.
                match self.not_empty_match_at(s, pos)? {
                    Some(caps) => caps,
                    None => {
                        let Some(c) = s[pos..].chars().next() else {
                            break;
                        };
                        pos += c.len_utf8();
                        must_advance = false;
                        continue;
                    }
                }
            } else {
                caps
            };
            let Some(whole) = caps.get(0) else { break };
            let (start, end) = (whole.start(), whole.end());
            out.push_str(&s[last..start]);
            for part in &template {
                match part {
                    TemplatePart::Literal(text) => out.push_str(text),
                    TemplatePart::Group(index) => {
                        if let Some(m) = caps.get(*index) {
                            out.push_str(m.as_str());
                        }
                    }
                }
            }
            last = end;
            must_advance = start == end;
            pos = end;
        }
        out.push_str(&s[last..]);
        Ok(out)
    }

    /// The highest-priority non-empty match starting exactly at `pos`.
    fn not_empty_match_at<'t>(
        &self,
        s: &'t str,
        pos: usize,
    ) -> Result<Option<fancy_regex::Captures<'t, str>>, PyReError> {
        let regex = self.inner.not_empty.get_or_init(|| {
            fancy_regex::RegexBuilder::new(self.inner.regex.as_str())
                .find_not_empty(true)
                .build()
                .ok()
        });
        let Some(regex) = regex else { return Ok(None) };
        let caps = regex
            .captures_from_pos(s, pos)
            .map_err(|e| PyReError::new(e.to_string()))?;
        Ok(caps.filter(|caps| caps.get(0).is_some_and(|m| m.start() == pos)))
    }

    fn parse_template(&self, repl: &str) -> Result<Vec<TemplatePart>, PyReError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = repl.char_indices().peekable();
        let bad = |msg: String| Err(PyReError::new(msg));
        while let Some((at, c)) = chars.next() {
            if c != '\\' {
                literal.push(c);
                continue;
            }
            let Some((_, next)) = chars.next() else {
                return bad(format!("bad escape (end of pattern) at position {at}"));
            };
            let group = match next {
                'g' => {
                    if chars.next().map(|(_, c)| c) != Some('<') {
                        return bad(format!("missing < at position {}", at + 2));
                    }
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some((_, '>')) => break,
                            Some((_, c)) => name.push(c),
                            None => {
                                return bad(format!(
                                    "missing >, unterminated name at position {}",
                                    at + 3
                                ));
                            }
                        }
                    }
                    let index = if !name.is_empty() && name.chars().all(|c| c.is_ascii_digit()) {
                        name.parse::<usize>().unwrap_or(usize::MAX)
                    } else if let Some(index) = self.inner.names.get(&name) {
                        *index
                    } else if name.is_empty() || !is_identifier(&name) {
                        return bad(format!("bad character in group name '{name}'"));
                    } else {
                        return bad(format!("unknown group name '{name}'"));
                    };
                    Some(index)
                }
                '0' => {
                    let mut value = 0u32;
                    let mut digits = 1;
                    while digits < 3 {
                        match chars.peek() {
                            Some((_, d @ '0'..='7')) => {
                                value = value * 8 + d.to_digit(8).unwrap_or(0);
                                chars.next();
                                digits += 1;
                            }
                            _ => break,
                        }
                    }
                    literal.push(char::from_u32(value).unwrap_or('\0'));
                    None
                }
                '1'..='9' => {
                    let first = next;
                    let mut number = String::from(first);
                    if let Some((_, d)) = chars.peek().copied()
                        && d.is_ascii_digit()
                    {
                        chars.next();
                        number.push(d);
                        // Three octal digits form an octal escape.
                        if let Some((_, d3)) = chars.peek().copied()
                            && ('0'..='7').contains(&d3)
                            && number.chars().all(|c| ('0'..='7').contains(&c))
                        {
                            chars.next();
                            number.push(d3);
                            let value = u32::from_str_radix(&number, 8).unwrap_or(0);
                            if value > 0o377 {
                                return bad(format!(
                                    "octal escape value \\{number} outside of range 0-0o377 at position {at}"
                                ));
                            }
                            literal.push(char::from_u32(value).unwrap_or('\0'));
                            continue;
                        }
                    }
                    Some(number.parse::<usize>().unwrap_or(usize::MAX))
                }
                'a' => {
                    literal.push('\x07');
                    None
                }
                'b' => {
                    literal.push('\x08');
                    None
                }
                'f' => {
                    literal.push('\x0c');
                    None
                }
                'n' => {
                    literal.push('\n');
                    None
                }
                'r' => {
                    literal.push('\r');
                    None
                }
                't' => {
                    literal.push('\t');
                    None
                }
                'v' => {
                    literal.push('\x0b');
                    None
                }
                '\\' => {
                    literal.push('\\');
                    None
                }
                c if c.is_ascii_alphabetic() => {
                    return bad(format!("bad escape \\{c} at position {at}"));
                }
                c => {
                    // Unknown non-letter escapes stay as they are.
                    literal.push('\\');
                    literal.push(c);
                    None
                }
            };
            if let Some(index) = group {
                if index > self.inner.groups {
                    return bad(format!(
                        "invalid group reference {index} at position {}",
                        at + 1
                    ));
                }
                if !literal.is_empty() {
                    parts.push(TemplatePart::Literal(std::mem::take(&mut literal)));
                }
                parts.push(TemplatePart::Group(index));
            }
        }
        if !literal.is_empty() {
            parts.push(TemplatePart::Literal(literal));
        }
        Ok(parts)
    }
}

#[derive(Debug)]
enum TemplatePart {
    Literal(String),
    Group(usize),
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
}

/// Translate Python pattern syntax into fancy-regex syntax.
fn translate(pattern: &str) -> Result<String, PyReError> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 8);
    // Multi-line flag per open group, to know what `$` means.
    let mut multiline_stack: Vec<bool> = Vec::new();
    let mut multiline = false;
    // Python's ASCII flag `(?a)`: `\w`, `\d`, `\s` match ASCII only.
    let mut ascii = false;
    // 0: the last token is no quantifier; 1: a quantifier; 2: a quantifier
    // with its lazy/possessive modifier. Python rejects `a**`, `a{2}{3}`.
    let mut quantified = 0u8;
    let mut i = 0;
    let bad_escape =
        |c: char, at: usize| Err(PyReError::new(format!("bad escape \\{c} at position {at}")));
    while i < chars.len() {
        let c = chars[i];
        let was_quantified = std::mem::take(&mut quantified);
        match c {
            '*' | '+' | '?' | '{' => {
                let repeat = if c == '{' {
                    python_repeat(&chars, i)?
                } else {
                    Some(i + 1)
                };
                match repeat {
                    Some(end) => {
                        let modifier = was_quantified == 1 && (c == '?' || c == '+');
                        if was_quantified > 0 && !modifier {
                            return Err(PyReError::new(format!("multiple repeat at position {i}")));
                        }
                        quantified = if modifier { 2 } else { 1 };
                        out.extend(&chars[i..end]);
                        i = end;
                    }
                    None => {
                        out.push_str(r"\{");
                        i += 1;
                    }
                }
            }
            '\\' => {
                let Some(&next) = chars.get(i + 1) else {
                    return Err(PyReError::new(format!(
                        "bad escape (end of pattern) at position {i}"
                    )));
                };
                match next {
                    'Z' => out.push_str(r"\z"),
                    'w' if ascii => out.push_str("[0-9A-Za-z_]"),
                    'W' if ascii => out.push_str("[^0-9A-Za-z_]"),
                    'd' if ascii => out.push_str("[0-9]"),
                    'D' if ascii => out.push_str("[^0-9]"),
                    's' if ascii => out.push_str(r"[ \t\n\r\x0b\x0c]"),
                    'S' if ascii => out.push_str(r"[^ \t\n\r\x0b\x0c]"),
                    'A' | 'b' | 'B' | 'd' | 'D' | 's' | 'S' | 'w' | 'W' | 'a' | 'f' | 'n' | 'r'
                    | 't' | 'v' | 'x' | 'u' | 'U' => {
                        out.push('\\');
                        out.push(next);
                    }
                    '0'..='9' => {
                        let consumed = translate_digit_escape(&chars, i, false, &mut out)?;
                        i += consumed;
                        continue;
                    }
                    c if c.is_ascii_alphabetic() => return bad_escape(c, i),
                    c => push_literal(&mut out, c),
                }
                i += 2;
            }
            '[' => {
                i = translate_class(&chars, i, ascii, &mut out)?;
            }
            '$' if !multiline => {
                out.push_str(r"(?=\n?\z)");
                i += 1;
            }
            '(' => {
                multiline_stack.push(multiline);
                if chars.get(i + 1) == Some(&'?') {
                    check_group_syntax(&chars, i)?;
                    // Comment group.
                    if chars.get(i + 2) == Some(&'#') {
                        multiline_stack.pop();
                        let Some(end) = chars[i..].iter().position(|&c| c == ')') else {
                            return Err(PyReError::new(format!(
                                "missing ), unterminated comment at position {i}"
                            )));
                        };
                        i += end + 1;
                        continue;
                    }
                    // Flag group: `(?imsx)`, `(?i:...)`, `(?-i:...)`.
                    let mut j = i + 2;
                    let mut on = String::new();
                    let mut off = String::new();
                    let mut negative = false;
                    while let Some(&f) = chars.get(j) {
                        if f == '-' {
                            negative = true;
                        } else if "aiLmsux".contains(f) {
                            if negative { off.push(f) } else { on.push(f) }
                        } else {
                            break;
                        }
                        j += 1;
                    }
                    let end = chars.get(j).copied();
                    if j > i + 2 && (end == Some(')') || end == Some(':')) {
                        let keep = |flags: &str| -> String {
                            flags.chars().filter(|f| "imsx".contains(*f)).collect()
                        };
                        let (on_kept, off_kept) = (keep(&on), keep(&off));
                        let new_multiline = (multiline || on.contains('m')) && !off.contains('m');
                        if end == Some(')') {
                            // Python 3.11+ accepts global flags only first.
                            if i > 0 {
                                return Err(PyReError::new(format!(
                                    "global flags not at the start of the expression at position {i}"
                                )));
                            }
                            // Global flags apply to the rest of the pattern.
                            ascii |= on.contains('a');
                            multiline_stack.pop();
                            multiline = new_multiline;
                            if !on_kept.is_empty() || !off_kept.is_empty() {
                                out.push_str("(?");
                                out.push_str(&on_kept);
                                if !off_kept.is_empty() {
                                    out.push('-');
                                    out.push_str(&off_kept);
                                }
                                out.push(')');
                            }
                        } else {
                            multiline = new_multiline;
                            out.push_str("(?");
                            out.push_str(&on_kept);
                            if !off_kept.is_empty() {
                                out.push('-');
                                out.push_str(&off_kept);
                            }
                            out.push(':');
                        }
                        i = j + 1;
                        continue;
                    }
                }
                out.push('(');
                i += 1;
            }
            ')' => {
                if let Some(previous) = multiline_stack.pop() {
                    multiline = previous;
                }
                out.push(')');
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// `{m,n}` at `chars[at]`: `Some(end)` for a Python repeat, `None` for a
/// literal `{`.
fn python_repeat(chars: &[char], at: usize) -> Result<Option<usize>, PyReError> {
    let mut j = at + 1;
    let number = |j: &mut usize| {
        let start = *j;
        while chars.get(*j).is_some_and(char::is_ascii_digit) {
            *j += 1;
        }
        chars[start..*j].iter().collect::<String>()
    };
    let low = number(&mut j);
    let high = if chars.get(j) == Some(&',') {
        j += 1;
        Some(number(&mut j))
    } else {
        None
    };
    if chars.get(j) != Some(&'}') || (low.is_empty() && high.is_none()) {
        return Ok(None);
    }
    let parse = |text: &str| text.parse::<u64>().ok();
    if let (Some(low), Some(high)) = (parse(&low), high.as_deref().and_then(parse))
        && low > high
    {
        return Err(PyReError::new(format!(
            "min repeat greater than max repeat at position {at}"
        )));
    }
    Ok(Some(j + 1))
}

/// Reject group syntax Python does not have: `(?<name>...)` and group
/// names that are not identifiers.
fn check_group_syntax(chars: &[char], at: usize) -> Result<(), PyReError> {
    let rest: String = chars[at + 2..].iter().take(3).collect();
    let name_start = if rest.starts_with("P<") {
        at + 4
    } else if rest.starts_with('<') && !rest.starts_with("<=") && !rest.starts_with("<!") {
        return Err(PyReError::new(format!(
            "unknown extension ?<{} at position {}",
            chars.get(at + 3).map(char::to_string).unwrap_or_default(),
            at + 1
        )));
    } else {
        return Ok(());
    };
    let name: String = chars[name_start.min(chars.len())..]
        .iter()
        .take_while(|&&c| c != '>')
        .collect();
    if !is_identifier(&name) {
        return Err(PyReError::new(format!(
            "bad character in group name '{name}' at position {name_start}"
        )));
    }
    Ok(())
}

/// Translate `\N...` (digits) at `chars[at]`; returns the chars consumed.
fn translate_digit_escape(
    chars: &[char],
    at: usize,
    in_class: bool,
    out: &mut String,
) -> Result<usize, PyReError> {
    let digit = |k: usize| chars.get(at + k).copied().filter(char::is_ascii_digit);
    let octal = |k: usize| {
        chars
            .get(at + k)
            .copied()
            .filter(|c| ('0'..='7').contains(c))
    };
    let first = digit(1).unwrap_or('0');
    // `\0`, `\0N`, `\0NN` and any three octal digits are octal escapes.
    let octal_len = if first == '0' {
        1 + usize::from(octal(2).is_some()) + usize::from(octal(2).is_some() && octal(3).is_some())
    } else if octal(1).is_some() && octal(2).is_some() && octal(3).is_some() {
        3
    } else {
        0
    };
    if octal_len > 0 {
        let text: String = chars[at + 1..at + 1 + octal_len].iter().collect();
        let value = u32::from_str_radix(&text, 8).unwrap_or(0);
        if value > 0o377 {
            return Err(PyReError::new(format!(
                "octal escape value \\{text} outside of range 0-0o377 at position {at}"
            )));
        }
        push_literal(out, char::from_u32(value).unwrap_or('\0'));
        return Ok(1 + octal_len);
    }
    if in_class {
        return Err(PyReError::new(format!(
            "bad escape \\{first} at position {at}"
        )));
    }
    let len = if digit(2).is_some() { 2 } else { 1 };
    let number: String = chars[at + 1..at + 1 + len].iter().collect();
    // A group so that a following digit is not read as part of the number.
    let _ = write!(out, "(?:\\{number})");
    Ok(1 + len)
}

/// Translate a character class starting at `chars[start] == '['`; returns
/// the index after its closing `]`.
fn translate_class(
    chars: &[char],
    start: usize,
    ascii: bool,
    out: &mut String,
) -> Result<usize, PyReError> {
    let mut i = start + 1;
    out.push('[');
    if chars.get(i) == Some(&'^') {
        out.push('^');
        i += 1;
    }
    if chars.get(i) == Some(&']') {
        out.push_str(r"\]");
        i += 1;
    }
    loop {
        let Some(&c) = chars.get(i) else {
            return Err(PyReError::new(format!(
                "unterminated character set at position {start}"
            )));
        };
        match c {
            ']' => {
                out.push(']');
                return Ok(i + 1);
            }
            '\\' => {
                let Some(&next) = chars.get(i + 1) else {
                    return Err(PyReError::new(format!(
                        "bad escape (end of pattern) at position {i}"
                    )));
                };
                match next {
                    'b' => push_literal(out, '\x08'),
                    'w' if ascii => out.push_str("0-9A-Za-z_"),
                    'd' if ascii => out.push_str("0-9"),
                    's' if ascii => out.push_str(r" \t\n\r\x0b\x0c"),
                    'd' | 'D' | 's' | 'S' | 'w' | 'W' | 'a' | 'f' | 'n' | 'r' | 't' | 'v' | 'x'
                    | 'u' | 'U' => {
                        out.push('\\');
                        out.push(next);
                    }
                    '0'..='9' => {
                        i += translate_digit_escape(chars, i, true, out)?;
                        continue;
                    }
                    c if c.is_ascii_alphabetic() => {
                        return Err(PyReError::new(format!("bad escape \\{c} at position {i}")));
                    }
                    c => push_literal(out, c),
                }
                i += 2;
            }
            '[' | '&' | '~' => {
                push_literal(out, c);
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
}

fn push_literal(out: &mut String, c: char) {
    let _ = write!(out, "\\x{{{:X}}}", u32::from(c));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn re(p: &str) -> PyRegex {
        compile(p).expect("pattern compiles")
    }

    #[test]
    fn dollar_matches_before_final_newline() {
        assert!(re("a$").search("a\n"));
        assert!(!re("a$").search("a\n\n"));
        assert!(!re(r"a\Z").search("a\n"));
        assert!(re(r"(?m)a$").search("a\nb"));
        assert!(full_match("x", "x\n").unwrap_or(false));
        assert!(re("x").full_match_dollar("x\n"));
        assert!(!re("x").full_match_dollar("x\n\n"));
        assert!(re("x.*").full_match_dollar("xyz\n"));
    }

    #[test]
    fn full_match_concatenates() {
        // "^a|b$" is `^a` or `b$`, as in Python.
        assert!(full_match("a|b", "abc").unwrap_or(false));
        assert!(full_match("a|b", "b\n").unwrap_or(false));
        // re.match is anchored at the start, even for the `b$` branch.
        assert!(!full_match("a|b", "cab").unwrap_or(true));
        assert!(!full_match("a|b", "cac").unwrap_or(true));
    }

    #[test]
    fn python_syntax() {
        assert!(re(r"(?P<x>a)(?P=x)").search("aa"));
        assert!(re(r"[[]").search("["));
        assert!(re(r"[a&&b]").search("&"));
        assert!(re(r"a{,2}b").search("aab"));
        assert!(re(r"a{").search("a{"));
        assert!(re(r"\0").search("\0"));
        assert!(re(r"(?#comment)a").search("a"));
        assert!(re(r"[\b]").search("\x08"));
        assert!(compile(r"\h").is_err());
        assert!(compile("[").is_err());
        assert!(compile("(").is_err());
        assert!(re("x").match_start("xy"));
        assert!(!re("y").match_start("xy"));
        assert!(re("b|x").match_start("xy"));
    }

    #[test]
    fn substitution() {
        assert_eq!(re("a(b)").sub(r"\1\1", "xaby").ok(), Some("xbby".into()));
        assert_eq!(
            re("(?P<n>b)").sub(r"<\g<n>\g<1>>", "abc").ok(),
            Some("a<bb>c".into())
        );
        assert_eq!(re("b").sub(r"\\\n", "abc").ok(), Some("a\\\nc".into()));
        assert_eq!(re("x*").sub("-", "abxd").ok(), Some("-a-b--d-".into()));
        assert_eq!(re("$").sub("!", "a\n").ok(), Some("a!\n!".into()));
        assert!(re("a").sub(r"\2", "b").is_err());
        assert!(re("a").sub(r"\q", "b").is_err());
        assert_eq!(re("a").sub(r"\&", "a").ok(), Some("\\&".into()));
    }
}
