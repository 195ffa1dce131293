//! Building the raw nodes: the fmf files parsed on every core, then
//! loaded into nodes by replaying the walk (`update`, virtual children,
//! directives) and laid out in climb order.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use indexmap::IndexMap;

use super::raw::RawMeta;
use super::walk::Step;
use crate::error::{Error, ErrorKind, Result};
use crate::value::{Map, MapHasher, Value};
use crate::yaml;

/// Read and parse one fmf file; `buffer` is reused from file to file.
fn read_and_parse(path: &Path, buffer: &mut Vec<u8>) -> Result<Value> {
    let text = read_text(path, buffer).map_err(|e| {
        Error::new(
            ErrorKind::FileError,
            format!("Failed to read '{}': {e}", path.display()),
        )
        .in_file(path)
    })?;
    yaml::parse(text, path)
}

/// `fs::read_to_string` into a reused buffer, without asking the file's
/// size first (one system call less per file).
fn read_text<'b>(path: &Path, buffer: &'b mut Vec<u8>) -> std::io::Result<&'b str> {
    use std::io::Read as _;
    let mut file = fs::File::open(path)?;
    let mut filled = 0;
    loop {
        if filled == buffer.len() {
            buffer.resize((buffer.len() * 2).max(16 * 1024), 0);
        }
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    std::str::from_utf8(&buffer[..filled]).map_err(|_| {
        // the error `read_to_string` gives
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        )
    })
}

/// Lock a run of files (a thread that panicked leaves it consistent).
fn lock(run: &Mutex<(usize, usize)>) -> MutexGuard<'_, (usize, usize)> {
    run.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How many threads loading and visiting use.
pub(super) fn thread_count() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(8)
}

/// Read and parse `files` on every available core. Each thread takes a
/// consecutive run of files (so each thread's data is mostly a
/// consecutive run of nodes, which the visit's threads split the same
/// way), and steals from the end of the others' runs once its own is done.
/// A slot left `None` (a thread that panicked) is parsed again by the
/// builder.
pub(super) fn parse_all(files: &[PathBuf]) -> Vec<Option<Result<Value>>> {
    let threads = thread_count().min(files.len().div_ceil(32)).max(1);
    let bounds: Vec<usize> = (0..=threads).map(|t| t * files.len() / threads).collect();
    // each run: the next file to take from its front, the end of what is left
    let runs: Vec<Mutex<(usize, usize)>> = bounds
        .windows(2)
        .map(|w| Mutex::new((w[0], w[1])))
        .collect();
    let claim = |own: usize| -> Option<usize> {
        {
            let mut run = lock(&runs[own]);
            if run.0 < run.1 {
                run.0 += 1;
                return Some(run.0 - 1);
            }
        }
        let (fullest, left) = runs
            .iter()
            .enumerate()
            .map(|(i, run)| {
                let run = lock(run);
                (i, run.1.saturating_sub(run.0))
            })
            .max_by_key(|&(_, left)| left)?;
        if left == 0 {
            return None;
        }
        let mut run = lock(&runs[fullest]);
        (run.0 < run.1).then(|| {
            run.1 -= 1;
            run.1
        })
    };
    let work = |own: usize| {
        let mut buffer = Vec::new();
        let mut done = Vec::new();
        while let Some(i) = claim(own) {
            if let Some(path) = files.get(i) {
                done.push((i, read_and_parse(path, &mut buffer)));
            }
        }
        done
    };
    let mut results: Vec<Option<Result<Value>>> = Vec::new();
    results.resize_with(files.len(), || None);
    std::thread::scope(|scope| {
        let work = &work;
        let workers: Vec<_> = (1..threads).map(|t| scope.spawn(move || work(t))).collect();
        for (i, result) in work(0) {
            results[i] = Some(result);
        }
        for worker in workers {
            if let Ok(done) = worker.join() {
                for (i, result) in done {
                    results[i] = Some(result);
                }
            }
        }
    });
    results
}

/// A node while the tree is being built.
#[derive(Debug)]
pub(super) struct RawNode {
    name: String,
    /// Children by name segment, in creation order.
    children: IndexMap<String, usize>,
    /// Raw keys (suffixes included) as the files gave them.
    raw: Map,
    inherit: Option<bool>,
    select: Option<bool>,
    /// Own source files, in loading order.
    sources: Vec<PathBuf>,
    /// `update()` ran (even with null data): keeps an empty node alive.
    updated: bool,
    /// Position in python's inheritance order, once reached.
    rank: Option<usize>,
}

impl RawNode {
    pub(super) fn new(name: String) -> Self {
        RawNode {
            name,
            children: IndexMap::new(),
            raw: Map::default(),
            inherit: None,
            select: None,
            sources: Vec::new(),
            updated: false,
            rank: None,
        }
    }
}

pub(super) struct Builder {
    pub(super) arena: Vec<RawNode>,
    pub(super) next_rank: usize,
}

impl Builder {
    /// Replay the walk: load the parsed files into nodes in walk order.
    pub(super) fn replay(
        &mut self,
        steps: Vec<Step>,
        mut parsed: Vec<Option<Result<Value>>>,
    ) -> Result<()> {
        let mut stack = vec![0usize];
        for step in steps {
            let idx = stack.last().copied().unwrap_or(0);
            match step {
                Step::File { path, child, file } => {
                    let data = match parsed.get_mut(file).and_then(Option::take) {
                        Some(result) => result?,
                        None => read_and_parse(&path, &mut Vec::new())?,
                    };
                    match child {
                        None => {
                            self.arena[idx].sources.push(path.clone());
                            self.update(idx, data).map_err(|e| e.in_file(&path))?;
                        }
                        Some(name) => {
                            let child = self
                                .child(idx, name, Some(data))
                                .map_err(|e| e.in_file(&path))?;
                            self.arena[child].sources.push(path);
                        }
                    }
                }
                Step::OwnFilesDone => self.mark(idx),
                Step::Enter(name) => stack.push(self.child(idx, name, None)?),
                Step::Leave => {
                    stack.pop();
                }
                Step::DirDone => self.dir_done(idx),
                Step::Fail(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Record that python merges node `idx` now (if not yet).
    pub(super) fn mark(&mut self, idx: usize) {
        if self.arena[idx].rank.is_none() {
            self.arena[idx].rank = Some(self.next_rank);
            self.next_rank += 1;
        }
    }

    /// End of `Tree.grow` for `idx`: drop the empty children, then the
    /// children without a directory of their own (and their virtual
    /// descendants) are complete and merge, in creation order.
    fn dir_done(&mut self, idx: usize) {
        let mut children = std::mem::take(&mut self.arena[idx].children);
        children.retain(|_, &mut c| {
            let child = &self.arena[c];
            !child.children.is_empty() || child.updated
        });
        let mut stack: Vec<usize> = children.values().rev().copied().collect();
        self.arena[idx].children = children;
        while let Some(c) = stack.pop() {
            if self.arena[c].rank.is_some() {
                continue;
            }
            self.mark(c);
            stack.extend(self.arena[c].children.values().rev());
        }
    }

    /// `Tree.child`: create the child `name` of `idx` if needed and update
    /// it with `data`.
    fn child(&mut self, idx: usize, name: String, data: Option<Value>) -> Result<usize> {
        let child = match self.arena[idx].children.get(&name) {
            Some(&child) => child,
            None => {
                let parent_name = &self.arena[idx].name;
                let full = if parent_name.ends_with('/') {
                    format!("{parent_name}{name}")
                } else {
                    format!("{parent_name}/{name}")
                };
                let child = self.arena.len();
                self.arena.push(RawNode::new(full));
                self.arena[idx].children.insert(name, child);
                child
            }
        };
        if let Some(data) = data {
            self.update(child, data)?;
        }
        Ok(child)
    }

    /// `Tree.update`: store plain keys, create virtual children for `/x`
    /// keys, process the `/` directives.
    fn update(&mut self, idx: usize, data: Value) -> Result<()> {
        self.arena[idx].updated = true;
        match data {
            Value::Null => Ok(()),
            Value::Map(mut map) => {
                if let Some(directives) = map.shift_remove("/") {
                    self.directives(idx, directives)?;
                }
                let plain = map.keys().filter(|k| !k.starts_with('/')).count();
                let raw = &mut self.arena[idx].raw;
                if raw.is_empty() && plain == map.len() {
                    // the usual case: the file's mapping, as it was sized
                    *raw = *map;
                    return Ok(());
                }
                if raw.is_empty() {
                    *raw = Map::with_capacity_and_hasher(plain, MapHasher);
                }
                for (key, value) in *map {
                    self.update_key(idx, key, value)?;
                }
                Ok(())
            }
            Value::KeyedMap(mut pairs) => {
                if let Some(pos) = pairs.iter().position(|(k, _)| k.as_str() == Some("/")) {
                    let (_, directives) = pairs.remove(pos);
                    self.directives(idx, directives)?;
                }
                for (key, value) in pairs {
                    match key {
                        Value::Str(key) => self.update_key(idx, key, value)?,
                        Value::Null => {
                            return Err(Error::new(ErrorKind::FormatError, "Invalid key 'None'."));
                        }
                        other => {
                            return Err(Error::new(
                                ErrorKind::FormatError,
                                format!(
                                    "Invalid key {} in '{}': node keys must be strings.",
                                    other.py_repr(),
                                    self.arena[idx].name
                                ),
                            ));
                        }
                    }
                }
                Ok(())
            }
            other => {
                let node = &self.arena[idx].name;
                Err(Error::new(
                    ErrorKind::FormatError,
                    format!(
                        "Invalid data for '{node}': should be a mapping (or empty), got a '{}' instead.",
                        other.py_type_name()
                    ),
                ))
            }
        }
    }

    fn update_key(&mut self, idx: usize, key: String, value: Value) -> Result<()> {
        let Some(name) = key.strip_prefix('/') else {
            self.arena[idx].raw.insert(key, value);
            return Ok(());
        };
        let name = name.trim_start_matches('/');
        // python: re.search("([^/]+)(/.*)", name); `.` stops at a newline
        if let Some(slash) = name.find('/') {
            let rest = &name[slash..];
            let rest = rest.find('\n').map_or(rest, |nl| &rest[..nl]);
            let mut wrapped = Map::default();
            wrapped.insert(rest.to_owned(), value);
            self.child(
                idx,
                name[..slash].to_owned(),
                Some(Value::Map(Box::new(wrapped))),
            )?;
        } else {
            self.child(idx, name.to_owned(), Some(value))?;
        }
        Ok(())
    }

    /// Validate and store the `/` directives of node `idx` (spec A.4.1).
    fn directives(&mut self, idx: usize, directives: Value) -> Result<()> {
        let node = self.arena[idx].name.clone();
        let pairs: Vec<(String, Value)> = match directives {
            Value::Map(map) => map.into_iter().collect(),
            Value::KeyedMap(pairs) => pairs.into_iter().map(|(k, v)| (k.py_str(), v)).collect(),
            other => {
                return Err(Error::new(
                    ErrorKind::FormatError,
                    format!(
                        "Invalid fmf directive in '{node}': Should be a 'dict', got a '{}' instead.",
                        other.py_type_name()
                    ),
                ));
            }
        };
        let mut inherit = None;
        let mut select = None;
        for (key, value) in &pairs {
            let slot = match key.as_str() {
                "inherit" => &mut inherit,
                "select" => &mut select,
                _ => {
                    return Err(Error::new(
                        ErrorKind::FormatError,
                        format!("Unknown fmf directive '{key}' in '{node}'."),
                    ));
                }
            };
            match value {
                Value::Bool(b) => *slot = Some(*b),
                other => {
                    return Err(Error::new(
                        ErrorKind::FormatError,
                        format!(
                            "Invalid fmf directive '{key}' in '{node}': Should be a 'bool', got a '{}' instead.",
                            other.py_type_name()
                        ),
                    ));
                }
            }
        }
        let raw = &mut self.arena[idx];
        raw.inherit = inherit.or(raw.inherit);
        raw.select = select.or(raw.select);
        Ok(())
    }

    /// Lay the nodes out in climb order (pre-order, siblings sorted by name).
    pub(super) fn layout(self) -> (Vec<RawMeta>, Vec<Map>) {
        let mut arena = self.arena;
        let mut meta = Vec::with_capacity(arena.len());
        let mut raws = Vec::with_capacity(arena.len());
        let mut stack = vec![(0usize, None, false)];
        while let Some((idx, parent, last_child)) = stack.pop() {
            let position = meta.len();
            let node = &mut arena[idx];
            let leaf = node.children.is_empty();
            meta.push(RawMeta {
                name: std::mem::take(&mut node.name),
                parent,
                inherit: node.inherit != Some(false),
                sources: std::mem::take(&mut node.sources),
                leaf,
                select: node.select.unwrap_or(leaf),
                last_child,
                rank: node.rank.unwrap_or(usize::MAX),
            });
            raws.push(std::mem::take(&mut node.raw));
            let mut children: Vec<(&String, &usize)> = node.children.iter().collect();
            children.sort_unstable_by(|a, b| b.0.cmp(a.0));
            // sorted backwards: the first pushed is climbed last
            stack.extend(
                children
                    .into_iter()
                    .enumerate()
                    .map(|(i, (_, &c))| (c, Some(position), i == 0)),
            );
        }
        (meta, raws)
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
mod tests {
    use std::path::Path;

    use super::super::fixtures::{names, tree};
    use crate::error::ErrorKind;
    use crate::value::Value;

    #[test]
    fn climb_order_sorts_name_segments() {
        let (_dir, tree) = tree(&[
            ("main.fmf", "/a-b: {k: 1}\n/a:\n  /x: {k: 2}\n"),
            ("b.fmf", "k: 3\n"),
        ]);
        let tree = tree.unwrap();
        assert_eq!(names(&tree, true), vec!["/", "/a", "/a/x", "/a-b", "/b"]);
        assert_eq!(names(&tree, false), vec!["/a/x", "/a-b", "/b"]);
        assert_eq!(tree.find("/a").map(|n| n.leaf), Some(false));
    }

    #[test]
    fn virtual_children_and_sources() {
        let (dir, tree) = tree(&[
            (
                "main.fmf",
                "x: 1\n/a/b/c: {y: 2}\n//d: {z: 3}\n/e/: {select: true}\n",
            ),
            ("f.fmf", "w: 4\n"),
            ("f/main.fmf", "v: 5\n"),
            ("empty/nothing.txt", ""),
        ]);
        let tree = tree.unwrap();
        assert_eq!(
            names(&tree, true),
            vec!["/", "/a", "/a/b", "/a/b/c", "/d", "/e", "/f"]
        );
        let c = tree.find("/a/b/c").unwrap();
        assert_eq!(c.data.get("y"), Some(&Value::Int(2)));
        assert_eq!(c.data.get("x"), Some(&Value::Int(1)));
        assert!(tree.find("/e").unwrap().select);
        let f = tree.find("/f").unwrap();
        let rel: Vec<_> = f
            .sources
            .iter()
            .map(|s| s.strip_prefix(dir.path()).unwrap())
            .collect();
        assert_eq!(
            rel,
            vec![
                Path::new("main.fmf"),
                Path::new("f.fmf"),
                Path::new("f/main.fmf")
            ]
        );
        assert_eq!(f.data.get("w"), Some(&Value::Int(4)));
        assert_eq!(f.data.get("v"), Some(&Value::Int(5)));
    }

    #[test]
    fn directive_errors() {
        for (text, message) in [
            (
                "/: x\n",
                "Invalid fmf directive in '/': Should be a 'dict', got a 'str' instead.",
            ),
            (
                "/: null\n",
                "Invalid fmf directive in '/': Should be a 'dict', got a 'NoneType' instead.",
            ),
            (
                "/c:\n  /: {inherit: no}\n",
                "Invalid fmf directive 'inherit' in '/c': Should be a 'bool', got a 'str' instead.",
            ),
            ("/: {weird: 1}\n", "Unknown fmf directive 'weird' in '/'."),
            ("~: 1\n", "Invalid key 'None'."),
        ] {
            let (_dir, tree) = tree(&[("main.fmf", text)]);
            let error = tree.unwrap_err();
            assert_eq!(
                (error.kind(), error.message()),
                (ErrorKind::FormatError, message),
                "{text}"
            );
        }
        for text in [
            "[a, b]\n",
            "scalar\n",
            "1: x\n",
            "/child: hello\n",
            "/child: [1]\n",
        ] {
            let (_dir, tree) = tree(&[("main.fmf", text)]);
            assert_eq!(tree.unwrap_err().kind(), ErrorKind::FormatError, "{text}");
        }
    }
}
