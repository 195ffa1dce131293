//! The safe subset of fmf `condition` expressions (spec A.12).
//!
//! python fmf evaluates a condition with `eval(expr, dict(node.data))`:
//! arbitrary Python. atex accepts only a small, side-effect free subset:
//!
//! - `or`, `and`, `not` (with Python's value semantics) and chained
//!   comparisons `== != < <= > >= in, not in, is, is not`;
//! - operands: node keys as identifiers, subscripts (`key['k']`,
//!   `key[0]`), literals (str, int, float, `True`, `False`, `None`, lists),
//!   parentheses, unary `-`/`+`;
//! - calls of `int()`, `float()`, `str()` and `len()`.
//!
//! A key missing from the data (Python `NameError` or `KeyError`) means
//! "not selected"; everything else outside the subset is an error.
//! Deviation: `is` compares `None` and booleans by value and is false for
//! everything else (python compares object identity).

use std::cmp::Ordering;

use crate::value::{Map, Value};

/// Why a condition could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    /// A key the condition uses is not in the data: the node is not
    /// selected (python's `NameError`/`KeyError` become `FilterError`).
    #[error("{0}")]
    Missing(String),
    /// The expression is outside the supported subset.
    #[error("unsupported condition: {0}")]
    Unsupported(String),
    /// Evaluation failed (python would raise `TypeError`, `ValueError`, ...).
    #[error("{0}")]
    Invalid(String),
}

type CResult<T> = Result<T, ConditionError>;

/// A parsed condition.
#[derive(Debug, Clone)]
pub struct Condition {
    expr: Expr,
}

#[derive(Debug, Clone)]
enum Expr {
    Literal(Value),
    Name(String),
    List(Vec<Expr>),
    Subscript(Box<Expr>, Box<Expr>),
    Call(Builtin, Vec<Expr>),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Compare(Box<Expr>, Vec<(CmpOp, Expr)>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Builtin {
    Int,
    Float,
    Str,
    Len,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
    Is,
    IsNot,
}

impl Condition {
    /// Parse `source`; anything outside the subset is
    /// [`ConditionError::Unsupported`].
    pub fn parse(source: &str) -> CResult<Condition> {
        let tokens = tokenize(source)?;
        let mut parser = Parser {
            tokens,
            pos: 0,
            source,
        };
        let expr = parser.expr()?;
        if parser.pos != parser.tokens.len() {
            return Err(parser.unsupported());
        }
        Ok(Condition { expr })
    }

    /// Evaluate against node data; the result is Python truthiness of the
    /// expression's value.
    pub fn evaluate(&self, data: &Map) -> CResult<bool> {
        Ok(truthy(&eval(&self.expr, data)?))
    }
}

/// Parse and evaluate `source` against `data`.
pub fn evaluate(source: &str, data: &Map) -> CResult<bool> {
    Condition::parse(source)?.evaluate(data)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Name(String),
    Int(i64),
    Float(f64),
    Str(String),
    Op(&'static str),
}

fn tokenize(source: &str) -> CResult<Vec<Token>> {
    let unsupported = || ConditionError::Unsupported(source.to_owned());
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let quote_at = |j: usize| chars.get(j).is_some_and(|&q| q == '\'' || q == '"');
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if (word == "r" || word == "R") && quote_at(i) {
                let (text, next) = string_literal(&chars, i, true).ok_or_else(unsupported)?;
                tokens.push(Token::Str(text));
                i = next;
            } else {
                tokens.push(Token::Name(word));
            }
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || chars[i] == '_'
                    || chars[i] == '.'
                    || ((chars[i] == '+' || chars[i] == '-')
                        && matches!(chars[i - 1], 'e' | 'E')
                        && !chars[start..i].iter().any(|c| matches!(c, 'x' | 'X'))))
            {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            tokens.push(number_literal(&text).ok_or_else(unsupported)?);
            continue;
        }
        if quote_at(i) {
            let (text, next) = string_literal(&chars, i, false).ok_or_else(unsupported)?;
            tokens.push(Token::Str(text));
            i = next;
            continue;
        }
        let two: String = chars[i..chars.len().min(i + 2)].iter().collect();
        let op = ["==", "!=", "<=", ">="]
            .into_iter()
            .find(|op| two == *op)
            .or_else(|| {
                ["<", ">", "(", ")", "[", "]", ",", "-", "+"]
                    .into_iter()
                    .find(|op| op.starts_with(c))
            });
        let Some(op) = op else {
            return Err(unsupported());
        };
        tokens.push(Token::Op(op));
        i += op.len();
    }
    Ok(tokens)
}

fn number_literal(text: &str) -> Option<Token> {
    let lower = text.to_ascii_lowercase();
    let clean = python_underscores(&lower)?;
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(digits) = clean.strip_prefix(prefix) {
            return i64::from_str_radix(digits, radix).ok().map(Token::Int);
        }
    }
    if clean.chars().all(|c| c.is_ascii_digit()) {
        // python rejects leading zeros in decimal literals (except 0)
        if clean.len() > 1 && clean.starts_with('0') && clean.chars().any(|c| c != '0') {
            return None;
        }
        return clean.parse().ok().map(Token::Int);
    }
    if clean
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | '+' | '-'))
    {
        return clean.parse().ok().map(Token::Float);
    }
    None
}

/// Remove `_` digit separators if python would accept them (one `_`
/// between two digits); `None` otherwise.
fn python_underscores(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c == '_' {
            let before = i.checked_sub(1).and_then(|j| chars.get(j));
            let after = chars.get(i + 1);
            if !before.is_some_and(char::is_ascii_alphanumeric)
                || !after.is_some_and(char::is_ascii_alphanumeric)
            {
                return None;
            }
        }
    }
    Some(text.replace('_', ""))
}

fn string_literal(chars: &[char], start: usize, raw: bool) -> Option<(String, usize)> {
    let quote = chars[start];
    let mut out = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        let c = chars[i];
        if c == quote {
            return Some((out, i + 1));
        }
        if c == '\\' {
            let next = *chars.get(i + 1)?;
            if raw {
                out.push('\\');
                out.push(next);
            } else {
                match next {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    '0' => out.push('\0'),
                    '\\' | '\'' | '"' => out.push(next),
                    other => {
                        out.push('\\');
                        out.push(other);
                    }
                }
            }
            i += 2;
            continue;
        }
        out.push(c);
        i += 1;
    }
    None
}

struct Parser<'s> {
    tokens: Vec<Token>,
    pos: usize,
    source: &'s str,
}

impl Parser<'_> {
    fn unsupported(&self) -> ConditionError {
        ConditionError::Unsupported(self.source.to_owned())
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn peek_is_name(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Name(w)) if w == word)
    }

    fn peek_is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Some(Token::Op(o)) if *o == op)
    }

    fn expect_op(&mut self, op: &str) -> CResult<()> {
        if self.peek_is_op(op) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.unsupported())
        }
    }

    fn expr(&mut self) -> CResult<Expr> {
        let mut left = self.and()?;
        while self.peek_is_name("or") {
            self.pos += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> CResult<Expr> {
        let mut left = self.not()?;
        while self.peek_is_name("and") {
            self.pos += 1;
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> CResult<Expr> {
        if self.peek_is_name("not") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> CResult<Expr> {
        let first = self.unary()?;
        let mut rest = Vec::new();
        loop {
            let op = match self.peek() {
                Some(Token::Op("==")) => CmpOp::Eq,
                Some(Token::Op("!=")) => CmpOp::Ne,
                Some(Token::Op("<")) => CmpOp::Lt,
                Some(Token::Op("<=")) => CmpOp::Le,
                Some(Token::Op(">")) => CmpOp::Gt,
                Some(Token::Op(">=")) => CmpOp::Ge,
                Some(Token::Name(w)) if w == "in" => CmpOp::In,
                Some(Token::Name(w)) if w == "is" => {
                    if matches!(self.tokens.get(self.pos + 1), Some(Token::Name(n)) if n == "not") {
                        self.pos += 1;
                        CmpOp::IsNot
                    } else {
                        CmpOp::Is
                    }
                }
                Some(Token::Name(w)) if w == "not" => {
                    if matches!(self.tokens.get(self.pos + 1), Some(Token::Name(n)) if n == "in") {
                        self.pos += 1;
                        CmpOp::NotIn
                    } else {
                        return Err(self.unsupported());
                    }
                }
                _ => break,
            };
            self.pos += 1;
            rest.push((op, self.unary()?));
        }
        if rest.is_empty() {
            Ok(first)
        } else {
            Ok(Expr::Compare(Box::new(first), rest))
        }
    }

    fn unary(&mut self) -> CResult<Expr> {
        if self.peek_is_op("-") {
            self.pos += 1;
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        if self.peek_is_op("+") {
            self.pos += 1;
            return self.unary();
        }
        self.postfix()
    }

    fn postfix(&mut self) -> CResult<Expr> {
        let mut expr = self.atom()?;
        loop {
            if self.peek_is_op("[") {
                self.pos += 1;
                let index = self.expr()?;
                self.expect_op("]")?;
                expr = Expr::Subscript(Box::new(expr), Box::new(index));
            } else if self.peek_is_op("(") {
                let Expr::Name(name) = &expr else {
                    return Err(self.unsupported());
                };
                let builtin = match name.as_str() {
                    "int" => Builtin::Int,
                    "float" => Builtin::Float,
                    "str" => Builtin::Str,
                    "len" => Builtin::Len,
                    _ => return Err(self.unsupported()),
                };
                self.pos += 1;
                let args = self.items(")")?;
                if args.len() > 1 || (builtin == Builtin::Len && args.is_empty()) {
                    return Err(self.unsupported());
                }
                expr = Expr::Call(builtin, args);
            } else {
                return Ok(expr);
            }
        }
    }

    /// Comma-separated expressions up to `close` (consumed).
    fn items(&mut self, close: &str) -> CResult<Vec<Expr>> {
        let mut items = Vec::new();
        while !self.peek_is_op(close) {
            items.push(self.expr()?);
            if !self.peek_is_op(close) {
                self.expect_op(",")?;
            }
        }
        self.pos += 1;
        Ok(items)
    }

    fn atom(&mut self) -> CResult<Expr> {
        let Some(token) = self.tokens.get(self.pos).cloned() else {
            return Err(self.unsupported());
        };
        self.pos += 1;
        match token {
            Token::Int(i) => Ok(Expr::Literal(Value::Int(i))),
            Token::Float(f) => Ok(Expr::Literal(Value::Float(f))),
            Token::Str(mut s) => {
                // adjacent literals concatenate, as in python
                while let Some(Token::Str(more)) = self.peek() {
                    s.push_str(more);
                    self.pos += 1;
                }
                Ok(Expr::Literal(Value::Str(s)))
            }
            Token::Name(name) => match name.as_str() {
                "True" => Ok(Expr::Literal(Value::Bool(true))),
                "False" => Ok(Expr::Literal(Value::Bool(false))),
                "None" => Ok(Expr::Literal(Value::Null)),
                "and" | "or" | "not" | "in" | "is" | "lambda" | "if" | "else" | "for" => {
                    Err(self.unsupported())
                }
                _ => Ok(Expr::Name(name)),
            },
            Token::Op("[") => Ok(Expr::List(self.items("]")?)),
            Token::Op("(") => {
                let inner = self.expr()?;
                self.expect_op(")")?;
                Ok(inner)
            }
            Token::Op(_) => Err(self.unsupported()),
        }
    }
}

fn invalid(message: String) -> ConditionError {
    ConditionError::Invalid(message)
}

/// Python truthiness.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        Value::Float(f) => *f != 0.0,
        Value::Str(s) => !s.is_empty(),
        Value::Binary(b) => !b.is_empty(),
        Value::Seq(s) | Value::Set(s) => !s.is_empty(),
        Value::Map(m) => !m.is_empty(),
        Value::KeyedMap(p) => !p.is_empty(),
        Value::Date(_) | Value::DateTime(_) => true,
    }
}

fn eval(expr: &Expr, data: &Map) -> CResult<Value> {
    match expr {
        Expr::Literal(value) => Ok(value.clone()),
        Expr::Name(name) => data
            .get(name)
            .cloned()
            .ok_or_else(|| ConditionError::Missing(format!("name '{name}' is not defined"))),
        Expr::List(items) => Ok(Value::Seq(
            items
                .iter()
                .map(|i| eval(i, data))
                .collect::<CResult<_>>()?,
        )),
        Expr::Subscript(target, index) => subscript(eval(target, data)?, &eval(index, data)?),
        Expr::Call(builtin, args) => {
            let arg = args.first().map(|a| eval(a, data)).transpose()?;
            call(*builtin, arg)
        }
        Expr::Neg(inner) => match eval(inner, data)? {
            Value::Int(i) => i
                .checked_neg()
                .map(Value::Int)
                .ok_or_else(|| invalid("integer overflow".into())),
            Value::Bool(b) => Ok(Value::Int(-i64::from(b))),
            Value::Float(f) => Ok(Value::Float(-f)),
            other => Err(invalid(format!(
                "bad operand type for unary -: '{}'",
                other.py_type_name()
            ))),
        },
        Expr::Not(inner) => Ok(Value::Bool(!truthy(&eval(inner, data)?))),
        Expr::And(left, right) => {
            let left = eval(left, data)?;
            if truthy(&left) {
                eval(right, data)
            } else {
                Ok(left)
            }
        }
        Expr::Or(left, right) => {
            let left = eval(left, data)?;
            if truthy(&left) {
                Ok(left)
            } else {
                eval(right, data)
            }
        }
        Expr::Compare(first, rest) => {
            let mut left = eval(first, data)?;
            for (op, right) in rest {
                let right = eval(right, data)?;
                if !compare(*op, &left, &right)? {
                    return Ok(Value::Bool(false));
                }
                left = right;
            }
            Ok(Value::Bool(true))
        }
    }
}

fn subscript(target: Value, index: &Value) -> CResult<Value> {
    let missing = || ConditionError::Missing(format!("key {} is not defined", index.py_repr()));
    match target {
        Value::Map(map) => match index {
            Value::Str(key) => map.get(key).cloned().ok_or_else(missing),
            _ => Err(missing()),
        },
        Value::KeyedMap(pairs) => pairs
            .into_iter()
            .find(|(k, _)| k.py_eq(index))
            .map(|(_, v)| v)
            .ok_or_else(missing),
        Value::Seq(items) => {
            let at = position(index, items.len(), "list")?;
            Ok(items[at].clone())
        }
        Value::Str(text) => {
            let chars: Vec<char> = text.chars().collect();
            let at = position(index, chars.len(), "string")?;
            Ok(Value::Str(chars[at].to_string()))
        }
        other => Err(invalid(format!(
            "'{}' object is not subscriptable",
            other.py_type_name()
        ))),
    }
}

/// A python sequence index (negative counts from the end).
fn position(index: &Value, len: usize, kind: &str) -> CResult<usize> {
    let i = match index {
        Value::Int(i) => *i,
        Value::Bool(b) => i64::from(*b),
        other => {
            return Err(invalid(format!(
                "{kind} indices must be integers or slices, not {}",
                other.py_type_name()
            )));
        }
    };
    let len_i = i64::try_from(len).unwrap_or(i64::MAX);
    let at = if i < 0 { i + len_i } else { i };
    if (0..len_i).contains(&at) {
        usize::try_from(at).map_err(|_| invalid(format!("{kind} index out of range")))
    } else {
        Err(invalid(format!("{kind} index out of range")))
    }
}

fn call(builtin: Builtin, arg: Option<Value>) -> CResult<Value> {
    match (builtin, arg) {
        (Builtin::Int, None) => Ok(Value::Int(0)),
        (Builtin::Float, None) => Ok(Value::Float(0.0)),
        (Builtin::Str, None) => Ok(Value::Str(String::new())),
        (Builtin::Int, Some(value)) => match value {
            Value::Int(i) => Ok(Value::Int(i)),
            Value::Bool(b) => Ok(Value::Int(i64::from(b))),
            Value::Float(f) if f.is_finite() => {
                #[expect(
                    clippy::cast_possible_truncation,
                    reason = "python int() truncates toward zero"
                )]
                let truncated = f.trunc() as i64;
                Ok(Value::Int(truncated))
            }
            Value::Str(s) => parse_python_int(&s).map(Value::Int).ok_or_else(|| {
                invalid(format!(
                    "invalid literal for int() with base 10: {}",
                    Value::Str(s.clone()).py_repr()
                ))
            }),
            other => Err(invalid(format!(
                "int() argument must be a string, a bytes-like object or a real number, not '{}'",
                other.py_type_name()
            ))),
        },
        (Builtin::Float, Some(value)) => match value {
            Value::Int(_) | Value::Bool(_) | Value::Float(_) => {
                Ok(Value::Float(value.as_number().unwrap_or(0.0)))
            }
            Value::Str(s) => parse_python_float(&s).map(Value::Float).ok_or_else(|| {
                invalid(format!(
                    "could not convert string to float: {}",
                    Value::Str(s.clone()).py_repr()
                ))
            }),
            other => Err(invalid(format!(
                "float() argument must be a string or a real number, not '{}'",
                other.py_type_name()
            ))),
        },
        (Builtin::Str, Some(value)) => Ok(Value::Str(value.py_str())),
        (Builtin::Len, Some(value)) => {
            let len = match &value {
                Value::Str(s) => s.chars().count(),
                Value::Binary(b) => b.len(),
                Value::Seq(s) | Value::Set(s) => s.len(),
                Value::Map(m) => m.len(),
                Value::KeyedMap(p) => p.len(),
                other => {
                    return Err(invalid(format!(
                        "object of type '{}' has no len()",
                        other.py_type_name()
                    )));
                }
            };
            Ok(Value::Int(i64::try_from(len).unwrap_or(i64::MAX)))
        }
        (Builtin::Len, None) => Err(invalid("len() takes exactly one argument (0 given)".into())),
    }
}

fn parse_python_int(text: &str) -> Option<i64> {
    let text = text.trim();
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text.strip_prefix('+').unwrap_or(text)),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit() || c == '_') {
        return None;
    }
    let clean = python_underscores(digits)?;
    clean.parse::<i64>().ok().map(|v| sign * v)
}

fn parse_python_float(text: &str) -> Option<f64> {
    let text = text.trim();
    let lower = text.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['+', '-']);
    if matches!(unsigned, "inf" | "infinity" | "nan") {
        return lower.parse().ok();
    }
    if !lower
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | '+' | '-' | '_'))
    {
        return None;
    }
    python_underscores(&lower)?.parse().ok()
}

/// Python ordering between two values; `Ok(None)` when unordered (NaN).
fn order(left: &Value, right: &Value, op: &str) -> CResult<Option<Ordering>> {
    match (left, right) {
        (Value::Int(a), Value::Int(b)) => Ok(Some(a.cmp(b))),
        (
            Value::Bool(_) | Value::Int(_) | Value::Float(_),
            Value::Bool(_) | Value::Int(_) | Value::Float(_),
        ) => Ok(left
            .as_number()
            .unwrap_or(0.0)
            .partial_cmp(&right.as_number().unwrap_or(0.0))),
        (Value::Str(a), Value::Str(b)) => Ok(Some(a.cmp(b))),
        (Value::Date(a), Value::Date(b)) | (Value::DateTime(a), Value::DateTime(b)) => {
            Ok(Some(a.cmp(b)))
        }
        (Value::Seq(a), Value::Seq(b)) => {
            for (x, y) in a.iter().zip(b) {
                if !x.py_eq(y) {
                    return order(x, y, op);
                }
            }
            Ok(Some(a.len().cmp(&b.len())))
        }
        _ => Err(invalid(format!(
            "'{op}' not supported between instances of '{}' and '{}'",
            left.py_type_name(),
            right.py_type_name()
        ))),
    }
}

fn contains(container: &Value, item: &Value) -> CResult<bool> {
    match container {
        Value::Seq(items) | Value::Set(items) => Ok(items.iter().any(|i| i.py_eq(item))),
        Value::Str(text) => match item {
            Value::Str(needle) => Ok(text.contains(needle.as_str())),
            other => Err(invalid(format!(
                "'in <string>' requires string as left operand, not {}",
                other.py_type_name()
            ))),
        },
        Value::Map(map) => Ok(item.as_str().is_some_and(|k| map.contains_key(k))),
        Value::KeyedMap(pairs) => Ok(pairs.iter().any(|(k, _)| k.py_eq(item))),
        other => Err(invalid(format!(
            "argument of type '{}' is not iterable",
            other.py_type_name()
        ))),
    }
}

fn identical(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        _ => false,
    }
}

fn compare(op: CmpOp, left: &Value, right: &Value) -> CResult<bool> {
    Ok(match op {
        CmpOp::Eq => left.py_eq(right),
        CmpOp::Ne => !left.py_eq(right),
        CmpOp::Lt => order(left, right, "<")? == Some(Ordering::Less),
        CmpOp::Le => matches!(
            order(left, right, "<=")?,
            Some(Ordering::Less | Ordering::Equal)
        ),
        CmpOp::Gt => order(left, right, ">")? == Some(Ordering::Greater),
        CmpOp::Ge => matches!(
            order(left, right, ">=")?,
            Some(Ordering::Greater | Ordering::Equal)
        ),
        CmpOp::In => contains(right, left)?,
        CmpOp::NotIn => !contains(right, left)?,
        CmpOp::Is => identical(left, right),
        CmpOp::IsNot => !identical(left, right),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Map {
        let mut execute = Map::default();
        execute.insert("how".into(), Value::Str("dependency".into()));
        let mut data = Map::default();
        data.insert("release".into(), Value::Str("7.5".into()));
        data.insert("manual".into(), Value::Bool(false));
        data.insert("tier".into(), Value::Int(1));
        data.insert(
            "tag".into(),
            Value::Seq(vec![Value::Str("a".into()), Value::Str("b".into())]),
        );
        data.insert("execute".into(), Value::Map(Box::new(execute)));
        data
    }

    fn check(source: &str) -> CResult<bool> {
        evaluate(source, &data())
    }

    #[test]
    fn supported_subset() {
        for yes in [
            "float(release) >= 7",
            "execute['how'] == 'dependency'",
            "manual is False",
            "manual is not None",
            "tier == 1 and 'a' in tag",
            "'c' not in tag or tier < 2",
            "not manual",
            "len(tag) == 2 and tag[-1] == \"b\"",
            "int('1_0') == 10 and str(tier) == '1'",
            "0 < tier <= 1",
            "tag == ['a', 'b']",
            "tier == 1.0 == True",
        ] {
            assert_eq!(check(yes), Ok(true), "{yes}");
        }
        for no in [
            "tier is 1",
            "manual is None",
            "float(release) > 8",
            "1 < tier < 3",
        ] {
            assert_eq!(check(no), Ok(false), "{no}");
        }
    }

    #[test]
    fn missing_keys_are_not_selected() {
        assert!(matches!(
            check("nope == 1"),
            Err(ConditionError::Missing(_))
        ));
        assert!(matches!(
            check("execute['nope'] == 1"),
            Err(ConditionError::Missing(_))
        ));
        // `or` short-circuits before the missing key, as in python
        assert_eq!(check("tier == 1 or nope"), Ok(true));
    }

    #[test]
    fn unsupported_and_invalid() {
        for bad in [
            "__import__('os')",
            "tier + 1",
            "execute.get('how')",
            "lambda: 1",
            "tier ==",
            "x if y else z",
        ] {
            assert!(
                matches!(check(bad), Err(ConditionError::Unsupported(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            check("tier < 'a'"),
            Err(ConditionError::Invalid(_))
        ));
        assert!(matches!(
            check("int(release)"),
            Err(ConditionError::Invalid(_))
        ));
        assert!(matches!(check("tag[5]"), Err(ConditionError::Invalid(_))));
    }
}
