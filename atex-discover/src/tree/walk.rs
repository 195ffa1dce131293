//! The directory walk: root discovery, `.fmf/version` and `.fmf/config`,
//! and the steps python's `Tree.grow` takes, listed without reading any fmf
//! file.

use std::fs;
use std::path::{Component, Path, PathBuf};

use super::Skipped;
use crate::error::{Error, ErrorKind, Result};
use crate::value::Value;
use crate::yaml;

/// Directories python fmf never walks.
const IGNORED_DIRECTORIES: [&str; 3] = ["/dev", "/proc", "/sys"];

/// One step of the directory walk, replayed in order by
/// [`Builder`](super::build::Builder).
#[derive(Debug)]
pub(super) enum Step {
    /// An fmf file: `main.fmf` (no child name) updates the current node,
    /// any other file the child named after it. `file` indexes the parsed
    /// files.
    File {
        path: PathBuf,
        child: Option<String>,
        file: usize,
    },
    /// The current node's own files are read: python merges it here.
    OwnFilesDone,
    /// Descend into the subdirectory child `name`.
    Enter(String),
    /// Back to the parent node.
    Leave,
    /// The subdirectories are walked: drop the empty children.
    DirDone,
    /// `explore.include` was needed and is invalid.
    Fail(Error),
}

/// `Tree.grow` without reading files: the steps to replay.
pub(super) struct Walker<'a> {
    /// `explore.include`, or the error python raises on first use.
    pub(super) include: &'a std::result::Result<Vec<String>, Error>,
    /// Realpaths of symlinked directories already entered (tree-wide, as
    /// python fmf does it: spec A.6).
    pub(super) symlink_dirs: Vec<PathBuf>,
    pub(super) steps: Vec<Step>,
    pub(super) files: Vec<PathBuf>,
    /// Directories (or parts of them) that could not be read.
    pub(super) skipped: Vec<Skipped>,
}

impl Walker<'_> {
    /// Note a directory the walk could not read.
    fn skip(&mut self, dir: &Path, error: &std::io::Error) {
        self.skipped.push(Skipped {
            path: dir.to_path_buf(),
            reason: error.to_string(),
        });
    }

    fn included(&self, name: &str) -> std::result::Result<bool, Error> {
        match self.include {
            Ok(names) => Ok(names.iter().any(|n| n == name)),
            Err(e) => Err(e.clone()),
        }
    }

    /// List the steps for `dir`: its `.fmf` files, then its subdirectories.
    /// `entered` is the child name of a subdirectory (the root has none):
    /// its [`Step::Enter`] is pushed once the directory is known not to be
    /// a nested tree (one with its own `.fmf`), which this reports.
    pub(super) fn walk(&mut self, dir: &Path, entered: Option<String>) -> Walk {
        let enter = |walker: &mut Self, entered: Option<String>| {
            if let Some(name) = entered {
                walker.steps.push(Step::Enter(name));
            }
        };
        let nested = |entered: &Option<String>| entered.is_some() && dir.join(".fmf").is_dir();
        if IGNORED_DIRECTORIES.iter().any(|d| dir == Path::new(d)) {
            if nested(&entered) {
                return Walk::Nested;
            }
            enter(self, entered);
            return Walk::Done;
        }
        // An unreadable directory (no permission, a path beyond PATH_MAX)
        // is skipped as os.walk skips it, but said: its tests would vanish
        // without a word otherwise.
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) => {
                if nested(&entered) {
                    return Walk::Nested;
                }
                self.skip(dir, &error);
                enter(self, entered);
                return Walk::Done;
            }
        };
        let mut files = Vec::new();
        let mut dirs: Vec<(String, bool)> = Vec::new();
        for entry in entries {
            // A failed readdir ends the listing (std stops there): the
            // entries read so far are walked, the rest is said to be lost.
            let entry = match entry {
                Ok(entry) => entry,
                Err(error) => {
                    self.skip(dir, &error);
                    break;
                }
            };
            // Names that are not UTF-8 cannot be fmf node names.
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            // `special`: a FIFO, device or socket (or a link to one). Reading
            // /dev/zero never ends and a FIFO blocks, so only regular files
            // (and what a read error reports, as a broken link) are read.
            let (is_dir, is_link, special) = match entry.file_type() {
                Ok(t) if t.is_dir() => (true, false, false),
                Ok(t) if t.is_symlink() => match fs::metadata(entry.path()) {
                    Ok(m) => (m.is_dir(), true, !m.is_dir() && !m.is_file()),
                    Err(_) => (false, true, false),
                },
                Ok(t) => (false, false, !t.is_file()),
                Err(_) => (false, false, false),
            };
            if is_dir {
                if entered.is_some() && name == ".fmf" {
                    return Walk::Nested;
                }
                dirs.push((name, is_link));
            } else if name.ends_with(".fmf") {
                files.push((name, special));
            }
        }
        enter(self, entered);
        files.sort_unstable();
        if let Some(pos) = files.iter().position(|(f, _)| f == "main.fmf") {
            let main = files.remove(pos);
            files.insert(0, main);
        }
        for (file, special) in files {
            if file.starts_with('.') {
                match self.included(&file) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(error) => {
                        self.steps.push(Step::Fail(error));
                        return Walk::Stop;
                    }
                }
            }
            let path = dir.join(&file);
            if special {
                self.steps.push(Step::Fail(
                    Error::new(
                        ErrorKind::FileError,
                        format!(
                            "Failed to read '{}': not a regular file (a FIFO, device or socket)",
                            path.display()
                        ),
                    )
                    .in_file(&path),
                ));
                return Walk::Stop;
            }
            let child = (file != "main.fmf").then(|| file[..file.len() - ".fmf".len()].to_owned());
            self.steps.push(Step::File {
                path: path.clone(),
                child,
                file: self.files.len(),
            });
            self.files.push(path);
        }
        self.steps.push(Step::OwnFilesDone);
        dirs.sort_unstable();
        for (name, is_link) in dirs {
            if name.starts_with('.') {
                match self.included(&name) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(error) => {
                        self.steps.push(Step::Fail(error));
                        return Walk::Stop;
                    }
                }
            }
            let path = dir.join(&name);
            if is_link {
                let real = fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
                if self.symlink_dirs.contains(&real) {
                    continue;
                }
                self.symlink_dirs.push(real);
            }
            match self.walk(&path, Some(name)) {
                // a nested metadata tree of its own
                Walk::Nested => {}
                Walk::Done => self.steps.push(Step::Leave),
                Walk::Stop => {
                    self.steps.push(Step::Leave);
                    return Walk::Stop;
                }
            }
        }
        self.steps.push(Step::DirDone);
        Walk::Done
    }
}

/// How [`Walker::walk`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Walk {
    Done,
    /// A [`Step::Fail`] ends the whole walk.
    Stop,
    /// The directory holds a tree of its own: nothing was listed.
    Nested,
}

/// `os.path.abspath`: absolute against the CWD, `.` and `..` resolved
/// lexically (symlinks are not resolved).
pub(crate) fn absolute_path(path: &Path) -> Result<PathBuf> {
    absolute(path)
}

pub(super) fn absolute(path: &Path) -> Result<PathBuf> {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        let cwd = std::env::current_dir().map_err(|e| {
            Error::new(
                ErrorKind::GeneralError,
                format!("Cannot read the current directory: {e}"),
            )
        })?;
        cwd.join(path)
    };
    let mut normal = PathBuf::from("/");
    for component in joined.components() {
        match component {
            Component::ParentDir => {
                normal.pop();
            }
            Component::Normal(part) => normal.push(part),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(normal)
}

/// Walk up from `path` to the first directory holding a `.fmf` directory.
pub(super) fn find_root(path: &Path) -> Result<PathBuf> {
    let start = absolute(path)?;
    let mut root = start.clone();
    loop {
        if fs::read_dir(&root).is_err() {
            return Err(Error::new(
                ErrorKind::FileError,
                format!("Invalid directory path: {}", root.display()),
            ));
        }
        if root.join(".fmf").is_dir() {
            return Ok(root);
        }
        if !root.pop() {
            return Err(Error::new(
                ErrorKind::RootError,
                format!("Unable to find tree root for '{}'.", start.display()),
            ));
        }
    }
}

/// Check `.fmf/version` the way python's `int()` reads it. The value is
/// never used, as in python fmf.
pub(super) fn read_version(root: &Path) -> Result<()> {
    let path = root.join(".fmf").join("version");
    let bytes = fs::read(&path).map_err(|e| {
        Error::new(
            ErrorKind::FormatError,
            format!(
                "Unable to detect format version: {}",
                python_os_error(&e, &path)
            ),
        )
        .in_file(&path)
    })?;
    let valid = std::str::from_utf8(&bytes).is_ok_and(is_python_int);
    if valid {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::FormatError, "Invalid version format").in_file(&path))
    }
}

/// An I/O error as python prints an `OSError`:
/// `[Errno 2] No such file or directory: '/path'`.
fn python_os_error(error: &std::io::Error, path: &Path) -> String {
    match error.raw_os_error() {
        Some(code) => {
            let text = error.to_string();
            let text = text.split(" (os error").next().unwrap_or(&text).to_owned();
            format!("[Errno {code}] {text}: '{}'", path.display())
        }
        None => error.to_string(),
    }
}

/// Whether python `int(text)` accepts `text`: surrounding whitespace, a
/// sign, decimal digits with single `_` between digits.
fn is_python_int(text: &str) -> bool {
    let text = text.trim();
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    !digits.is_empty()
        && !digits.starts_with('_')
        && !digits.ends_with('_')
        && !digits.contains("__")
        && digits.chars().all(|c| c.is_ascii_digit() || c == '_')
}

/// Read `.fmf/config` and compute `explore.include`. Errors python raises
/// only when a hidden entry is met are returned inside the `Ok`.
pub(super) fn read_config(root: &Path) -> Result<std::result::Result<Vec<String>, Error>> {
    let path = root.join(".fmf").join("config");
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Ok(Vec::new())),
        Err(e) => {
            return Err(Error::new(
                ErrorKind::FileError,
                format!("Failed to read '{}': {e}", path.display()),
            )
            .in_file(&path));
        }
    };
    let config = yaml::parse(&text, &path)?;
    Ok(explore_include(&config).map_err(|e| e.in_file(&path)))
}

/// Look up a string key in a mapping; `Err` if `value` is no mapping.
fn lookup<'v>(value: &'v Value, key: &str) -> std::result::Result<Option<&'v Value>, ()> {
    match value {
        Value::Map(map) => Ok(map.get(key)),
        Value::KeyedMap(pairs) => Ok(pairs
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)),
        _ => Err(()),
    }
}

fn explore_include(config: &Value) -> std::result::Result<Vec<String>, Error> {
    // python crashes with a TypeError when the config or `explore` is no
    // mapping (e.g. an empty file); we report a format error instead.
    let not_mapping = |what: &str, v: &Value| {
        Error::new(
            ErrorKind::FormatError,
            format!(
                "Invalid config: {what} should be a mapping, got a '{}'.",
                v.py_type_name()
            ),
        )
    };
    let explore = match lookup(config, "explore") {
        Ok(Some(explore)) => explore,
        Ok(None) => return Ok(Vec::new()),
        Err(()) => return Err(not_mapping("the config", config)),
    };
    let include = match lookup(explore, "include") {
        Ok(Some(include)) => include,
        Ok(None) => return Ok(Vec::new()),
        Err(()) => return Err(not_mapping("'explore'", explore)),
    };
    let Value::Seq(items) = include else {
        return Err(Error::new(
            ErrorKind::GeneralError,
            format!(
                "The 'include' config section should be a list, found '{}'.",
                include.py_str()
            ),
        ));
    };
    if items.iter().any(|i| i.as_str() == Some(".fmf")) {
        return Err(Error::new(
            ErrorKind::GeneralError,
            "The '.fmf' directory cannot be used for storing fmf metadata.",
        ));
    }
    Ok(items
        .iter()
        .filter_map(|i| i.as_str().map(str::to_owned))
        .collect())
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
mod tests {
    use super::super::Tree;
    use super::super::fixtures::{names, tree, write};
    use super::*;

    #[test]
    fn python_int_versions() {
        for ok in ["1\n", " 7 ", "0", "-3", "+1", "1_000"] {
            assert!(is_python_int(ok), "{ok:?}");
        }
        for bad in ["abc", "1.0", "", "1__0", "_1", "1_", "- 1"] {
            assert!(!is_python_int(bad), "{bad:?}");
        }
    }

    #[test]
    fn lexical_absolute_paths() {
        assert_eq!(
            absolute(Path::new("/a/./b/../c")).unwrap(),
            PathBuf::from("/a/c")
        );
        assert_eq!(absolute(Path::new("/..")).unwrap(), PathBuf::from("/"));
    }

    #[test]
    fn include_config_shapes() {
        let map = |pairs: Vec<(&str, Value)>| {
            Value::Map(Box::new(
                pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            ))
        };
        let list = Value::Seq(vec![Value::Str(".i.fmf".into())]);
        let config = map(vec![("explore", map(vec![("include", list)]))]);
        assert_eq!(explore_include(&config).unwrap(), vec![".i.fmf".to_owned()]);
        assert_eq!(explore_include(&map(vec![])).unwrap(), Vec::<String>::new());
        assert!(explore_include(&Value::Null).is_err());
        let bad = map(vec![(
            "explore",
            map(vec![("include", Value::Str("x".into()))]),
        )]);
        assert_eq!(
            explore_include(&bad).unwrap_err().kind(),
            ErrorKind::GeneralError
        );
    }

    #[test]
    fn root_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Tree::load(&dir.path().join("nope")).unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::FileError);
        let (_dir, tree) = tree(&[]);
        // no fmf file at all: only the root remains
        assert_eq!(names(&tree.unwrap(), true), vec!["/"]);
    }

    #[test]
    fn hidden_files_need_include() {
        let (_dir, plain) = tree(&[(".h.fmf", "k: 1\n"), ("v.fmf", "k: 2\n")]);
        assert_eq!(names(&plain.unwrap(), true), vec!["/", "/v"]);
        let (_dir, included) = tree(&[
            (".fmf/config", "explore:\n  include: [.h.fmf]\n"),
            (".h.fmf", "k: 1\n"),
        ]);
        assert_eq!(names(&included.unwrap(), true), vec!["/", "/.h"]);
    }

    #[test]
    fn nested_trees_are_skipped() {
        let (_dir, tree) = tree(&[
            ("a.fmf", "k: 1\n"),
            ("sub/.fmf/version", "1\n"),
            ("sub/x.fmf", "k: 2\n"),
        ]);
        assert_eq!(names(&tree.unwrap(), true), vec!["/", "/a"]);
    }

    #[test]
    fn symlinked_directories_use_one_global_list() {
        let (dir, _) = tree(&[]);
        write(dir.path(), "real/main.fmf", "r: 1\n");
        std::os::unix::fs::symlink("real", dir.path().join("link1")).unwrap();
        std::os::unix::fs::symlink("real", dir.path().join("link2")).unwrap();
        let tree = Tree::load(dir.path()).unwrap();
        assert_eq!(names(&tree, true), vec!["/", "/link1", "/real"]);
    }
}
