//! fmf contexts and the `when` rule grammar, with three-valued evaluation
//! (spec A.10, python fmf 1.7 `fmf/context.py`).
//!
//! A rule is parsed once into a [`Rule`] (parsed rules are cached
//! process-wide, since adjust evaluates the same few rule strings for every
//! node of a tree) and evaluated against a [`Context`].
//!
//! Deviations from python fmf, all in error paths:
//! - an invalid regular expression in a `~`/`!~` value raises Python's
//!   `re.error` (an uncaught crash); here it is [`MatchError::InvalidRule`];
//! - a `when` value that is neither a string nor a bool crashes python with
//!   a `TypeError`; [`Context::matches_value`] reports it as
//!   [`MatchError::InvalidRule`] with a message starting `TypeError:`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use indexmap::IndexMap;

use crate::pyre;
use crate::value::Value;

/// An fmf context: dimension -> values, plus case sensitivity.
#[derive(Debug, Clone, Default)]
pub struct Context {
    dimensions: IndexMap<String, Vec<ContextValue>>,
    case_sensitive: bool,
}

/// Why a rule did not give true or false.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatchError {
    /// The rule depends on a dimension the context does not define.
    #[error("cannot decide the rule")]
    CannotDecide,
    /// The rule cannot be parsed; the message says why.
    #[error("{0}")]
    InvalidRule(String),
}

/// A `-c DIM=VALUE` argument without `=`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid context '{0}', use DIM=VALUE")]
pub struct InvalidContext(pub String);

/// One value of a dimension: the raw string and its name/version parts
/// (`centos-8.3.0` is `centos`, `8`, `3`, `0`; separators are `:`, `-`, `.`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextValue {
    raw: String,
    parts: Vec<String>,
}

impl ContextValue {
    /// Split a raw value into name and version parts.
    pub fn new(raw: &str) -> Self {
        ContextValue {
            raw: raw.to_owned(),
            parts: raw.split([':', '-', '.']).map(str::to_owned).collect(),
        }
    }

    /// The value as written (regex operators use it).
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The name followed by the version parts.
    pub fn parts(&self) -> &[String] {
        &self.parts
    }

    /// fmf's `ContextValue.version_cmp`: `None` means CannotDecide. With
    /// `ordered` false the result is 0 (equal) or 1 (different).
    pub fn version_cmp(
        &self,
        other: &ContextValue,
        minor: bool,
        ordered: bool,
        case_sensitive: bool,
    ) -> Option<i32> {
        let (left, right) = (&self.parts, &other.parts);
        if left.is_empty() || right.is_empty() {
            return None;
        }
        if !eq_case(&left[0], &right[0], case_sensitive) {
            return if ordered { None } else { Some(1) };
        }
        if minor && right.len() > 1 {
            let major = left.get(1)?;
            // The major versions are compared as strings, not numbers.
            if !eq_case(major, &right[1], case_sensitive) {
                if !ordered {
                    return Some(1);
                }
                if right.len() > 2 {
                    return None;
                }
            }
        }
        for (a, b) in left[1..].iter().zip(&right[1..]) {
            let compared = part_cmp(a, b, case_sensitive);
            if compared != 0 {
                return Some(compared);
            }
        }
        if right.len() <= left.len() {
            return Some(0);
        }
        if minor {
            None
        } else if !ordered {
            Some(1)
        } else if left.len() == 1 {
            None
        } else {
            Some(-1)
        }
    }
}

fn eq_case(a: &str, b: &str, case_sensitive: bool) -> bool {
    if case_sensitive {
        a == b
    } else {
        casefold(a) == casefold(b)
    }
}

/// Python `str.casefold()`, approximated by per-character lowercase plus
/// the common full case foldings.
pub fn casefold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            'ß' | 'ẞ' => out.push_str("ss"),
            'ς' => out.push('σ'),
            'ſ' => out.push('s'),
            // char::to_lowercase has no final-sigma context rule.
            c => out.extend(c.to_lowercase()),
        }
    }
    out
}

/// Compare two version parts: as integers when both parse with Python's
/// `int()`, otherwise as strings (casefolded when case-insensitive).
pub fn part_cmp(a: &str, b: &str, case_sensitive: bool) -> i32 {
    let ordering = match (py_int(a), py_int(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ if case_sensitive => a.cmp(b),
        _ => casefold(a).cmp(&casefold(b)),
    };
    ordering as i32
}

/// An integer of any size as Python's `int(str)` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PyInt {
    negative: bool,
    /// Decimal digits without leading zeros ("0" for zero).
    digits: String,
}

impl Ord for PyInt {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let magnitude = self
            .digits
            .len()
            .cmp(&other.digits.len())
            .then_with(|| self.digits.cmp(&other.digits));
        match (self.negative, other.negative) {
            (false, false) => magnitude,
            (true, true) => magnitude.reverse(),
            (false, true) => std::cmp::Ordering::Greater,
            (true, false) => std::cmp::Ordering::Less,
        }
    }
}

impl PartialOrd for PyInt {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Python's whitespace (`str.isspace`), which also covers `\x1c`-`\x1f`.
pub fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python `int(text)` in base 10: surrounding whitespace, a sign, single
/// underscores between digits, and Unicode decimal digits are accepted.
fn py_int(text: &str) -> Option<PyInt> {
    let text = text.trim_matches(py_isspace);
    let (negative, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let mut digits = String::with_capacity(body.len());
    let mut previous_underscore = true; // no leading underscore
    for c in body.chars() {
        if c == '_' {
            if previous_underscore {
                return None;
            }
            previous_underscore = true;
            continue;
        }
        let value = decimal_value(c)?;
        digits.push(char::from(b'0' + value));
        previous_underscore = false;
    }
    if digits.is_empty() || previous_underscore {
        return None;
    }
    let trimmed = digits.trim_start_matches('0');
    let digits = if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    };
    let negative = negative && digits != "0";
    Some(PyInt { negative, digits })
}

/// The value of a Unicode decimal digit (category Nd), for the scripts
/// whose digit blocks are listed here.
fn decimal_value(c: char) -> Option<u8> {
    if c.is_ascii_digit() {
        return Some(c as u8 - b'0');
    }
    const ZEROS: &[u32] = &[
        0x660, 0x6f0, 0x7c0, 0x966, 0x9e6, 0xa66, 0xae6, 0xb66, 0xbe6, 0xc66, 0xce6, 0xd66, 0xde6,
        0xe50, 0xed0, 0xf20, 0x1040, 0x1090, 0x17e0, 0x1810, 0x1946, 0x19d0, 0x1a80, 0x1a90,
        0x1b50, 0x1bb0, 0x1c40, 0x1c50, 0xa620, 0xa8d0, 0xa900, 0xa9d0, 0xa9f0, 0xaa50, 0xabf0,
        0xff10, 0x104a0, 0x10d30, 0x11066, 0x110f0, 0x11136, 0x111d0, 0x112f0, 0x11450, 0x114d0,
        0x11650, 0x116c0, 0x11730, 0x118e0, 0x11950, 0x11c50, 0x11d50, 0x11da0, 0x16a60, 0x16ac0,
        0x16b50, 0x1d7ce, 0x1d7d8, 0x1d7e2, 0x1d7ec, 0x1d7f6, 0x1e140, 0x1e2f0, 0x1e950, 0x1fbf0,
    ];
    let code = u32::from(c);
    ZEROS
        .iter()
        .find(|&&zero| (zero..zero + 10).contains(&code))
        .and_then(|&zero| u8::try_from(code - zero).ok())
}

/// A comparison operator of the `when` grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `<`
    Less,
    /// `~<`
    MinorLess,
    /// `<=`
    LessOrEqual,
    /// `~<=`
    MinorLessOrEqual,
    /// `==` (and a lone `=`)
    Equal,
    /// `~=`
    MinorEqual,
    /// `!=`
    NotEqual,
    /// `~!=`
    MinorNotEqual,
    /// `>=`
    GreaterOrEqual,
    /// `~>=`
    MinorGreaterOrEqual,
    /// `>`
    Greater,
    /// `~>`
    MinorGreater,
    /// `~`: Python `re.search`
    Match,
    /// `!~`: no `re.search` match
    NotMatch,
}

impl Operator {
    fn parse(op: &str) -> Option<Operator> {
        use Operator::*;
        Some(match op {
            "<" => Less,
            "~<" => MinorLess,
            "<=" => LessOrEqual,
            "~<=" => MinorLessOrEqual,
            "==" => Equal,
            "~=" => MinorEqual,
            "!=" => NotEqual,
            "~!=" => MinorNotEqual,
            ">=" => GreaterOrEqual,
            "~>=" => MinorGreaterOrEqual,
            ">" => Greater,
            "~>" => MinorGreater,
            "~" => Match,
            "!~" => NotMatch,
            _ => return None,
        })
    }
}

/// One expression of a rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Expression {
    /// `true` / `false` (also any part that merely starts with them).
    Bool(bool),
    /// `DIM is defined`
    Defined(String),
    /// `DIM is not defined`
    NotDefined(String),
    /// `DIM OP V1, V2`
    Compare {
        /// The dimension name.
        dimension: String,
        /// The operator.
        operator: Operator,
        /// The values, any of which may match.
        values: Vec<ContextValue>,
    },
}

/// A parsed `when` rule: OR groups of AND-ed expressions.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    groups: Vec<Vec<Expression>>,
}

impl Rule {
    /// A YAML bool rule (`when: true`).
    pub fn from_bool(value: bool) -> Rule {
        Rule {
            groups: vec![vec![Expression::Bool(value)]],
        }
    }

    /// The OR groups, each a list of AND-ed expressions.
    pub fn groups(&self) -> &[Vec<Expression>] {
        &self.groups
    }

    /// Parse a rule string as fmf's `Context.parse_rule` does.
    pub fn parse(rule: &str) -> Result<Rule, MatchError> {
        let rule = rewrite_lone_equals(rule);
        let mut groups = Vec::new();
        for or_group in split_word(&rule, "or") {
            if or_group.is_empty() {
                return Err(MatchError::InvalidRule(format!(
                    "Empty OR expression in {rule}."
                )));
            }
            let mut parts = Vec::new();
            for part in split_word(or_group, "and") {
                let part = part.trim_matches(py_isspace);
                if part.is_empty() {
                    return Err(MatchError::InvalidRule(format!(
                        "Empty AND expression in {rule}."
                    )));
                }
                parts.push(part);
            }
            groups.push(parts);
        }
        let groups = groups
            .into_iter()
            .map(|parts| parts.into_iter().map(split_expression).collect())
            .collect::<Result<Vec<Vec<Expression>>, MatchError>>()?;
        Ok(Rule { groups })
    }

    /// Parse a rule, reusing an earlier parse of the same string.
    pub fn parse_cached(rule: &str) -> Result<Arc<Rule>, MatchError> {
        type Cache = Mutex<HashMap<String, Result<Arc<Rule>, MatchError>>>;
        static CACHE: OnceLock<Cache> = OnceLock::new();
        let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
        if let Ok(map) = cache.lock()
            && let Some(hit) = map.get(rule)
        {
            return hit.clone();
        }
        let parsed = Rule::parse(rule).map(Arc::new);
        if let Ok(mut map) = cache.lock() {
            if map.len() >= 4096 {
                map.clear();
            }
            map.insert(rule.to_owned(), parsed.clone());
        }
        parsed
    }
}

/// `re.sub(r"(?<!=|!|~|<|>)=(?!=)", "==", rule)`: a lone `=` means `==`.
fn rewrite_lone_equals(rule: &str) -> String {
    let chars: Vec<char> = rule.chars().collect();
    let mut out = String::with_capacity(rule.len() + 2);
    for (i, &c) in chars.iter().enumerate() {
        out.push(c);
        if c == '='
            && !(i > 0 && matches!(chars[i - 1], '=' | '!' | '~' | '<' | '>'))
            && chars.get(i + 1) != Some(&'=')
        {
            out.push('=');
        }
    }
    out
}

/// Python's Unicode `\w`: alphanumerics and the underscore.
fn is_word(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// `re.split(r"\bWORD\b", text)`.
fn split_word<'a>(text: &'a str, word: &str) -> Vec<&'a str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut search = 0;
    while let Some(found) = text[search..].find(word) {
        let at = search + found;
        let end = at + word.len();
        let before_ok = !text[..at].chars().next_back().is_some_and(is_word);
        let after_ok = !text[end..].chars().next().is_some_and(is_word);
        if before_ok && after_ok {
            pieces.push(&text[start..at]);
            start = end;
            search = end;
        } else {
            search = at + 1;
        }
    }
    pieces.push(&text[start..]);
    pieces
}

fn split_expression(part: &str) -> Result<Expression, MatchError> {
    static TRIPLE: OnceLock<Option<pyre::PyRegex>> = OnceLock::new();
    static DOUBLE: OnceLock<Option<pyre::PyRegex>> = OnceLock::new();
    if part.starts_with("true") {
        return Ok(Expression::Bool(true));
    }
    if part.starts_with("false") {
        return Ok(Expression::Bool(false));
    }
    let triple = TRIPLE.get_or_init(|| {
        pyre::compile(r"^([\w-]+)\s*(<|~<|<=|~<=|==|~=|!=|~!=|>=|~>=|>|~>|~|!~)\s*([^=].*)").ok()
    });
    let double =
        DOUBLE.get_or_init(|| pyre::compile(r"^([\w-]+)\s*(is defined|is not defined)").ok());
    let group = |spans: &[Option<(usize, usize)>], i: usize| {
        spans
            .get(i)
            .copied()
            .flatten()
            .map_or("", |(a, b)| &part[a..b])
    };
    if let Some(spans) = triple.as_ref().and_then(|re| re.captures(part)) {
        let dimension = group(&spans, 1).to_owned();
        let operator = Operator::parse(group(&spans, 2))
            .ok_or_else(|| MatchError::InvalidRule(format!("Cannot parse expression '{part}'.")))?;
        let values = group(&spans, 3)
            .split(',')
            .map(|value| ContextValue::new(value.trim_matches(py_isspace)))
            .collect();
        return Ok(Expression::Compare {
            dimension,
            operator,
            values,
        });
    }
    if let Some(spans) = double.as_ref().and_then(|re| re.captures(part)) {
        let dimension = group(&spans, 1).to_owned();
        return Ok(if group(&spans, 2) == "is defined" {
            Expression::Defined(dimension)
        } else {
            Expression::NotDefined(dimension)
        });
    }
    Err(MatchError::InvalidRule(format!(
        "Cannot parse expression '{part}'."
    )))
}

impl Context {
    /// A context from `dimension -> values` (values as `tmt -c` splits them).
    pub fn new(dimensions: IndexMap<String, Vec<String>>) -> Self {
        let mut context = Context {
            dimensions: IndexMap::new(),
            case_sensitive: true,
        };
        for (dimension, values) in dimensions {
            context.insert(dimension, values.iter().map(String::as_str));
        }
        context
    }

    /// A context from `-c DIM=V1,V2` arguments (split on the first `=`,
    /// values on `,`; a repeated dimension replaces the earlier one), as
    /// the conformance oracle and `tmt -c` read them.
    pub fn from_cli(specs: &[String]) -> Result<Context, InvalidContext> {
        let dimensions = atex_shared::records::parse_context(specs).map_err(InvalidContext)?;
        Ok(Context::new(dimensions))
    }

    /// Set (replace) the values of a dimension. Values are a set: equal
    /// name/version parts are kept once, as in python.
    pub fn insert<'a>(&mut self, dimension: String, values: impl IntoIterator<Item = &'a str>) {
        let mut set: Vec<ContextValue> = Vec::new();
        for value in values {
            let value = ContextValue::new(value);
            if !set.iter().any(|known| known.parts == value.parts) {
                set.push(value);
            }
        }
        self.dimensions.insert(dimension, set);
    }

    /// The dimensions and their values.
    pub fn dimensions(&self) -> &IndexMap<String, Vec<ContextValue>> {
        &self.dimensions
    }

    /// Whether no dimension is defined.
    pub fn is_empty(&self) -> bool {
        self.dimensions.is_empty()
    }

    /// Set case sensitivity of name and version comparisons (not of `~`).
    pub fn set_case_sensitive(&mut self, case_sensitive: bool) {
        self.case_sensitive = case_sensitive;
    }

    /// Whether name and version comparisons are case-sensitive.
    pub fn case_sensitive(&self) -> bool {
        self.case_sensitive
    }

    /// Evaluate a rule string (parsed once per process, then cached).
    pub fn matches(&self, rule: &str) -> Result<bool, MatchError> {
        let parsed = Rule::parse_cached(rule)?;
        self.matches_rule(&parsed)
    }

    /// Evaluate a YAML `when` value: a string rule or a bool. Anything else
    /// is a python crash (`TypeError`), reported as an invalid rule whose
    /// message starts with `TypeError:`.
    pub fn matches_value(&self, rule: &Value) -> Result<bool, MatchError> {
        match rule {
            Value::Bool(value) => self.matches_rule(&Rule::from_bool(*value)),
            Value::Str(text) => self.matches(text),
            other => Err(MatchError::InvalidRule(format!(
                "TypeError: expected string or bytes-like object, got '{}'",
                other.py_type_name()
            ))),
        }
    }

    /// Evaluate a parsed rule with fmf's three-valued logic: any true OR
    /// group gives true, all false gives false, otherwise CannotDecide.
    pub fn matches_rule(&self, rule: &Rule) -> Result<bool, MatchError> {
        let mut outcome: Option<Option<bool>> = None;
        for group in &rule.groups {
            let mut and_outcome: Option<Option<bool>> = None;
            for expression in group {
                let result = self.evaluate(expression)?;
                let combined = match and_outcome {
                    None => result,
                    Some(previous) => match (previous, result) {
                        (Some(false), _) | (_, Some(false)) => Some(false),
                        (Some(true), Some(true)) => Some(true),
                        _ => None,
                    },
                };
                and_outcome = Some(combined);
                if combined == Some(false) {
                    break;
                }
            }
            let and_outcome = and_outcome.flatten();
            if and_outcome == Some(true) {
                return Ok(true);
            }
            outcome = Some(match outcome {
                None => and_outcome,
                Some(previous) => match (previous, and_outcome) {
                    (Some(false), Some(false)) => Some(false),
                    _ => None,
                },
            });
        }
        match outcome.flatten() {
            Some(false) => Ok(false),
            _ => Err(MatchError::CannotDecide),
        }
    }

    /// One expression: `Some(bool)` or `None` (CannotDecide).
    fn evaluate(&self, expression: &Expression) -> Result<Option<bool>, MatchError> {
        let (dimension, operator, values) = match expression {
            Expression::Bool(value) => return Ok(Some(*value)),
            Expression::Defined(dimension) => {
                return Ok(Some(self.dimensions.contains_key(dimension)));
            }
            Expression::NotDefined(dimension) => {
                return Ok(Some(!self.dimensions.contains_key(dimension)));
            }
            Expression::Compare {
                dimension,
                operator,
                values,
            } => (dimension, operator, values),
        };
        let Some(known) = self.dimensions.get(dimension) else {
            return Ok(None);
        };
        let mut decided = false;
        for left in known {
            for right in values {
                match self.compare(*operator, left, right)? {
                    Some(true) => return Ok(Some(true)),
                    Some(false) => decided = true,
                    None => {}
                }
            }
        }
        Ok(decided.then_some(false))
    }

    fn compare(
        &self,
        operator: Operator,
        left: &ContextValue,
        right: &ContextValue,
    ) -> Result<Option<bool>, MatchError> {
        use Operator::*;
        let cs = self.case_sensitive;
        let regex = || {
            pyre::compile(&right.raw).map_err(|e| {
                MatchError::InvalidRule(format!("invalid regular expression '{}': {e}", right.raw))
            })
        };
        let cmp = |minor: bool, ordered: bool| left.version_cmp(right, minor, ordered, cs);
        Ok(match operator {
            Equal => cmp(false, false).map(|c| c == 0),
            NotEqual => cmp(false, false).map(|c| c != 0),
            Less => cmp(false, true).map(|c| c < 0),
            LessOrEqual => cmp(false, true).map(|c| c <= 0),
            Greater => cmp(false, true).map(|c| c > 0),
            GreaterOrEqual => cmp(false, true).map(|c| c >= 0),
            MinorEqual => cmp(true, false).map(|c| c == 0),
            MinorNotEqual => cmp(true, false).map(|c| c != 0),
            MinorLess => cmp(true, true).map(|c| c < 0),
            MinorLessOrEqual => cmp(true, true).map(|c| c <= 0),
            MinorGreater => cmp(true, true).map(|c| c > 0),
            MinorGreaterOrEqual => cmp(true, true).map(|c| c >= 0),
            Match => Some(regex()?.search(&left.raw)),
            NotMatch => Some(!regex()?.search(&left.raw)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(dims: &[(&str, &[&str])]) -> Context {
        let mut map = IndexMap::new();
        for (dim, values) in dims {
            map.insert(
                (*dim).to_owned(),
                values.iter().map(|v| (*v).to_owned()).collect(),
            );
        }
        Context::new(map)
    }

    fn check(ctx: &Context, rule: &str) -> Result<bool, MatchError> {
        ctx.matches(rule)
    }

    const U: Result<bool, MatchError> = Err(MatchError::CannotDecide);

    #[test]
    fn spec_examples() {
        let git = context(&[("c", &["git-2.3.4"])]);
        assert_eq!(check(&git, "c == git-2"), Ok(true));
        assert_eq!(check(&git, "c == git"), Ok(true));
        assert_eq!(check(&git, "c != git-1"), Ok(true));
        assert_eq!(check(&git, "c == fmf"), Ok(false));
        assert_eq!(check(&git, "c >= fmf-2"), U);
        let fedora = context(&[("d", &["fedora"])]);
        assert_eq!(check(&fedora, "d < fedora-33"), U);
        assert_eq!(
            check(&context(&[("d", &["foo-1"])]), "d < foo-1.1"),
            Ok(true)
        );
        assert_eq!(
            check(&context(&[("d", &["fedora-33"])]), "d < fedora-rawhide"),
            Ok(true)
        );
        let centos = context(&[("d", &["centos-8.4.0"])]);
        assert_eq!(check(&centos, "d ~< centos-9"), Ok(true));
        assert_eq!(check(&centos, "d ~< centos-9.2"), U);
        assert_eq!(
            check(&context(&[("d", &["rhel-7"])]), "d == rhel-7.3"),
            Ok(false)
        );
        assert_eq!(
            check(&context(&[("p", &["perl:5.28"])]), "p > perl:5.7"),
            Ok(true)
        );
        assert_eq!(
            check(&context(&[("d", &["centos-8"])]), "d < centos-stream-9"),
            Ok(true)
        );
    }

    #[test]
    fn grammar_quirks() {
        let ctx = context(&[("distro", &["fedora-40"]), ("arch", &["x86_64"])]);
        assert_eq!(check(&ctx, "distro = fedora"), Ok(true));
        assert_eq!(check(&ctx, "trueish == 1"), Ok(true));
        assert_eq!(check(&ctx, "falsey == x"), Ok(false));
        assert_eq!(
            check(&ctx, "distro == rhel-or-x"),
            Err(MatchError::InvalidRule(
                "Cannot parse expression '-x'.".into()
            ))
        );
        assert!(matches!(
            check(&ctx, "distro == fedora or"),
            Err(MatchError::InvalidRule(_))
        ));
        assert!(matches!(
            check(&ctx, "distro == fedora and  "),
            Err(MatchError::InvalidRule(_))
        ));
        assert!(matches!(
            check(&ctx, "distro =="),
            Err(MatchError::InvalidRule(_))
        ));
        assert_eq!(check(&ctx, "arch != x86_64, aarch64"), Ok(true));
        assert_eq!(check(&ctx, "distro is defined"), Ok(true));
        assert_eq!(check(&ctx, "foo is not defined"), Ok(true));
        assert_eq!(check(&ctx, "foo is definedxyz"), Ok(false));
        assert_eq!(check(&ctx, "foo == x or distro == fedora"), Ok(true));
        assert_eq!(check(&ctx, "foo == x or distro == rhel"), U);
        assert_eq!(check(&ctx, "foo == x and distro == rhel"), Ok(false));
        assert_eq!(check(&ctx, "foo == x and distro == fedora"), U);
        assert_eq!(check(&ctx, "distro ~ ^fed"), Ok(true));
        assert_eq!(check(&ctx, "distro !~ ^fed"), Ok(false));
        assert_eq!(check(&ctx, "distro ~ a=b"), Ok(false));
        assert_eq!(check(&ctx, "distro <= fedora-40"), Ok(true));
    }

    #[test]
    fn case_sensitivity() {
        let mut ctx = context(&[("distro", &["Fedora-40"])]);
        assert_eq!(check(&ctx, "distro == fedora"), Ok(false));
        ctx.set_case_sensitive(false);
        assert_eq!(check(&ctx, "distro == fedora"), Ok(true));
        // Regex operators ignore the setting.
        assert_eq!(check(&ctx, "distro ~ ^fedora"), Ok(false));
    }

    #[test]
    fn python_int_parts() {
        assert_eq!(part_cmp("+1", "1", true), 0);
        assert_eq!(part_cmp("1_0", "10", true), 0);
        assert_eq!(part_cmp(" 7 ", "07", true), 0);
        assert_eq!(part_cmp("10", "9", true), 1);
        assert_eq!(part_cmp("rawhide", "33", true), 1);
        assert_eq!(part_cmp("8", "stream", true), -1);
        assert_eq!(part_cmp("1__0", "2", true), -1); // a string compare
        assert_eq!(part_cmp("\u{664}", "4", true), 0);
        assert_eq!(part_cmp("99999999999999999999999", "1", true), 1);
        assert_eq!(part_cmp("-5", "3", true), -1);
    }

    #[test]
    fn yaml_values_and_cli() {
        let ctx = Context::from_cli(&["distro=fedora-40,rhel-9".to_owned()]).expect("valid");
        assert_eq!(ctx.matches_value(&Value::Bool(true)), Ok(true));
        assert_eq!(ctx.matches_value(&Value::Bool(false)), Ok(false));
        assert_eq!(
            ctx.matches_value(&Value::Str("distro == rhel".into())),
            Ok(true)
        );
        assert!(ctx.matches_value(&Value::Null).is_err());
        assert!(Context::from_cli(&["distro".to_owned()]).is_err());
    }

    proptest::proptest! {
        /// Any rule text gives true, false, CannotDecide or InvalidRule,
        /// never a panic (rules come from metadata and command lines).
        #[test]
        fn arbitrary_rules_never_panic(
            rule in "[a-z0-9 =<>!~,.:*()-]{0,40}|(distro|arch) (==|!=|<|~<=|>=|~|!~|is defined) [a-z0-9.,*-]{0,12}",
            sensitive: bool,
        ) {
            let mut ctx = context(&[("distro", &["fedora-41", "rhel-9.6"]), ("arch", &["x86_64"])]);
            ctx.set_case_sensitive(sensitive);
            let _ = ctx.matches(&rule);
        }
    }
}
