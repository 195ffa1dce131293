//! Test selection inside one `how: fmf` discover section: which nodes are
//! tests, name patterns, filters, excludes, includes and `order`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};
use crate::filter::{FilterError, FilterOptions, check_regexes, filter};
use crate::pyre::{self, PyRegex};
use crate::tmt::plan::{DEFAULT_ORDER, Phase};
use crate::tmt::{data_error, locate, test::test_path};
use crate::tree::Node;
use crate::value::{Map, Value};

/// Selection given on the command line, on top of the section's own keys.
#[derive(Debug, Clone, Default)]
pub struct Criteria {
    /// `--test` regexes: a test must match at least one (`re.search`).
    pub names: Vec<String>,
    /// `--filter` expressions: all must hold.
    pub filters: Vec<String>,
    /// `--exclude` regexes: a test matching any is dropped.
    pub excludes: Vec<String>,
}

/// Where the plan that owns a section is defined, for error locations.
#[derive(Debug, Clone, Copy)]
pub struct PlanSource<'a> {
    /// The plan name.
    pub name: &'a str,
    /// The plan's source files.
    pub sources: &'a [PathBuf],
}

/// Select the tests of one section from `nodes` (selected nodes of the
/// section's adjusted tree, in climb order).
///
/// 1. Keep nodes with `test`, without `enabled: false`, `manual: true` or
///    `story` (ATEX).
/// 2. With section `test` patterns, concatenate each pattern's matches,
///    each group stably sorted by `order` (tmt: duplicates and pattern
///    order kept); without, all tests stably sorted by `order`.
/// 3. Section `filter` and `--filter` must all hold, on tmt-normalized
///    metadata ([`filter_data`]); a filter that raises fmf's
///    `FilterError` deselects the test, as in tmt.
/// 4. `--test` must match (deviation: ATEX adds `--test` names to the
///    section's names, which widens the selection; here they narrow it).
/// 5. Section `exclude` and `--exclude` drop tests (`re.search`).
/// 6. Section `include` keeps matching tests once each, in order.
pub fn select<'n>(
    nodes: &[&'n Node],
    root: &Path,
    section: &Phase,
    criteria: &Criteria,
    plan: PlanSource<'_>,
) -> Result<Vec<&'n Node>> {
    let mut selector = Selector::new(root, section, criteria, plan)?;
    let mut offered = Vec::new();
    for node in nodes {
        if selector
            .offer(&node.name, &node.sources, &node.data, true)
            .is_some()
        {
            offered.push(*node);
        }
    }
    // `offer` numbers the nodes it keeps 0, 1, 2... in offering order.
    Ok(selector
        .finish()?
        .into_iter()
        .filter_map(|i| offered.get(i).copied())
        .collect())
}

/// A filter that raised fmf's `FilterError` (a key missing in the test's
/// data, or a literal without `:`) on some tests, which deselects them as in
/// tmt: shown when nothing is selected, since the filter may be a typo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterNote {
    /// The filter expression.
    pub filter: String,
    /// Whether it is the section's `filter` (else a `--filter`).
    pub from_plan: bool,
    /// fmf's message the first time (`Invalid filter 'nosuchkey'`).
    pub message: String,
    /// On how many tests it raised.
    pub tests: usize,
}

/// What a section's selection saw, to explain an empty selection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectionStats {
    /// The tests offered to the section (nodes with `test`, not disabled,
    /// manual or stories, after adjust).
    pub tests: usize,
    /// The filters that raised on some test, in filter order.
    pub filter_errors: Vec<FilterNote>,
}

/// [`select`] one node at a time: nodes are offered in climb order (so a
/// caller can stream them and drop what is not kept), and
/// [`Selector::finish`] then orders the kept ones exactly as [`select`]
/// does, reporting the same first error.
#[derive(Debug, Clone)]
pub struct Selector<'a> {
    root: &'a Path,
    names: Vec<PyRegex>,
    filters: Vec<String>,
    cli_names: Vec<PyRegex>,
    excludes: Vec<PyRegex>,
    includes: Vec<PyRegex>,
    /// Tests that are candidates (in a `test` pattern's matches, if any).
    entries: Vec<Entry>,
    /// How many offered nodes passed every per-node check.
    passed: usize,
    /// Whether the filters may look a key up, per key name seen.
    needed_keys: HashMap<String, bool>,
    /// The first invalid `order`: selection stops there.
    order_error: Option<Error>,
    /// How many of `filters` are the section's (the rest are `--filter`).
    section_filters: usize,
    /// The plan's name and files, to locate an invalid section filter.
    plan_name: String,
    plan_sources: Vec<PathBuf>,
    section_name: String,
    /// Tests offered (see [`SelectionStats::tests`]).
    offered: usize,
    /// Per filter: fmf's first `FilterError` message and how many tests
    /// it raised on.
    raised: Vec<Option<(String, usize)>>,
}

#[derive(Debug, Clone)]
struct Entry {
    order: i64,
    /// Indices of the section `test` patterns the name matches.
    patterns: Vec<usize>,
    outcome: Outcome,
}

#[derive(Debug, Clone)]
enum Outcome {
    /// Passed every per-node check; the number [`Selector::offer`] gave.
    Pass(usize),
    Drop,
    /// A filter regex is invalid (reported if the node is reached).
    FilterError(Error),
}

impl<'a> Selector<'a> {
    /// Compile the section's and the command line's patterns; errors are
    /// those [`select`] reports first.
    pub fn new(
        root: &'a Path,
        section: &Phase,
        criteria: &Criteria,
        plan: PlanSource<'_>,
    ) -> Result<Selector<'a>> {
        let section_list = |key: &str| -> Result<Vec<String>> {
            patterns(section.data.get(key)).map_err(|message| {
                data_error(
                    ErrorKind::FormatError,
                    plan.name,
                    plan.sources,
                    key,
                    format!("discover phase '{}': {message}", section.name),
                )
            })
        };
        let compile_all = |list: &[String], key: &str| -> Result<Vec<PyRegex>> {
            list.iter()
                .map(|pattern| {
                    pyre::compile(pattern).map_err(|e| {
                        let message = format!(
                            "discover phase '{}': invalid {key} pattern '{pattern}': {e}",
                            section.name
                        );
                        data_error(
                            ErrorKind::FormatError,
                            plan.name,
                            plan.sources,
                            key,
                            message,
                        )
                    })
                })
                .collect()
        };
        let names = compile_all(&section_list("test")?, "test")?;
        let mut filters = section_list("filter")?;
        let section_filters = filters.len();
        filters.extend(criteria.filters.iter().cloned());
        let mut excludes = compile_all(&section_list("exclude")?, "exclude")?;
        excludes.extend(compile_cli(&criteria.excludes, "--exclude")?);
        let includes = compile_all(&section_list("include")?, "include")?;
        let cli_names = compile_cli(&criteria.names, "--test")?;
        let filters_len = filters.len();
        let selector = Selector {
            root,
            names,
            filters,
            cli_names,
            excludes,
            includes,
            entries: Vec::new(),
            passed: 0,
            needed_keys: HashMap::new(),
            order_error: None,
            section_filters,
            plan_name: plan.name.to_owned(),
            plan_sources: plan.sources.to_vec(),
            section_name: section.name.clone(),
            offered: 0,
            raised: vec![None; filters_len],
        };
        // A broken regex is an error even where no test reaches it.
        for (index, expr) in selector.filters.iter().enumerate() {
            if let Err(FilterError::Regex(message)) = check_regexes(expr, true) {
                return Err(selector.invalid_filter(index, &message));
            }
        }
        Ok(selector)
    }

    /// Offer the next node (climb order). Returns `Some(n)` when the node
    /// passes every check that depends on it alone: [`Selector::finish`]
    /// may then name it by `n` (nodes are numbered 0, 1, 2... in order).
    /// The caller keeps what it needs of those nodes only.
    pub fn offer(
        &mut self,
        name: &str,
        sources: &[PathBuf],
        data: &Map,
        select: bool,
    ) -> Option<usize> {
        if !select || !is_test(data) || self.order_error.is_some() {
            return None;
        }
        let order = match order_of(name, sources, data) {
            Ok(order) => order,
            Err(error) => {
                self.order_error = Some(error);
                return None;
            }
        };
        self.offered += 1;
        let patterns: Vec<usize> = self
            .names
            .iter()
            .enumerate()
            .filter(|(_, pattern)| pattern.search(name))
            .map(|(i, _)| i)
            .collect();
        if !self.names.is_empty() && patterns.is_empty() {
            return None;
        }
        let outcome = self.check(name, sources, data);
        let passed = match outcome {
            Outcome::Pass(n) => Some(n),
            _ => None,
        };
        self.entries.push(Entry {
            order,
            patterns,
            outcome,
        });
        passed
    }

    /// Filters, `--test`, excludes and includes, in [`select`]'s order.
    fn check(&mut self, name: &str, sources: &[PathBuf], data: &Map) -> Outcome {
        if !self.filters.is_empty() {
            let filters = &self.filters;
            // The filters only look keys up, so only keys they mention are
            // copied (a key with an escapable character always is). Nodes
            // share their key names: each is checked once.
            let known = RefCell::new(std::mem::take(&mut self.needed_keys));
            let needed = |key: &str| {
                if let Some(&needed) = known.borrow().get(key) {
                    return needed;
                }
                let needed =
                    key.contains(['|', '&', '\\']) || filters.iter().any(|f| f.contains(key));
                known.borrow_mut().insert(key.to_owned(), needed);
                needed
            };
            let data = filter_data_with(name, sources, data, self.root, needed);
            self.needed_keys = known.into_inner();
            let options = FilterOptions {
                sensitive: true,
                regexp: true,
                name: None,
            };
            for (index, expr) in filters.iter().enumerate() {
                match filter(expr, &data, options) {
                    Ok(true) => {}
                    Ok(false) => return Outcome::Drop,
                    Err(FilterError::Filter(message)) => {
                        let raised = &mut self.raised[index];
                        match raised {
                            Some((_, count)) => *count += 1,
                            None => *raised = Some((message, 1)),
                        }
                        return Outcome::Drop;
                    }
                    // An invalid regex is the user's mistake, not a reason
                    // to silently select nothing.
                    Err(FilterError::Regex(message)) => {
                        return Outcome::FilterError(self.invalid_filter(index, &message));
                    }
                }
            }
        }
        if !self.cli_names.is_empty() && !self.cli_names.iter().any(|p| p.search(name)) {
            return Outcome::Drop;
        }
        if self.excludes.iter().any(|p| p.search(name)) {
            return Outcome::Drop;
        }
        if !self.includes.is_empty() && !self.includes.iter().any(|p| p.search(name)) {
            return Outcome::Drop;
        }
        self.passed += 1;
        Outcome::Pass(self.passed - 1)
    }

    /// The error for filter `index` whose regex does not compile: a
    /// section's filter is located in the plan's files.
    fn invalid_filter(&self, index: usize, message: &str) -> Error {
        let expr = &self.filters[index];
        if index >= self.section_filters {
            return Error::new(
                ErrorKind::FilterError,
                format!("invalid --filter '{expr}': {message}"),
            );
        }
        let error = data_error(
            ErrorKind::FilterError,
            &self.plan_name,
            &self.plan_sources,
            "filter",
            format!(
                "discover phase '{}': invalid filter '{expr}': {message}",
                self.section_name
            ),
        );
        // `filter: EXPR` on one line is found exactly; a list item is
        // located at its `filter` key.
        match locate::locate_value(&self.plan_sources, "filter", expr) {
            Some(location) => error.at(location),
            None => error,
        }
    }

    /// What the selection saw so far (see [`SelectionStats`]).
    pub fn stats(&self) -> SelectionStats {
        let filter_errors = self
            .raised
            .iter()
            .enumerate()
            .filter_map(|(index, raised)| {
                let (message, tests) = raised.as_ref()?;
                Some(FilterNote {
                    filter: self.filters[index].clone(),
                    from_plan: index < self.section_filters,
                    message: message.clone(),
                    tests: *tests,
                })
            })
            .collect();
        SelectionStats {
            tests: self.offered,
            filter_errors,
        }
    }

    /// Take in what a copy of this selector was offered of the nodes that
    /// follow (its numbers continue this one's). False when this selector
    /// already stopped at an invalid `order` and ignores them.
    pub fn absorb(&mut self, later: Selector<'_>) -> bool {
        if self.order_error.is_some() {
            return false;
        }
        let offset = self.passed;
        self.entries
            .extend(later.entries.into_iter().map(|mut entry| {
                if let Outcome::Pass(n) = &mut entry.outcome {
                    *n += offset;
                }
                entry
            }));
        self.passed += later.passed;
        self.order_error = later.order_error;
        self.offered += later.offered;
        for (mine, theirs) in self.raised.iter_mut().zip(later.raised) {
            match (mine.as_mut(), theirs) {
                (Some((_, count)), Some((_, more))) => *count += more,
                (None, theirs) => *mine = theirs,
                (Some(_), None) => {}
            }
        }
        true
    }

    /// The kept nodes, by the numbers [`Selector::offer`] gave, in output
    /// order (a node may repeat when several `test` patterns match it).
    pub fn finish(self) -> Result<Vec<usize>> {
        if let Some(error) = self.order_error {
            return Err(error);
        }
        let by_order = |mut indices: Vec<usize>| {
            indices.sort_by_key(|&i| self.entries[i].order);
            indices
        };
        let selected: Vec<usize> = if self.names.is_empty() {
            by_order((0..self.entries.len()).collect())
        } else {
            (0..self.names.len())
                .flat_map(|p| {
                    by_order(
                        (0..self.entries.len())
                            .filter(|&i| self.entries[i].patterns.contains(&p))
                            .collect(),
                    )
                })
                .collect()
        };
        let mut kept: Vec<usize> = Vec::with_capacity(selected.len());
        for i in selected {
            match &self.entries[i].outcome {
                Outcome::FilterError(error) => return Err(error.clone()),
                Outcome::Drop => {}
                Outcome::Pass(n) => {
                    // node names are unique: the number identifies the name
                    if !self.includes.is_empty() && kept.contains(n) {
                        continue;
                    }
                    kept.push(*n);
                }
            }
        }
        Ok(kept)
    }
}

fn compile_cli(patterns: &[String], option: &str) -> Result<Vec<PyRegex>> {
    patterns
        .iter()
        .map(|pattern| {
            pyre::compile(pattern).map_err(|e| {
                Error::new(
                    ErrorKind::GeneralError,
                    format!("invalid {option} pattern '{pattern}': {e}"),
                )
            })
        })
        .collect()
}

/// Whether node data describes a test ATEX runs.
pub fn is_test(data: &Map) -> bool {
    data.contains_key("test")
        && !matches!(data.get("enabled"), Some(Value::Bool(false)))
        && !matches!(data.get("manual"), Some(Value::Bool(true)))
        && !data.contains_key("story")
}

/// The `order` of a node: an integer (tmt: `int(raw)`), default 50.
pub fn order(node: &Node) -> Result<i64> {
    order_of(&node.name, &node.sources, &node.data)
}

fn order_of(name: &str, sources: &[PathBuf], data: &Map) -> Result<i64> {
    let invalid = |text: String| {
        data_error(
            ErrorKind::FormatError,
            name,
            sources,
            "order",
            format!("invalid order '{text}'"),
        )
    };
    match data.get("order") {
        None | Some(Value::Null) => Ok(DEFAULT_ORDER),
        Some(Value::Int(order)) => Ok(*order),
        Some(Value::Str(text)) => text.trim().parse().map_err(|_| invalid(text.clone())),
        Some(other) => Err(invalid(other.py_str())),
    }
}

/// A string or a list of strings (or of `{name: ...}` mappings, whose
/// other keys are ignored).
fn patterns(value: Option<&Value>) -> std::result::Result<Vec<String>, String> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Str(s)) => Ok(vec![s.clone()]),
        Some(Value::Seq(items)) => items
            .iter()
            .map(|item| match item {
                Value::Str(s) => Ok(s.clone()),
                Value::Map(map) => match map.get("name") {
                    Some(Value::Str(s)) => Ok(s.clone()),
                    _ => Err("pattern mappings need a string 'name'".to_owned()),
                },
                other => Err(format!(
                    "patterns must be strings, not {}",
                    other.py_type_name()
                )),
            })
            .collect(),
        Some(other) => Err(format!(
            "patterns must be a string or a list of strings, not {}",
            other.py_type_name()
        )),
    }
}

/// The data tmt filters see (spec B "Filter data"): the node data with the
/// test keys' defaults filled in (`enabled`, `order`, `tag`, `tier`,
/// `duration`, `manual`, `tty`, `framework`, `result`, `require`,
/// `recommend`, `environment`, `contact`, `component`, `summary`,
/// `description`, `path`), `tier` as a string, `tag` as a list, plus `name`,
/// and every bool also as its lowercase string (`[True, "true"]`), so both
/// `enabled: true` and `enabled: True` match.
pub fn filter_data(node: &Node, root: &Path) -> Map {
    filter_data_with(&node.name, &node.sources, &node.data, root, |_| true)
}

/// A test key and its default value.
type KeyDefault = (&'static str, fn() -> Value);

/// [`filter_data`] restricted to the keys `needed` accepts.
fn filter_data_with(
    name: &str,
    sources: &[PathBuf],
    node_data: &Map,
    root: &Path,
    needed: impl Fn(&str) -> bool,
) -> Map {
    let mut data: Map = node_data
        .iter()
        .filter(|(key, _)| needed(key))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let defaults: [KeyDefault; 16] = [
        ("enabled", || Value::Bool(true)),
        ("order", || Value::Int(DEFAULT_ORDER)),
        ("tag", || Value::Seq(Vec::new())),
        ("tier", || Value::Null),
        ("duration", || Value::Str("5m".into())),
        ("manual", || Value::Bool(false)),
        ("tty", || Value::Bool(false)),
        ("framework", || Value::Str("shell".into())),
        ("result", || Value::Str("respect".into())),
        ("require", || Value::Seq(Vec::new())),
        ("recommend", || Value::Seq(Vec::new())),
        ("environment", || Value::Map(Box::default())),
        ("contact", || Value::Seq(Vec::new())),
        ("component", || Value::Seq(Vec::new())),
        ("summary", || Value::Null),
        ("description", || Value::Null),
    ];
    for (key, value) in defaults {
        if needed(key) {
            data.entry(key.to_owned()).or_insert_with(value);
        }
    }
    if let Some(tier) = data.get_mut("tier")
        && !matches!(tier, Value::Null)
    {
        *tier = Value::Str(tier.py_str());
    }
    for key in ["tag", "contact", "component"] {
        if let Some(value) = data.get_mut(key)
            && let Value::Str(s) = value
        {
            *value = Value::Seq(vec![Value::Str(std::mem::take(s))]);
        }
    }
    if needed("path") {
        data.entry("path".to_owned()).or_insert_with(|| {
            let path = test_path(sources, root);
            Value::Str(format!("/{path}"))
        });
    }
    if needed("name") {
        data.insert("name".to_owned(), Value::Str(name.to_owned()));
    }
    for value in data.values_mut() {
        if let Value::Bool(b) = value {
            let b = *b;
            *value = Value::Seq(vec![
                Value::Bool(b),
                Value::Str(if b { "true" } else { "false" }.into()),
            ]);
        }
    }
    data
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
mod tests {
    use super::*;
    use crate::tmt::plan::phases;

    fn node(name: &str, text: &str) -> Node {
        let data = match crate::yaml::parse(text, Path::new("t.fmf")).unwrap() {
            Value::Map(map) => *map,
            _ => Map::default(),
        };
        Node {
            name: name.to_owned(),
            data,
            sources: vec![PathBuf::from(format!("/r{name}.fmf"))],
            leaf: true,
            select: true,
        }
    }

    fn section(text: &str) -> Phase {
        let data = match crate::yaml::parse(text, Path::new("p.fmf")).unwrap() {
            Value::Map(map) => *map,
            _ => Map::default(),
        };
        phases("/p", &data, &[], "discover", "fmf")
            .unwrap()
            .remove(0)
    }

    fn run(nodes: &[Node], section_text: &str, criteria: &Criteria) -> Result<Vec<String>> {
        let refs: Vec<&Node> = nodes.iter().collect();
        let plan = PlanSource {
            name: "/p",
            sources: &[],
        };
        select(
            &refs,
            Path::new("/r"),
            &section(section_text),
            criteria,
            plan,
        )
        .map(|v| v.into_iter().map(|n| n.name.clone()).collect())
    }

    fn sample() -> Vec<Node> {
        vec![
            node("/a", "test: x\norder: 60\n"),
            node("/b", "test: x\ntag: [fast]\n"),
            node("/c", "test: x\nenabled: false\n"),
            node("/d", "test: x\nmanual: true\n"),
            node("/e", "test: x\nstory: s\n"),
            node("/f", "summary: not a test\n"),
            node("/g", "test: x\norder: 10\ntier: 1\n"),
        ]
    }

    #[test]
    fn keeps_tests_sorted_by_order() {
        assert_eq!(
            run(&sample(), "discover: {}", &Criteria::default()).unwrap(),
            ["/g", "/b", "/a"]
        );
    }

    #[test]
    fn section_patterns_concatenate() {
        let got = run(
            &sample(),
            "discover: {test: [/b, '/[ab]', /g]}",
            &Criteria::default(),
        )
        .unwrap();
        assert_eq!(got, ["/b", "/b", "/a", "/g"]);
    }

    #[test]
    fn excludes_includes_and_cli_names() {
        let got = run(
            &sample(),
            "discover: {exclude: /a}",
            &Criteria {
                excludes: vec!["g".into()],
                ..Default::default()
            },
        );
        assert_eq!(got.unwrap(), ["/b"]);
        let got = run(
            &sample(),
            "discover: {test: [/b, /b], include: [b]}",
            &Criteria::default(),
        )
        .unwrap();
        assert_eq!(got, ["/b"]);
        let got = run(
            &sample(),
            "discover: {}",
            &Criteria {
                names: vec!["^/[ag]$".into()],
                ..Default::default()
            },
        );
        assert_eq!(got.unwrap(), ["/g", "/a"]);
        assert!(
            run(
                &sample(),
                "discover: {}",
                &Criteria {
                    names: vec!["(".into()],
                    ..Default::default()
                }
            )
            .is_err()
        );
        assert!(run(&sample(), "discover: {exclude: '('}", &Criteria::default()).is_err());
    }

    #[test]
    fn filters_see_defaults_and_lowercase_bools() {
        let filtered = |expr: &str| {
            run(
                &sample(),
                "discover: {}",
                &Criteria {
                    filters: vec![expr.into()],
                    ..Default::default()
                },
            )
            .unwrap()
        };
        assert_eq!(filtered("tag: fast"), ["/b"]);
        assert_eq!(filtered("tag: -fast"), ["/g", "/a"]);
        assert_eq!(filtered("tier: 1"), ["/g"]);
        assert_eq!(filtered("tier: None"), ["/b", "/a"]);
        assert_eq!(filtered("enabled: true"), ["/g", "/b", "/a"]);
        assert_eq!(filtered("manual: False"), ["/g", "/b", "/a"]);
        assert_eq!(filtered("order: 50"), ["/b"]);
        assert_eq!(filtered("duration: 5m"), ["/g", "/b", "/a"]);
        // An unknown key is fmf's FilterError: nothing is selected.
        assert!(filtered("nosuchkey: x").is_empty());
        let bad_regex = Criteria {
            filters: vec!["tag: (".into()],
            ..Default::default()
        };
        assert!(run(&sample(), "discover: {}", &bad_regex).is_err());
        let both = run(
            &sample(),
            "discover: {filter: 'tag: fast'}",
            &Criteria {
                filters: vec!["order: 60".into()],
                ..Default::default()
            },
        );
        assert!(both.unwrap().is_empty());
    }

    #[test]
    fn invalid_order() {
        let nodes = vec![node("/a", "test: x\norder: high\n")];
        assert!(run(&nodes, "discover: {}", &Criteria::default()).is_err());
    }

    #[test]
    fn absorbed_selectors_select_as_one() {
        let nodes = sample();
        let plan = PlanSource {
            name: "/p",
            sources: &[],
        };
        let root = Path::new("/r");
        for text in [
            "discover: {}",
            "discover: {test: [/b, '/[ab]', /g]}",
            "discover: {test: [/b, /b], include: [b, g]}",
            "discover: {filter: 'tag: -fast'}",
        ] {
            let section = section(text);
            let criteria = Criteria::default();
            let offer_all = |selector: &mut Selector<'_>, nodes: &[Node]| {
                for node in nodes {
                    selector.offer(&node.name, &node.sources, &node.data, true);
                }
            };
            let mut one = Selector::new(root, &section, &criteria, plan).unwrap();
            offer_all(&mut one, &nodes);
            let one = one.finish().unwrap();
            for split in 0..=nodes.len() {
                let mut first = Selector::new(root, &section, &criteria, plan).unwrap();
                let mut second = first.clone();
                offer_all(&mut first, &nodes[..split]);
                offer_all(&mut second, &nodes[split..]);
                assert!(first.absorb(second));
                assert_eq!(first.finish().unwrap(), one, "{text} split at {split}");
            }
        }
    }
}
