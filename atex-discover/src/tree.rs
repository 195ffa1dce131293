//! The fmf tree: root discovery, directory walk, virtual children,
//! directives, inheritance, climb order, adjust and prune (spec A.1-A.9,
//! A.14), with python fmf 1.7 semantics.
//!
//! Loading has three steps: the directory walk lists the fmf files and the
//! order python would meet them in (it never depends on file contents), the
//! files are read and parsed on every core, and the raw nodes are built by
//! replaying the walk, so the first error reported is the one python meets
//! first. [`RawTree`] keeps each node's own data in climb order (pre-order,
//! siblings sorted by name segment); its visits run inheritance node by node
//! with a stack of the ancestors' data, and [`Tree::load`] keeps every
//! node's result.
//!
//! Deliberate deviations from python fmf (see `docs/deviations.md`):
//! - a child value (a `/child:` key or a whole non-`main` file) that is not a
//!   mapping or null is a format error; python treats a string as a
//!   directory path relative to the CWD and crashes on other types;
//! - non-string keys at node level, and a list or scalar `main.fmf`, are
//!   format errors (python crashes);
//! - values are never shared: YAML aliases and adjust rules are copies.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use indexmap::IndexMap;

use crate::adjust;
use crate::condition;
use crate::context::Context;
use crate::error::{Error, ErrorKind, Result};
use crate::filter::{self, FilterOptions};
use crate::merge;
use crate::pyre;
use crate::value::{Map, Value};
use crate::yaml;

/// Directories python fmf never walks.
const IGNORED_DIRECTORIES: [&str; 3] = ["/dev", "/proc", "/sys"];

/// One node of a loaded tree.
#[derive(Debug, Clone)]
pub struct Node {
    /// Full name, `/` for the root, `/a/b` below.
    pub name: String,
    /// The node's data after inheritance (and after adjust once run).
    pub data: Map,
    /// Absolute paths of the source files, parents' first.
    pub sources: Vec<PathBuf>,
    /// Whether the node has no children.
    pub leaf: bool,
    /// The `select` directive, or `leaf` when none was given.
    pub select: bool,
}

/// A loaded fmf tree.
#[derive(Debug, Clone)]
pub struct Tree {
    root: PathBuf,
    /// Nodes in climb order.
    nodes: Vec<Node>,
}

/// What to do with a rule whose dimension is not in the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Undecided {
    /// Skip the rule (fmf's default, and what tmt does).
    #[default]
    Skip,
    /// Fail with a [`ErrorKind::CannotDecide`] error.
    Raise,
}

/// Options of [`Tree::adjust`], as python `Tree.adjust` takes them.
#[derive(Debug, Clone)]
pub struct AdjustOptions {
    /// The data key holding the rules (`adjust`).
    pub key: String,
    /// What to do with undecidable rules.
    pub undecided: Undecided,
    /// Compare context names and versions case-sensitively (tmt: false).
    pub case_sensitive: bool,
    /// Rules applied to every node after its own rules (tmt's
    /// `adjust-tests`); each item should be a mapping.
    pub additional_rules: Vec<Value>,
}

impl Default for AdjustOptions {
    fn default() -> Self {
        AdjustOptions {
            key: "adjust".to_owned(),
            undecided: Undecided::Skip,
            case_sensitive: true,
            additional_rules: Vec::new(),
        }
    }
}

/// Selection criteria of [`Tree::prune`]; every given criterion must hold.
#[derive(Debug, Clone, Default)]
pub struct PruneCriteria {
    /// Keys that must all be present in the data.
    pub keys: Vec<String>,
    /// Python regexes; any must be found (`re.search`) in the node name.
    pub names: Vec<String>,
    /// Source files (relative to the CWD or absolute); any must be among the
    /// node's sources.
    pub sources: Vec<PathBuf>,
    /// fmf filter expressions; all must hold.
    pub filters: Vec<String>,
    /// Condition expressions (the safe subset of spec A.12); all must hold.
    pub conditions: Vec<String>,
}

impl Tree {
    /// Find the tree root from `path` (walking up to the directory holding
    /// `.fmf/`), walk it and run inheritance.
    pub fn load(path: &Path) -> Result<Tree> {
        let raw = RawTree::load(path)?;
        let root = raw.root.clone();
        let mut nodes = Vec::with_capacity(raw.len());
        raw.into_visit(|node| {
            nodes.push(Node {
                name: node.name.to_owned(),
                data: node.data.into_owned(),
                sources: node.sources.into_owned(),
                leaf: node.leaf,
                select: node.select,
            });
        })?;
        Ok(Tree { root, nodes })
    }

    /// The tree's root directory (the one holding `.fmf/`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Nodes in climb order (pre-order, siblings sorted by name segment);
    /// with `whole` false only selected nodes (leaves and `select: true`).
    pub fn climb(&self, whole: bool) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(move |n| whole || n.select)
    }

    /// The node with exactly this name.
    pub fn find(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Apply the context-dependent rules of every node (spec A.9). Each node
    /// uses its own inherited rules; an invalid rule aborts the whole run.
    pub fn adjust(&mut self, context: &Context, options: &AdjustOptions) -> Result<()> {
        let mut context = context.clone();
        context.set_case_sensitive(options.case_sensitive);
        let mut decisions = adjust::Decisions::default();
        for node in &mut self.nodes {
            adjust::adjust_node(
                &mut node.data,
                &node.name,
                &context,
                options,
                &mut decisions,
            )?;
        }
        Ok(())
    }

    /// The climbed nodes that meet every criterion, in climb order. Criteria
    /// are tested in python's order (keys, names, sources, filters,
    /// conditions); a filter or condition that refers to a missing key
    /// means "not selected", any other failure is an error.
    pub fn prune(&self, whole: bool, criteria: &PruneCriteria) -> Result<Vec<&Node>> {
        let names: Vec<LazyRegex<'_>> = criteria.names.iter().map(LazyRegex::new).collect();
        let sources: Vec<PathBuf> = criteria
            .sources
            .iter()
            .map(|s| absolute(s))
            .collect::<Result<_>>()?;
        let conditions: Vec<LazyCondition<'_>> =
            criteria.conditions.iter().map(LazyCondition::new).collect();
        let mut selected = Vec::new();
        'nodes: for node in self.climb(whole) {
            if !criteria.keys.iter().all(|k| node.data.contains_key(k)) {
                continue;
            }
            if !names.is_empty() {
                // python builds the whole list before `any`
                let mut any = false;
                for name in &names {
                    any |= name.get()?.search(&node.name);
                }
                if !any {
                    continue;
                }
            }
            if !sources.is_empty() && !node.sources.iter().any(|s| sources.contains(s)) {
                continue;
            }
            let options = FilterOptions {
                sensitive: true,
                regexp: true,
                name: Some(node.name.as_str()),
            };
            let mut all = true;
            for expr in &criteria.filters {
                match filter::filter(expr, &node.data, options) {
                    Ok(result) => all &= result,
                    Err(filter::FilterError::Filter(_)) => continue 'nodes,
                    Err(e @ filter::FilterError::Regex(_)) => {
                        return Err(Error::new(
                            ErrorKind::GeneralError,
                            format!("Invalid filter '{expr}': {e}"),
                        ));
                    }
                }
            }
            if !all {
                continue;
            }
            for condition in &conditions {
                match condition.get()?.evaluate(&node.data) {
                    Ok(result) => all &= result,
                    Err(condition::ConditionError::Missing(_)) => continue 'nodes,
                    Err(e) => {
                        return Err(Error::new(
                            ErrorKind::GeneralError,
                            format!("Invalid condition '{}': {e}", condition.source),
                        ));
                    }
                }
            }
            if all {
                selected.push(node);
            }
        }
        Ok(selected)
    }
}

/// A name regex compiled on first use: python compiles inside `re.search`,
/// so a bad pattern is only an error once some node reaches it.
struct LazyRegex<'a> {
    source: &'a str,
    compiled: OnceCell<std::result::Result<pyre::PyRegex, pyre::PyReError>>,
}

impl<'a> LazyRegex<'a> {
    fn new(source: &'a String) -> Self {
        LazyRegex {
            source,
            compiled: OnceCell::new(),
        }
    }

    fn get(&self) -> Result<&pyre::PyRegex> {
        self.compiled
            .get_or_init(|| pyre::compile(self.source))
            .as_ref()
            .map_err(|e| {
                Error::new(
                    ErrorKind::GeneralError,
                    format!("Invalid name pattern '{}': {e}", self.source),
                )
            })
    }
}

/// A condition parsed on first use (python parses inside `eval`).
struct LazyCondition<'a> {
    source: &'a str,
    parsed: OnceCell<std::result::Result<condition::Condition, condition::ConditionError>>,
}

impl<'a> LazyCondition<'a> {
    fn new(source: &'a String) -> Self {
        LazyCondition {
            source,
            parsed: OnceCell::new(),
        }
    }

    fn get(&self) -> Result<&condition::Condition> {
        self.parsed
            .get_or_init(|| condition::Condition::parse(self.source))
            .as_ref()
            .map_err(|e| {
                Error::new(
                    ErrorKind::GeneralError,
                    format!("Invalid condition '{}': {e}", self.source),
                )
            })
    }
}

/// A loaded tree before inheritance: each node's own (raw) data as its
/// files gave it, in climb order. [`RawTree::into_visit`] and
/// [`RawTree::visit`] compute the inherited data node by node, keeping only
/// the ancestors' data alive, so a caller that needs few nodes (test
/// discovery) never holds every node's inherited data at once;
/// [`Tree::load`] collects all of them.
#[derive(Debug, Clone)]
pub struct RawTree {
    root: PathBuf,
    /// Node facts, in climb order.
    meta: Vec<RawMeta>,
    /// Own data of each node (suffixed keys kept), parallel to `meta`.
    raws: Vec<Map>,
}

#[derive(Debug, Clone)]
struct RawMeta {
    name: String,
    /// Climb index of the parent.
    parent: Option<usize>,
    /// Not `inherit: false`.
    inherit: bool,
    /// Own source files, in loading order.
    sources: Vec<PathBuf>,
    leaf: bool,
    select: bool,
    /// The last of its parent's children: the parent's data is no longer
    /// needed after this node inherits it, so it is moved, not copied.
    last_child: bool,
    /// When python fmf merges this node (its inheritance order): the
    /// reported merge error is the first one in this order.
    rank: usize,
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
    /// running inheritance. Errors are those of [`Tree::load`] except merge
    /// errors, which the visits report.
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
        };
        walker.walk(&root, None);
        let Walker { steps, files, .. } = walker;
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
        Ok(RawTree { root, meta, raws })
    }

    /// The tree's root directory (the one holding `.fmf/`).
    pub fn root(&self) -> &Path {
        &self.root
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
        let mut data = Map::new();
        let mut sources: Vec<PathBuf> = Vec::new();
        for &i in chain.iter().rev() {
            let meta = &self.meta[i];
            if !meta.inherit {
                data = Map::new();
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
                _ => (Map::new(), Vec::new()),
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
            _ => (Map::new(), Vec::new()),
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

/// One step of the directory walk, replayed in order by [`Builder`].
#[derive(Debug)]
enum Step {
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
struct Walker<'a> {
    /// `explore.include`, or the error python raises on first use.
    include: &'a std::result::Result<Vec<String>, Error>,
    /// Realpaths of symlinked directories already entered (tree-wide, as
    /// python fmf does it: spec A.6).
    symlink_dirs: Vec<PathBuf>,
    steps: Vec<Step>,
    files: Vec<PathBuf>,
}

impl Walker<'_> {
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
    fn walk(&mut self, dir: &Path, entered: Option<String>) -> Walk {
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
        // An unreadable directory is skipped silently, as os.walk does.
        let Ok(entries) = fs::read_dir(dir) else {
            if nested(&entered) {
                return Walk::Nested;
            }
            enter(self, entered);
            return Walk::Done;
        };
        let mut files = Vec::new();
        let mut dirs: Vec<(String, bool)> = Vec::new();
        for entry in entries.flatten() {
            // Names that are not UTF-8 cannot be fmf node names.
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let (is_dir, is_link) = match entry.file_type() {
                Ok(t) if t.is_dir() => (true, false),
                Ok(t) if t.is_symlink() => {
                    (fs::metadata(entry.path()).is_ok_and(|m| m.is_dir()), true)
                }
                _ => (false, false),
            };
            if is_dir {
                if entered.is_some() && name == ".fmf" {
                    return Walk::Nested;
                }
                dirs.push((name, is_link));
            } else if name.ends_with(".fmf") {
                files.push(name);
            }
        }
        enter(self, entered);
        files.sort_unstable();
        if let Some(pos) = files.iter().position(|f| f == "main.fmf") {
            let main = files.remove(pos);
            files.insert(0, main);
        }
        for file in files {
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
enum Walk {
    Done,
    /// A [`Step::Fail`] ends the whole walk.
    Stop,
    /// The directory holds a tree of its own: nothing was listed.
    Nested,
}

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
fn thread_count() -> usize {
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
fn parse_all(files: &[PathBuf]) -> Vec<Option<Result<Value>>> {
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
struct RawNode {
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
    fn new(name: String) -> Self {
        RawNode {
            name,
            children: IndexMap::new(),
            raw: Map::new(),
            inherit: None,
            select: None,
            sources: Vec::new(),
            updated: false,
            rank: None,
        }
    }
}

struct Builder {
    arena: Vec<RawNode>,
    next_rank: usize,
}

impl Builder {
    /// Replay the walk: load the parsed files into nodes in walk order.
    fn replay(&mut self, steps: Vec<Step>, mut parsed: Vec<Option<Result<Value>>>) -> Result<()> {
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
    fn mark(&mut self, idx: usize) {
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
                    *raw = map;
                    return Ok(());
                }
                if raw.is_empty() {
                    *raw = Map::with_capacity(plain);
                }
                for (key, value) in map {
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
            let mut wrapped = Map::new();
            wrapped.insert(rest.to_owned(), value);
            self.child(idx, name[..slash].to_owned(), Some(Value::Map(wrapped)))?;
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
    fn layout(self) -> (Vec<RawMeta>, Vec<Map>) {
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

/// `os.path.abspath`: absolute against the CWD, `.` and `..` resolved
/// lexically (symlinks are not resolved).
pub(crate) fn absolute_path(path: &Path) -> Result<PathBuf> {
    absolute(path)
}

fn absolute(path: &Path) -> Result<PathBuf> {
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
fn find_root(path: &Path) -> Result<PathBuf> {
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
fn read_version(root: &Path) -> Result<()> {
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
fn read_config(root: &Path) -> Result<std::result::Result<Vec<String>, Error>> {
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
    use super::*;

    fn write(dir: &Path, file: &str, text: &str) {
        let path = dir.join(file);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn tree(files: &[(&str, &str)]) -> (tempfile::TempDir, Result<Tree>) {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), ".fmf/version", "1\n");
        for (file, text) in files {
            write(dir.path(), file, text);
        }
        let tree = Tree::load(dir.path());
        (dir, tree)
    }

    fn names(tree: &Tree, whole: bool) -> Vec<&str> {
        tree.climb(whole).map(|n| n.name.as_str()).collect()
    }

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
            Value::Map(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
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
    fn prune_criteria() {
        let (_dir, tree) = tree(&[
            ("a.fmf", "tag: [x]\nmanual: false\n"),
            ("b.fmf", "tag: [y]\n"),
            ("c.fmf", "other: 1\n"),
        ]);
        let tree = tree.unwrap();
        let pick = |criteria: PruneCriteria| -> Vec<String> {
            tree.prune(false, &criteria)
                .unwrap()
                .iter()
                .map(|n| n.name.clone())
                .collect()
        };
        assert_eq!(
            pick(PruneCriteria {
                keys: vec!["tag".into()],
                ..Default::default()
            }),
            ["/a", "/b"]
        );
        assert_eq!(
            pick(PruneCriteria {
                names: vec!["[bc]$".into()],
                ..Default::default()
            }),
            ["/b", "/c"]
        );
        assert_eq!(
            pick(PruneCriteria {
                filters: vec!["tag: y".into()],
                ..Default::default()
            }),
            ["/b"]
        );
        assert_eq!(
            pick(PruneCriteria {
                conditions: vec!["manual is False".into()],
                ..Default::default()
            }),
            ["/a"]
        );
        let bad = PruneCriteria {
            conditions: vec!["manual.x".into()],
            ..Default::default()
        };
        assert!(tree.prune(false, &bad).is_err());
    }

    #[test]
    fn adjust_rules() {
        let (_dir, tree) = tree(&[(
            "main.fmf",
            "adjust:\n  - when: distro == fedora\n    x: 1\n    continue: false\n  - x: 2\n/t: {}\n",
        )]);
        let mut tree = tree.unwrap();
        let mut dims = IndexMap::new();
        dims.insert("distro".to_owned(), vec!["fedora-41".to_owned()]);
        let extra = Value::Map([("y".to_owned(), Value::Int(3))].into_iter().collect());
        let options = AdjustOptions {
            additional_rules: vec![extra],
            ..Default::default()
        };
        tree.adjust(&Context::new(dims), &options).unwrap();
        let t = tree.find("/t").unwrap();
        assert_eq!(t.data.get("x"), Some(&Value::Int(1)));
        assert_eq!(t.data.get("y"), Some(&Value::Int(3)));
        assert!(t.data.contains_key("adjust"));
        let raise = AdjustOptions {
            undecided: Undecided::Raise,
            ..Default::default()
        };
        let error = tree.adjust(&Context::default(), &raise).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::CannotDecide);
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
