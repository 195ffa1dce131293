//! Text checks outside the parser: the `%YAML` directive pre-scan and
//! ruamel's stricter rules on tabs.

use saphyr_parser::Marker;

use super::Fail;
use super::resolve::Version;

/// ruamel's scanner treats a tab as white space only inside flow
/// collections, and as content inside quoted and block scalars and
/// comments. Anywhere else, and inside any plain scalar (`a: b\tc`,
/// `[a\tb]`), a tab is an error. saphyr-parser follows YAML 1.2 and accepts
/// those tabs, so they are looked for here. `ranges` are character ranges:
/// `true` where tabs are fine, `false` for plain scalars.
pub(super) fn check_tabs(text: &str, ranges: &[(usize, usize, bool)]) -> Result<(), Fail> {
    const BLOCK: u8 = 0;
    const ALLOWED: u8 = 1;
    const PLAIN: u8 = 2;
    let chars: Vec<char> = text.chars().collect();
    let mut state = vec![BLOCK; chars.len()];
    for pass in [true, false] {
        for &(start, mut end, allowed) in ranges.iter().filter(|r| r.2 == pass) {
            // A quoted scalar's span runs over the blanks after its closing quote.
            while end > start && matches!(chars.get(end - 1), Some(' ' | '\t')) {
                end -= 1;
            }
            let end = end.min(chars.len());
            if start < end {
                state[start..end].fill(if allowed { ALLOWED } else { PLAIN });
            }
        }
    }
    let (mut line, mut col) = (1usize, 0usize);
    let mut in_comment = false;
    let mut after_space = true;
    for (index, &c) in chars.iter().enumerate() {
        match c {
            '\n' => {
                (line, col) = (line + 1, 0);
                in_comment = false;
                after_space = true;
                continue;
            }
            '#' if state[index] != ALLOWED && after_space => in_comment = true,
            '\t' if state[index] == PLAIN || (state[index] == BLOCK && !in_comment) => {
                let mark = Marker::new(index, line, col);
                return Err(Fail::in_context(
                    "while scanning for the next token",
                    mark,
                    "found character '\\t' that cannot start any token".into(),
                    mark,
                ));
            }
            _ => {}
        }
        after_space = matches!(c, ' ' | '\t' | '\r');
        col += 1;
    }
    Ok(())
}

/// The `%YAML` directive of the (first) document, found by reading the
/// directive lines before the document starts.
pub(super) fn scan_version(text: &str) -> Result<Version, Fail> {
    let mut index = 0usize;
    for (number, line) in text.split('\n').enumerate() {
        let mark = Marker::new(index, number + 1, 0);
        index += line.chars().count() + 1;
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix("%YAML") else {
            if line.starts_with('%') {
                continue;
            }
            break;
        };
        let word = rest.split_whitespace().next().unwrap_or("");
        let (major, minor) = word.split_once('.').unwrap_or((word, ""));
        let (Ok(major), Ok(minor)) = (major.parse::<u32>(), minor.parse::<u32>()) else {
            // saphyr-parser reports a malformed directive itself.
            break;
        };
        if major != 1 {
            return Err(Fail::at(
                mark,
                "found incompatible YAML document (version 1.* is required)".into(),
            ));
        }
        return match minor {
            1 => Ok(Version::V11),
            2 => Ok(Version::V12),
            _ => Err(Fail::at(
                mark,
                format!("version minor part can only be 2 or 1, got (1, {minor})"),
            )),
        };
    }
    Ok(Version::V12)
}
#[cfg(test)]
mod tests {
    use crate::yaml::tests::{fail, json};

    #[test]
    fn yaml_1_1_directive() {
        assert_eq!(
            json(
                "%YAML 1.1\n---\n[yes, On, n, 017, 08, 0_7, 190:20:30, 190:20:30.15, 0b1, 0o17, 1_000]"
            ),
            r#"[true,true,false,15,"08",7,685230,685230.15,1,"0o17",1000]"#
        );
        assert_eq!(json("# c\n%YAML 1.2\n---\n[yes, 017]"), r#"["yes",17]"#);
        assert_eq!(fail("%YAML 1.3\n--- x").0, 1);
        assert_eq!(fail("%YAML 2.0\n--- x").0, 1);
    }

    #[test]
    fn tabs() {
        let (line, column, detail) = fail("x:\n\ta: 1\n");
        assert_eq!(line, 2);
        assert!(column <= 2);
        assert!(!detail.is_empty());
        // Where ruamel's scanner rejects tabs although YAML 1.2 allows them.
        for (text, column) in [
            ("a: \t1", 4),
            ("a: 1\t# c", 5),
            ("a: b\tc", 5),
            ("-\tb", 2),
            ("[a\tb]", 3),
        ] {
            let (line, col, detail) = fail(text);
            assert_eq!((line, col), (1, column), "{text:?}");
            assert!(detail.starts_with("while scanning for the next token\nfound character '\\t'"));
        }
        // ...and where it accepts them.
        assert_eq!(
            json("a: [1,\t2]  # x\t y\n# \tc\nb: \"x\ty\"\nc: |\n  x\ty\n"),
            r#"{"a":[1,2],"b":"x\ty","c":"x\ty\n"}"#
        );
    }
}
