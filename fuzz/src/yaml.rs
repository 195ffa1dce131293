//! Target `yaml`: atex-discover's fmf YAML loader
//! ([`atex_discover::yaml::parse`]), which reads every `.fmf` file of a
//! tree.
//!
//! Properties checked on every input (as text: invalid UTF-8 becomes
//! U+FFFD, as the loader only ever sees decoded text):
//! - parsing never panics, and returns within the case timeout with memory
//!   under the harness's cap (the engine's watchdog);
//! - an error names the file and a line and column inside the text (the
//!   line after a final line break at most, a column at most one past the
//!   end of the widest line, in bytes);
//! - a value that loads is bounded: at most the alias budget (100,000
//!   copied nodes, or ten times the file's own) plus the nodes the text
//!   itself writes.

use std::path::Path;

use atex_discover::value::Value;
use atex_discover::yaml::parse;

use crate::engine::Target;

/// The target, for [`crate::engine::run`].
pub const TARGET: Target = Target {
    name: "yaml",
    check,
    dictionary: DICTIONARY,
    max_len: 16 << 10,
};

/// The path errors must name.
const PATH: &str = "fuzz/main.fmf";

/// YAML indicators, tags and the keys fmf gives meaning to.
const DICTIONARY: &[&[u8]] = &[
    b"\n",
    b"\n  ",
    b"\n- ",
    b"  ",
    b"\t",
    b": ",
    b"- ",
    b"? ",
    b"[",
    b"]",
    b"{",
    b"}",
    b", ",
    b"&a ",
    b"*a",
    b"&b ",
    b"*b",
    b"<<: ",
    b"<<: *a",
    b"<<: [*a, *b]",
    b"!!str ",
    b"!!int ",
    b"!!float ",
    b"!!bool ",
    b"!!null ",
    b"!!binary ",
    b"!!set ",
    b"!!omap ",
    b"!!pairs ",
    b"!!timestamp ",
    b"!custom ",
    b"! ",
    b"!<tag:yaml.org,2002:str> ",
    b"%YAML 1.1\n---\n",
    b"%YAML 1.2\n---\n",
    b"%TAG ! tag:example.com,2000:\n",
    b"---\n",
    b"...\n",
    b"|\n  ",
    b">-\n  ",
    b"|+2\n",
    b"\"",
    b"'",
    b"\\",
    b"\"\\x41\\u00e9\\U0001F600\"",
    b"# comment\n",
    b"~",
    b"null",
    b"yes",
    b"on",
    b"0o17",
    b"0x1F",
    b"1_000",
    b"1e3",
    b".inf",
    b".nan",
    b"2021-01-02",
    b"2021-01-02T03:04:05+01:00",
    b"=",
    b"summary: ",
    b"test: ",
    b"adjust:\n  - when: distro == fedora\n    enabled: false\n",
    b"environment+: ",
    b"tag-: ",
    b"/child:\n  ",
    b"\xef\xbb\xbf",
    b"\xff",
];

/// The number of nodes in `value` (a key counts as one), stopping at
/// `limit + 1`.
fn nodes(value: &Value, limit: usize) -> usize {
    fn walk(value: &Value, count: &mut usize, limit: usize) {
        *count += 1;
        if *count > limit {
            return;
        }
        match value {
            Value::Seq(items) | Value::Set(items) => {
                for item in items {
                    walk(item, count, limit);
                }
            }
            Value::Map(map) => {
                for item in map.values() {
                    *count += 1;
                    walk(item, count, limit);
                }
            }
            Value::KeyedMap(pairs) => {
                for (key, item) in pairs {
                    walk(key, count, limit);
                    walk(item, count, limit);
                }
            }
            _ => {}
        }
    }
    let mut count = 0;
    walk(value, &mut count, limit);
    count
}

/// The properties of the module docs, for one input.
pub fn check(input: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(input);
    let path = Path::new(PATH);
    match parse(&text, path) {
        Ok(value) => {
            // The text writes at most about one node per byte (`[]`, `a:`
            // make two from two bytes); aliases copy at most the budget.
            let written = 2 * text.len() + 2;
            let bound = written + 100_000usize.max(written * 10);
            let count = nodes(&value, bound);
            if count > bound {
                return Err(format!(
                    "a {}-byte text loaded as over {bound} nodes",
                    text.len()
                ));
            }
            Ok(())
        }
        Err(e) => {
            let Some(location) = e.location() else {
                return Err(format!("error without a location: {e}"));
            };
            if location.path != path {
                return Err(format!("error names {:?}: {e}", location.path));
            }
            let (Some(line), Some(column)) = (location.line, location.column) else {
                return Err(format!("error without a line and column: {e}"));
            };
            // Positions count after a leading BOM, as ruamel's reader drops
            // it. YAML breaks lines at `\r\n`, `\r` and `\n`, and ruamel at
            // NEL, LS and PS too: the bounds allow for any of them.
            let body = text.strip_prefix('\u{feff}').unwrap_or(&text);
            let is_break = |c: char| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}');
            let lines = body.chars().filter(|&c| is_break(c)).count() + 1;
            // Lines cut at `\n` only are the widest any reading gives.
            // Counted in bytes, not characters: saphyr-parser counts the
            // columns of a line that starts with `%` (a directive) in bytes,
            // so `%é: [1\0` is reported at column 8, not 7 (reported; the
            // looser bound keeps that known deviation from failing runs).
            let widest = body.split('\n').map(str::len).max().unwrap_or(0);
            if line == 0 || line > lines {
                return Err(format!(
                    "error on line {line} of a text with {lines} lines: {e}"
                ));
            }
            if column == 0 || column > widest + 1 {
                return Err(format!(
                    "error column {column} outside every line (the widest has {widest} bytes): {e}"
                ));
            }
            if e.message().is_empty() {
                return Err(format!("error without a message at {location}"));
            }
            Ok(())
        }
    }
}
