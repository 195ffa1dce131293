//! Environment variables of tests and plans: the `environment` key (a
//! mapping or a list of `K=V`) and the plan's `environment-file` (dotenv or
//! YAML files relative to the tree root).

use std::path::Path;

use indexmap::IndexMap;

use crate::value::Value;

/// Environment variables, in definition order.
pub type Environment = IndexMap<String, String>;

/// Why an environment could not be read. The caller adds the node and the
/// location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// The value has the wrong type.
    #[error("{0}")]
    Type(String),
    /// A file could not be read or parsed.
    #[error("{0}")]
    File(String),
}

/// The variables of an `environment` value, as tmt normalizes it: a mapping,
/// or a list of `K=V` strings (or of mappings, which ATEX accepts); keys and
/// values become Python `str()` and are stripped. `null` is empty.
pub fn from_value(value: &Value) -> Result<Environment, EnvError> {
    let mut env = Environment::new();
    match value {
        Value::Null => {}
        Value::Map(map) => {
            for (key, value) in map.iter() {
                insert(&mut env, key, value)?;
            }
        }
        // YAML 1.2 reads keys like `TRUE` or `1` as non-strings; tmt
        // `str()`s them.
        Value::KeyedMap(pairs) => {
            for (key, value) in pairs {
                insert(&mut env, &key.py_str(), value)?;
            }
        }
        Value::Seq(items) => {
            for item in items {
                match item {
                    Value::Str(pair) => {
                        let (key, value) = pair.split_once('=').ok_or_else(|| {
                            EnvError::Type(format!("environment item '{pair}' is not 'NAME=VALUE'"))
                        })?;
                        env.insert(key.trim().to_owned(), value.trim().to_owned());
                    }
                    Value::Map(map) => {
                        for (key, value) in map.iter() {
                            insert(&mut env, key, value)?;
                        }
                    }
                    other => {
                        return Err(EnvError::Type(format!(
                            "environment items must be 'NAME=VALUE' strings or mappings, not {}",
                            other.py_type_name()
                        )));
                    }
                }
            }
        }
        other => {
            return Err(EnvError::Type(format!(
                "environment must be a mapping or a list, not {}",
                other.py_type_name()
            )));
        }
    }
    Ok(env)
}

fn insert(env: &mut Environment, key: &str, value: &Value) -> Result<(), EnvError> {
    if matches!(
        value,
        Value::Map(_) | Value::KeyedMap(_) | Value::Seq(_) | Value::Set(_)
    ) {
        return Err(EnvError::Type(format!(
            "environment variable '{key}' must be a scalar, not {}",
            value.py_type_name()
        )));
    }
    env.insert(key.trim().to_owned(), value.py_str().trim().to_owned());
    Ok(())
}

/// The variables of an `environment-file` value (a path or a list of
/// paths, relative to `root`), merged in order. Names ending `.yaml`/`.yml`
/// are YAML mappings of scalars; anything else is dotenv, split like
/// Python's `shlex.split(text, comments=True)` with each token cut at its
/// first `=`.
///
/// Deviation: URLs are not fetched; they are an error.
pub fn from_files(value: &Value, root: &Path) -> Result<Environment, EnvError> {
    let paths: Vec<&str> = match value {
        Value::Null => Vec::new(),
        Value::Str(path) => vec![path.as_str()],
        Value::Seq(items) => items
            .iter()
            .map(|item| {
                item.as_str().ok_or_else(|| {
                    EnvError::Type(format!(
                        "environment-file items must be strings, not {}",
                        item.py_type_name()
                    ))
                })
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(EnvError::Type(format!(
                "environment-file must be a string or a list of strings, not {}",
                other.py_type_name()
            )));
        }
    };
    let mut env = Environment::new();
    for path in paths {
        if path.contains("://") {
            return Err(EnvError::File(format!(
                "environment-file '{path}': URLs are not supported"
            )));
        }
        let file = root.join(path);
        let text = std::fs::read_to_string(&file).map_err(|e| {
            EnvError::File(format!(
                "failed to read environment-file '{}': {e}",
                file.display()
            ))
        })?;
        if path.ends_with(".yaml") || path.ends_with(".yml") {
            let value =
                crate::yaml::parse(&text, &file).map_err(|e| EnvError::File(e.to_string()))?;
            let parsed = match value {
                Value::Null => Environment::new(),
                Value::Map(_) => from_value(&value)
                    .map_err(|e| EnvError::File(format!("{}: {e}", file.display())))?,
                other => {
                    return Err(EnvError::File(format!(
                        "{}: environment-file must hold a mapping, not {}",
                        file.display(),
                        other.py_type_name()
                    )));
                }
            };
            env.extend(parsed);
        } else {
            env.extend(
                parse_dotenv(&text)
                    .map_err(|e| EnvError::File(format!("{}: {e}", file.display())))?,
            );
        }
    }
    Ok(env)
}

/// Parse a dotenv file as tmt does.
pub fn parse_dotenv(text: &str) -> Result<Environment, String> {
    let mut env = Environment::new();
    for token in shlex_split(text)? {
        let (key, value) = token
            .split_once('=')
            .ok_or_else(|| format!("'{token}' is not 'NAME=VALUE'"))?;
        env.insert(key.to_owned(), value.to_owned());
    }
    Ok(env)
}

/// Python's `shlex.split(text, comments=True)` (POSIX mode): whitespace
/// separates words, `'...'` is literal, `"..."` honours `\"` and `\\`, a
/// backslash outside quotes escapes the next character, and `#` outside
/// quotes ends the word and skips the rest of the line.
fn shlex_split(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    // A word exists once something was read, even `''`.
    let mut in_word = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_ascii_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("no closing quotation".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("no closing quotation".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("no closing quotation".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err("no escaped character".into()),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
mod tests {
    use super::*;
    use crate::value::Map;

    fn map(pairs: &[(&str, Value)]) -> Value {
        Value::Map(Box::new(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect::<Map>(),
        ))
    }

    #[test]
    fn mapping_values_are_python_str() {
        let env = from_value(&map(&[
            ("A", Value::Bool(true)),
            ("B", Value::Int(3)),
            ("C", Value::Str(" x ".into())),
            ("D", Value::Null),
        ]))
        .unwrap();
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            pairs,
            [("A", "True"), ("B", "3"), ("C", "x"), ("D", "None")]
        );
    }

    #[test]
    fn non_string_keys() {
        let env = from_value(&Value::KeyedMap(vec![(Value::Bool(true), Value::Int(1))])).unwrap();
        assert_eq!(env["True"], "1");
    }

    #[test]
    fn list_of_pairs() {
        let env = from_value(&Value::Seq(vec![
            Value::Str("A=1=2".into()),
            Value::Str(" B = x ".into()),
        ]))
        .unwrap();
        assert_eq!(env["A"], "1=2");
        assert_eq!(env["B"], "x");
        assert!(from_value(&Value::Seq(vec![Value::Str("A".into())])).is_err());
    }

    #[test]
    fn wrong_types() {
        assert!(from_value(&Value::Int(3)).is_err());
        assert!(from_value(&map(&[("A", Value::Seq(vec![]))])).is_err());
        assert!(from_value(&Value::Null).unwrap().is_empty());
    }

    #[test]
    fn dotenv_like_shlex() {
        let env = parse_dotenv(
            "# comment\nA=1\nB='two words' C=\"x \\\"y\\\" \\n\"\nD=a#rest\nE=\\$x\nF=\n",
        )
        .unwrap();
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            pairs,
            [
                ("A", "1"),
                ("B", "two words"),
                ("C", "x \"y\" \\n"),
                ("D", "a"),
                ("E", "$x"),
                ("F", "")
            ]
        );
        assert!(parse_dotenv("A='x").is_err());
        assert!(parse_dotenv("NOVALUE").is_err());
    }

    #[test]
    fn files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.env"), "A=1\nB=1\n").unwrap();
        std::fs::write(dir.path().join("b.env"), "B=2\n").unwrap();
        let value = Value::Seq(vec![Value::Str("a.env".into()), Value::Str("b.env".into())]);
        let env = from_files(&value, dir.path()).unwrap();
        assert_eq!((env["A"].as_str(), env["B"].as_str()), ("1", "2"));
        assert!(from_files(&Value::Str("missing.env".into()), dir.path()).is_err());
        std::fs::write(dir.path().join("c.yaml"), "A: 3\nB: true\n").unwrap();
        let env = from_files(&Value::Str("c.yaml".into()), dir.path()).unwrap();
        assert_eq!((env["A"].as_str(), env["B"].as_str()), ("3", "True"));
        std::fs::write(dir.path().join("d.yml"), "[1]\n").unwrap();
        assert!(from_files(&Value::Str("d.yml".into()), dir.path()).is_err());
        assert!(from_files(&Value::Int(1), dir.path()).is_err());
    }
}
