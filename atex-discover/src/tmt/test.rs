//! A discovered test: the tmt test keys ATEX uses, read from one adjusted
//! node, normalized and validated.

use std::path::{Path, PathBuf};

use atex_shared::duration::{DEFAULT_TEST_DURATION, parse_duration_with_default};

use crate::error::{ErrorKind, Result};
use crate::tmt::data_error;
use crate::tmt::environment::{self, Environment};
use crate::tree::Node;
use crate::value::{Map, Value};

/// One selected test, ready to become a Test record.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoveredTest {
    /// The test name: the node name, prefixed `/<section>` when it comes
    /// from a named discover section.
    pub name: String,
    /// The directory of the node's last source file relative to the tree
    /// root (empty for the root itself). It is not prefixed with the section
    /// name: unlike ATEX, which copies each section's tree into
    /// `<section>/`, records keep the real tree root, so the path stays
    /// relative to it.
    pub path: String,
    /// The `test` shell snippet.
    pub test: String,
    /// Seconds: tmt's duration grammar, `5m` by default, and a sum of zero
    /// counts as `5m` (as tmt's execute step injects it).
    pub duration: u64,
    /// The test's `environment`, values Python `str()`-ed.
    pub environment: Environment,
    /// `require`: strings, or mappings for libraries and files.
    pub require: Vec<Value>,
    /// `recommend`, the same shape as `require`.
    pub recommend: Vec<Value>,
    /// `tty`, default false.
    pub tty: bool,
    /// `tag` as a list.
    pub tag: Vec<String>,
    /// The whole adjusted node data.
    pub data: Map,
}

impl DiscoveredTest {
    /// Read a test from its node. `prefix` is the discover section name
    /// for named sections.
    pub fn from_node(node: &Node, root: &Path, prefix: Option<&str>) -> Result<DiscoveredTest> {
        Self::from_parts(&node.name, &node.sources, &node.data, root, prefix)
    }

    /// [`DiscoveredTest::from_node`] from a node's name, sources and
    /// (adjusted) data.
    pub fn from_parts(
        name: &str,
        sources: &[PathBuf],
        data: &Map,
        root: &Path,
        prefix: Option<&str>,
    ) -> Result<DiscoveredTest> {
        let err = |key: &str, message: String| {
            data_error(ErrorKind::FormatError, name, sources, key, message)
        };
        let test = match data.get("test") {
            Some(Value::Str(test)) => test.clone(),
            Some(other) => {
                return Err(err(
                    "test",
                    format!("'test' must be a string, not {}", other.py_type_name()),
                ));
            }
            None => {
                return Err(err(
                    "test",
                    format!("the 'test' attribute in '{name}' must be defined"),
                ));
            }
        };
        let duration = match data.get("duration") {
            None | Some(Value::Null) => DEFAULT_TEST_DURATION,
            Some(Value::Str(text)) => parse_duration_with_default(text, DEFAULT_TEST_DURATION)
                .map_err(|e| err("duration", e.to_string()))?,
            // tmt reads the duration as a string; a bare YAML number is
            // its `str()`, which the grammar reads as seconds.
            Some(Value::Int(seconds)) => {
                parse_duration_with_default(&seconds.to_string(), DEFAULT_TEST_DURATION)
                    .map_err(|e| err("duration", e.to_string()))?
            }
            Some(other) => {
                return Err(err(
                    "duration",
                    format!("'duration' must be a string, not {}", other.py_type_name()),
                ));
            }
        };
        let environment = match data.get("environment") {
            None => Environment::new(),
            Some(value) => {
                environment::from_value(value).map_err(|e| err("environment", e.to_string()))?
            }
        };
        let require = requirements(data, "require").map_err(|m| err("require", m))?;
        let recommend = requirements(data, "recommend").map_err(|m| err("recommend", m))?;
        let tty = match data.get("tty") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(err(
                    "tty",
                    format!("'tty' must be a bool, not {}", other.py_type_name()),
                ));
            }
        };
        let tag = string_list(data, "tag").map_err(|m| err("tag", m))?;
        let name = match prefix {
            Some(section) => format!("/{section}{name}"),
            None => name.to_owned(),
        };
        Ok(DiscoveredTest {
            name,
            path: test_path(sources, root),
            test,
            duration,
            environment,
            require,
            recommend,
            tty,
            tag,
            data: data.clone(),
        })
    }
}

/// The directory of the last source relative to `root`, empty at the root.
pub fn test_path(sources: &[PathBuf], root: &Path) -> String {
    let Some(dir) = sources.last().and_then(|source| source.parent()) else {
        return String::new();
    };
    match dir.strip_prefix(root) {
        Ok(relative) => relative.to_string_lossy().into_owned(),
        // A source outside the root (a symlinked file): keep it absolute.
        Err(_) => dir.to_string_lossy().into_owned(),
    }
}

/// `require`/`recommend`: a string or a list of strings and mappings.
fn requirements(data: &Map, key: &str) -> std::result::Result<Vec<Value>, String> {
    match data.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(value @ (Value::Str(_) | Value::Map(_))) => Ok(vec![value.clone()]),
        Some(Value::Seq(items)) => {
            for item in items {
                if !matches!(item, Value::Str(_) | Value::Map(_)) {
                    return Err(format!(
                        "'{key}' items must be strings or mappings, not {}",
                        item.py_type_name()
                    ));
                }
            }
            Ok(items.clone())
        }
        Some(other) => Err(format!(
            "'{key}' must be a string or a list, not {}",
            other.py_type_name()
        )),
    }
}

/// A string or a list of strings, as a list.
pub(crate) fn string_list(data: &Map, key: &str) -> std::result::Result<Vec<String>, String> {
    match data.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Str(s)) => Ok(vec![s.clone()]),
        Some(Value::Seq(items)) => items
            .iter()
            .map(|item| match item {
                Value::Str(s) => Ok(s.clone()),
                other => Err(format!(
                    "'{key}' items must be strings, not {}",
                    other.py_type_name()
                )),
            })
            .collect(),
        Some(other) => Err(format!(
            "'{key}' must be a string or a list of strings, not {}",
            other.py_type_name()
        )),
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
mod tests {
    use super::*;

    pub(crate) fn node(name: &str, text: &str, sources: &[&str]) -> Node {
        let data = match crate::yaml::parse(text, Path::new("test.fmf")).unwrap() {
            Value::Map(map) => *map,
            Value::Null => Map::default(),
            other => panic!("not a map: {other:?}"),
        };
        Node {
            name: name.to_owned(),
            data,
            sources: sources.iter().map(PathBuf::from).collect(),
            leaf: true,
            select: true,
        }
    }

    #[test]
    fn defaults() {
        let n = node(
            "/tests/a",
            "test: ./run.sh\n",
            &["/r/main.fmf", "/r/tests/a/main.fmf"],
        );
        let t = DiscoveredTest::from_node(&n, Path::new("/r"), None).unwrap();
        assert_eq!(t.name, "/tests/a");
        assert_eq!(t.path, "tests/a");
        assert_eq!(t.test, "./run.sh");
        assert_eq!(t.duration, 300);
        assert!(t.environment.is_empty() && t.require.is_empty() && t.tag.is_empty());
        assert!(!t.tty);
    }

    #[test]
    fn keys_and_prefix() {
        let n = node(
            "/a",
            "test: x\nduration: 1h 30\nenvironment: {X: 1.5}\nrequire: pkg\nrecommend: [a, {type: library}]\ntty: true\ntag: t\n",
            &["/r/main.fmf"],
        );
        let t = DiscoveredTest::from_node(&n, Path::new("/r"), Some("sec")).unwrap();
        assert_eq!(t.name, "/sec/a");
        assert_eq!(t.path, "");
        assert_eq!(t.duration, 3630);
        assert_eq!(t.environment["X"], "1.5");
        assert_eq!(t.require, [Value::Str("pkg".into())]);
        assert_eq!(t.recommend.len(), 2);
        assert!(t.tty);
        assert_eq!(t.tag, ["t"]);
    }

    #[test]
    fn durations() {
        for (text, seconds) in [
            ("5m*2", 600),
            ("'*2'", 600),
            ("0", 300),
            ("90", 90),
            ("1m30s", 90),
        ] {
            let n = node(
                "/a",
                &format!("test: x\nduration: {text}\n"),
                &["/r/main.fmf"],
            );
            assert_eq!(
                DiscoveredTest::from_node(&n, Path::new("/r"), None)
                    .unwrap()
                    .duration,
                seconds,
                "{text}"
            );
        }
        for text in ["1.5h", "5M", "''", "[1]"] {
            let n = node(
                "/a",
                &format!("test: x\nduration: {text}\n"),
                &["/r/main.fmf"],
            );
            assert!(
                DiscoveredTest::from_node(&n, Path::new("/r"), None).is_err(),
                "{text}"
            );
        }
    }

    #[test]
    fn bad_types() {
        for text in [
            "test: [x]",
            "test: x\ntty: yes",
            "test: x\nrequire: 1",
            "test: x\ntag: {a: b}",
            "test: x\nenvironment: 3",
        ] {
            let n = node("/a", text, &[]);
            assert!(
                DiscoveredTest::from_node(&n, Path::new("/r"), None).is_err(),
                "{text}"
            );
        }
    }
}
