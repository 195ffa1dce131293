//! The raw tree: each node's own data in climb order, and the visits that
//! run inheritance with a stack of the ancestors' data.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use super::build::{Builder, RawNode, parse_all, thread_count};
use super::walk::{Walker, find_root, read_config, read_version};
use super::{Node, Skipped};
use crate::error::{Error, ErrorKind, Result};
use crate::merge;
use crate::value::{Map, Value};

/// A loaded tree before inheritance: each node's own (raw) data as its
/// files gave it, in climb order. [`RawTree::into_visit`] and
/// [`RawTree::visit`] compute the inherited data node by node, keeping only
/// the ancestors' data alive, so a caller that needs few nodes (test
/// discovery) never holds every node's inherited data at once;
/// [`Tree::load`](super::Tree::load) collects all of them.
#[derive(Debug, Clone)]
pub struct RawTree {
    root: PathBuf,
    /// Node facts, in climb order.
    meta: Vec<RawMeta>,
    /// Own data of each node (suffixed keys kept), parallel to `meta`.
    raws: Vec<Map>,
    /// Directories the walk could not read.
    skipped: Vec<Skipped>,
}

#[derive(Debug, Clone)]
pub(super) struct RawMeta {
    pub(super) name: String,
    /// Climb index of the parent.
    pub(super) parent: Option<usize>,
    /// Not `inherit: false`.
    pub(super) inherit: bool,
    /// Own source files, in loading order.
    pub(super) sources: Vec<PathBuf>,
    pub(super) leaf: bool,
    pub(super) select: bool,
    /// The last of its parent's children: the parent's data is no longer
    /// needed after this node inherits it, so it is moved, not copied.
    pub(super) last_child: bool,
    /// When python fmf merges this node (its inheritance order): the
    /// reported merge error is the first one in this order.
    pub(super) rank: usize,
}

/// One node as [`RawTree::visit`] hands it out: the data is inherited and
/// merged (not adjusted). Leaves own their data and sources (free to take
/// with `into_owned`); branches lend theirs, their children still need it.
#[derive(Debug)]
pub struct Visited<'a> {
    /// Full node name.
    pub name: &'a str,
    /// The data after inheritance.
    pub data: Cow<'a, Map>,
    /// Source files, parents' first.
    pub sources: Cow<'a, [PathBuf]>,
    /// Whether the node has no children.
    pub leaf: bool,
    /// The `select` directive, or `leaf` when none was given.
    pub select: bool,
}

impl RawTree {
    /// Find the tree root from `path` (walking up to the directory holding
    /// `.fmf/`), walk it and read every fmf file (in parallel), without
    /// running inheritance. Errors are those of
    /// [`Tree::load`](super::Tree::load) except merge errors, which the
    /// visits report.
    pub fn load(path: &Path) -> Result<RawTree> {
        if path.as_os_str().is_empty() {
            return Err(Error::new(
                ErrorKind::GeneralError,
                "No data or parent provided to initialize the tree.",
            ));
        }
        let root = find_root(path)?;
        read_version(&root)?;
        let include = read_config(&root)?;
        // The walk does not depend on file contents: list every step first,
        // parse the files on all cores, then build in walk order so the
        // first error reported is still the first one python would meet.
        let mut walker = Walker {
            include: &include,
            symlink_dirs: Vec::new(),
            steps: Vec::new(),
            files: Vec::new(),
            skipped: Vec::new(),
        };
        walker.walk(&root, None);
        let Walker {
            steps,
            files,
            skipped,
            ..
        } = walker;
        let parsed = parse_all(&files);
        drop(files);
        let mut builder = Builder {
            arena: vec![RawNode::new("/".to_owned())],
            next_rank: 0,
        };
        builder.replay(steps, parsed)?;
        // only unmerged when the root directory itself could not be walked
        builder.mark(0);
        // the layout copies the nodes: no spare room meanwhile
        builder.arena.shrink_to_fit();
        let (meta, raws) = builder.layout();
        Ok(RawTree {
            root,
            meta,
            raws,
            skipped,
        })
    }

    /// The tree's root directory (the one holding `.fmf/`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directories the walk could not read and skipped (as python fmf
    /// skips them), for the caller to warn about.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.meta.len()
    }

    /// Whether the tree has no node (never: the root is always there).
    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    /// `Some(select)` for the node with exactly this name: whether it is a
    /// selected node (a leaf, or `select: true`).
    pub fn find_select(&self, name: &str) -> Option<bool> {
        self.meta.iter().find(|m| m.name == name).map(|m| m.select)
    }

    /// The inherited data of one node, computed along its ancestors only.
    /// `None` when no node has this name.
    pub fn find(&self, name: &str) -> Option<Result<Node>> {
        let index = self.meta.iter().position(|m| m.name == name)?;
        let mut chain = vec![index];
        while let Some(parent) = self.meta[*chain.last()?].parent {
            chain.push(parent);
        }
        let mut data = Map::default();
        let mut sources: Vec<PathBuf> = Vec::new();
        for &i in chain.iter().rev() {
            let meta = &self.meta[i];
            if !meta.inherit {
                data = Map::default();
                sources.clear();
            } else {
                data = inherited(&data, &self.raws[i]);
            }
            sources.extend(meta.sources.iter().cloned());
            if let Err(error) = merge::merge_special(&mut data, self.raws[i].clone(), &meta.name) {
                return Some(Err(in_last_source(error, &sources)));
            }
        }
        let meta = &self.meta[index];
        Some(Ok(Node {
            name: meta.name.clone(),
            data,
            sources,
            leaf: meta.leaf,
            select: meta.select,
        }))
    }

    /// Call `f` for every node in climb order with its inherited data (the
    /// raw data is copied; see [`RawTree::into_visit`]). Every node is
    /// visited; then the first merge error in python's inheritance order,
    /// if any, is returned (a node below a failed merge gets partly merged
    /// data, as python's would be).
    pub fn visit(&self, f: impl FnMut(Visited<'_>)) -> Result<()> {
        let all = 0..self.meta.len();
        merge_result(visit_nodes(
            &self.meta,
            all,
            Vec::new(),
            |i| self.raws[i].clone(),
            f,
        ))
    }

    /// [`RawTree::visit`] that consumes the tree, so the raw data moves into
    /// the merged data instead of being copied.
    pub fn into_visit(self, f: impl FnMut(Visited<'_>)) -> Result<()> {
        let mut raws = self.raws;
        let all = 0..self.meta.len();
        merge_result(visit_nodes(
            &self.meta,
            all,
            Vec::new(),
            |i| std::mem::take(&mut raws[i]),
            f,
        ))
    }

    /// [`RawTree::into_visit`] on every core: the nodes are split into
    /// consecutive runs in climb order, each visited by its own thread with
    /// its own state made by `start`. The states come back in node order:
    /// the caller combines them as if one state had seen every node. On a
    /// merge error, the one a single visit would report is returned.
    pub fn into_visit_split<S: Send>(
        self,
        start: impl Fn() -> S + Sync,
        f: impl Fn(&mut S, Visited<'_>) + Sync,
    ) -> Result<Vec<S>> {
        let count = self.meta.len();
        // below a few thousand nodes a thread costs more than it saves
        let threads = thread_count().min(count / 2048 + 1);
        let bounds: Vec<usize> = (0..=threads).map(|t| t * count / threads).collect();
        let stacks: Vec<_> = bounds[..threads]
            .iter()
            .map(|&first| self.ancestors(first))
            .collect();
        let RawTree { meta, mut raws, .. } = self;
        let mut parts = Vec::with_capacity(threads);
        for &bound in bounds[1..threads].iter().rev() {
            parts.push(raws.split_off(bound));
        }
        parts.push(raws);
        parts.reverse();
        let meta = &meta;
        let (start, f) = (&start, &f);
        let run = move |range: std::ops::Range<usize>, mut part: Vec<Map>, stack| {
            let mut state = start();
            let offset = range.start;
            let error = visit_nodes(
                meta,
                range,
                stack,
                |i| std::mem::take(&mut part[i - offset]),
                |node| f(&mut state, node),
            );
            (state, error)
        };
        let results = std::thread::scope(|scope| {
            let mut jobs = parts.into_iter().zip(stacks).enumerate();
            let first = jobs.next();
            let workers: Vec<_> = jobs
                .map(|(t, (part, stack))| {
                    let range = bounds[t]..bounds[t + 1];
                    scope.spawn(move || run(range, part, stack))
                })
                .collect();
            let mut results = Vec::with_capacity(threads);
            if let Some((_, (part, stack))) = first {
                results.push(run(bounds[0]..bounds[1], part, stack));
            }
            for worker in workers {
                match worker.join() {
                    Ok(result) => results.push(result),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            results
        });
        let mut states = Vec::with_capacity(threads);
        let mut first_error: Option<(usize, Error)> = None;
        for (state, error) in results {
            states.push(state);
            if let Some((rank, error)) = error
                && first_error.as_ref().is_none_or(|(known, _)| rank < *known)
            {
                first_error = Some((rank, error));
            }
        }
        match first_error {
            Some((_, error)) => Err(error),
            None => Ok(states),
        }
    }

    /// The visit stack just before node `index`: its ancestors' inherited
    /// data, root first (merge errors are left to the node's own visit).
    fn ancestors(&self, index: usize) -> Vec<(usize, Map, Vec<PathBuf>)> {
        let mut chain = Vec::new();
        let mut next = self.meta.get(index).and_then(|m| m.parent);
        while let Some(i) = next {
            chain.push(i);
            next = self.meta[i].parent;
        }
        let mut stack: Vec<(usize, Map, Vec<PathBuf>)> = Vec::with_capacity(chain.len());
        for &i in chain.iter().rev() {
            let node = &self.meta[i];
            let (mut data, mut sources) = match stack.last() {
                Some((_, parent, parent_sources)) if node.inherit => {
                    (inherited(parent, &self.raws[i]), parent_sources.clone())
                }
                _ => (Map::default(), Vec::new()),
            };
            sources.extend(node.sources.iter().cloned());
            let _ = merge::merge_special(&mut data, self.raws[i].clone(), &node.name);
            stack.push((i, data, sources));
        }
        stack
    }
}

fn merge_result(error: Option<(usize, Error)>) -> Result<()> {
    match error {
        Some((_, error)) => Err(error),
        None => Ok(()),
    }
}

fn in_last_source(error: Error, sources: &[PathBuf]) -> Error {
    match sources.last() {
        Some(source) => error.in_file(source),
        None => error,
    }
}

/// Pre-order inheritance with a stack of the ancestors' merged data.
/// Visit the nodes of `range` (climb order); `stack` holds the ancestors of
/// its first node. Returns the first merge error in python's order, with
/// its rank.
fn visit_nodes(
    meta: &[RawMeta],
    range: std::ops::Range<usize>,
    mut stack: Vec<(usize, Map, Vec<PathBuf>)>,
    mut take_raw: impl FnMut(usize) -> Map,
    mut f: impl FnMut(Visited<'_>),
) -> Option<(usize, Error)> {
    let mut first_error: Option<(usize, Error)> = None;
    for (i, node) in meta.iter().enumerate().take(range.end).skip(range.start) {
        while stack.last().is_some_and(|top| Some(top.0) != node.parent) {
            stack.pop();
        }
        let raw = take_raw(i);
        let (mut data, mut sources) = match stack.last_mut() {
            Some((_, parent, parent_sources)) if node.inherit && node.parent.is_some() => {
                if node.last_child {
                    let mut data = std::mem::take(parent);
                    replace_with_placeholders(&mut data, &raw);
                    (data, std::mem::take(parent_sources))
                } else {
                    (inherited(parent, &raw), parent_sources.clone())
                }
            }
            _ => (Map::default(), Vec::new()),
        };
        sources.extend(node.sources.iter().cloned());
        if let Err(error) = merge::merge_special(&mut data, raw, &node.name)
            && first_error
                .as_ref()
                .is_none_or(|(rank, _)| node.rank < *rank)
        {
            first_error = Some((node.rank, in_last_source(error, &sources)));
        }
        if node.leaf {
            f(Visited {
                name: &node.name,
                data: Cow::Owned(data),
                sources: Cow::Owned(sources),
                leaf: true,
                select: node.select,
            });
        } else {
            f(Visited {
                name: &node.name,
                data: Cow::Borrowed(&data),
                sources: Cow::Borrowed(&sources),
                leaf: false,
                select: node.select,
            });
            stack.push((i, data, sources));
        }
    }
    first_error
}

/// A copy of the parent's data for a child whose raw data is `raw`. A key
/// the child sets plainly (and touches with no suffix) is replaced anyway,
/// so its value is not copied; a placeholder keeps python's key order.
fn inherited(parent: &Map, raw: &Map) -> Map {
    parent
        .iter()
        .map(|(k, v)| {
            let value = if replaced(k, raw) {
                Value::Null
            } else {
                v.clone()
            };
            (k.clone(), value)
        })
        .collect()
}

/// [`inherited`] on the parent's own data (its last child takes it).
fn replace_with_placeholders(data: &mut Map, raw: &Map) {
    for (k, v) in data.iter_mut() {
        if replaced(k, raw) {
            *v = Value::Null;
        }
    }
}

/// Whether `raw` sets `key` plainly and touches it no other way.
fn replaced(key: &str, raw: &Map) -> bool {
    raw.contains_key(key)
        && raw
            .keys()
            .filter(|k| k.starts_with(key) && merge::split_suffix(k).0 == key)
            .count()
            == 1
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
mod tests {
    use super::super::fixtures::{tree, write};
    use super::*;

    #[test]
    fn inherit_false_and_suffixes() {
        let (_dir, tree) = tree(&[(
            "main.fmf",
            "tag+: [root]\n/child:\n  /: {inherit: false}\n  own: 1\n  /grand:\n    tag+: [g]\n",
        )]);
        let tree = tree.unwrap();
        let root = tree.find("/").unwrap();
        assert_eq!(
            root.data.get("tag"),
            Some(&Value::Seq(vec![Value::Str("root".into())]))
        );
        let child = tree.find("/child").unwrap();
        assert!(!child.data.contains_key("tag"));
        assert!(child.sources.is_empty());
        let grand = tree.find("/child/grand").unwrap();
        assert_eq!(grand.data.get("own"), Some(&Value::Int(1)));
        assert_eq!(
            grand.data.get("tag"),
            Some(&Value::Seq(vec![Value::Str("g".into())]))
        );
    }

    /// What a visit hands out, comparable.
    fn visited(node: Visited<'_>) -> (String, Map, Vec<PathBuf>, bool, bool) {
        let Visited {
            name,
            data,
            sources,
            leaf,
            select,
        } = node;
        (
            name.to_owned(),
            data.into_owned(),
            sources.into_owned(),
            leaf,
            select,
        )
    }

    #[test]
    fn split_visits_match_one_visit() {
        let (_dir, _) = tree(&[]);
        let dir = _dir.path();
        write(dir, "main.fmf", "tag: [r]\nx: 1\n");
        write(
            dir,
            "a/main.fmf",
            "tag+: [a]\n/v1: {y: 1}\n/v2: {tag+: [v2]}\n",
        );
        write(
            dir,
            "a/b/main.fmf",
            "/: {inherit: false}\nz: 3\n/w: {q: 1}\n",
        );
        write(dir, "c.fmf", "x: 2\n/d/e: {k: v}\n");
        write(dir, "f/g/h.fmf", "test: t\n");
        let raw = RawTree::load(dir).unwrap();
        let mut whole = Vec::new();
        raw.visit(|node| whole.push(visited(node))).unwrap();
        assert_eq!(whole.len(), raw.len());
        // Every split point gives the same nodes, from the ancestors'
        // stack alone.
        for first in 0..raw.len() {
            let mut part = Vec::new();
            let error = visit_nodes(
                &raw.meta,
                first..raw.len(),
                raw.ancestors(first),
                |i| raw.raws[i].clone(),
                |node| part.push(visited(node)),
            );
            assert!(error.is_none());
            assert_eq!(part, whole[first..], "split at {first}");
        }
        let states = raw
            .clone()
            .into_visit_split(Vec::new, |nodes, node| nodes.push(visited(node)))
            .unwrap();
        assert_eq!(states.concat(), whole);
    }

    #[test]
    fn split_visits_report_the_first_merge_error() {
        let (dir, tree) = tree(&[
            ("main.fmf", "tag: [r]\n"),
            ("a.fmf", "tag-~: 5\n"),
            ("b/main.fmf", "tag~: 6\n"),
        ]);
        let single = tree.unwrap_err();
        let split = RawTree::load(dir.path())
            .unwrap()
            .into_visit_split(|| (), |_, _| {})
            .unwrap_err();
        assert_eq!(split.to_string(), single.to_string());
    }
}
