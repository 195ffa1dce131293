//! Discovery end to end: load the tree, pick the plan, and select the
//! tests of each of its `how: fmf` discover sections.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use atex_shared::records::{Plan as PlanRecord, Test};

use crate::adjust;
use crate::context::Context;
use crate::error::{Error, ErrorKind, Result};
use crate::tmt::data_error;
use crate::tmt::plan::{self, DUMMY_PLAN_NAME, Dimensions, Plan};
use crate::tmt::select::{Criteria, PlanSource, SelectionStats, Selector};
use crate::tmt::test::DiscoveredTest;
use crate::tree::{AdjustOptions, Node, RawTree, Skipped, Visited};
use crate::value::{Map, Value};

/// What to discover.
#[derive(Debug, Clone, Default)]
pub struct DiscoveryOptions {
    /// A directory inside the fmf tree.
    pub root: PathBuf,
    /// The plan: an exact name, or a regex matching exactly one plan.
    /// `None` uses ATEX's dummy plan (`discover: {how: fmf}`).
    pub plan: Option<String>,
    /// The command-line context (`-c DIM=V1,V2`, already parsed).
    pub context: Dimensions,
    /// Command-line selection on top of the sections' own.
    pub criteria: Criteria,
}

/// The result of a discovery.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// The absolute tree root.
    pub root: PathBuf,
    /// The plan the tests belong to.
    pub plan: Plan,
    /// The selected tests, sections in order.
    pub tests: Vec<DiscoveredTest>,
    /// What the selection of each `how: fmf` section saw
    /// ([`Plan::fmf_sections`] order), to explain an empty selection.
    pub stats: Vec<SelectionStats>,
    /// Without a plan asked for: the names of the tree's own plans (after
    /// adjust with the command-line context), which were not used.
    pub plans: Vec<String>,
    /// Directories of the tree the walk could not read (their tests are
    /// missing), for the caller to warn about.
    pub skipped: Vec<Skipped>,
}

/// Load the tree at `options.root` and discover the plan's tests.
///
/// The plan is found after adjusting the tree with the command-line
/// context only (tmt: a plan's own `context` does not adjust the plan).
/// Each section then adjusts the tests with the plan context and the
/// section's `adjust-tests`, case-insensitively as tmt does.
///
/// The tree is never held inherited as a whole: nodes are inherited,
/// adjusted and selected one at a time ([`RawTree::into_visit_split`], on
/// every core, each thread taking a consecutive run of nodes), and only the
/// selected tests are kept. When the plan is named exactly (or not at
/// all) it is resolved first along its ancestors, so one pass over the
/// nodes does everything; a plan regex needs a first pass to list the
/// plans. Errors are those the whole-tree steps would report, in their
/// order: loading, inheritance, adjusting plan candidates, the plan, then
/// each section's adjust, patterns, `order`, filters and test keys.
///
/// Deviations: sections with `url` or `path` (remote or other trees) are
/// rejected, and so are discover phases whose `how` is not `fmf` (ATEX
/// ignored them).
pub fn discover(options: &DiscoveryOptions) -> Result<Discovery> {
    let tree = RawTree::load(&options.root)?;
    let root = absolute_root(tree.root())?;
    let skipped = tree.skipped().to_vec();
    let early = match &options.plan {
        None => Early::Known(Plan::new(
            DUMMY_PLAN_NAME,
            &plan::dummy_plan_data(),
            &[],
            &root,
            &options.context,
        )),
        Some(wanted) => match tree.find_select(wanted) {
            None => Early::Search,
            Some(false) => Early::Known(Err(not_plan(wanted, "it has children"))),
            Some(true) => exact_plan(&tree, wanted, &root, &options.context),
        },
    };
    let plan_result = match early {
        Early::Known(plan_result) => plan_result,
        Early::Search => return discover_searching(tree, root, options, skipped),
        Early::Failed => {
            // The visit meets the same failure (and maybe an earlier one).
            let mut pass1 = PlanPass::new(&options.context, false);
            tree.visit(|node| pass1.offer(&node))?;
            pass1.into_candidates()?;
            return discover_searching(tree, root, options, skipped);
        }
    };
    // Plan lookup errors come only with a named plan. Without one, the
    // lookup lists the tree's plans (to say they were not used); it shares
    // the test pass's adjusting (same context, no `adjust-tests`), so it
    // costs no adjusting and finds no error of its own.
    let pass1 = Some(match options.plan {
        Some(_) => PlanPass::new(&options.context, false),
        None => PlanPass::names(&options.context),
    });
    let (mut pass2, pass2_error) = match plan_result
        .as_ref()
        .ok()
        .map(|plan| TestPass::new(plan, &root, &options.criteria))
    {
        Some(Ok(pass2)) => (Some(pass2), None),
        Some(Err(error)) => (None, Some(error)),
        None => (None, None),
    };
    if let Some(pass2) = &mut pass2
        && pass1.is_some()
    {
        pass2.share_lookup(&options.context);
    }
    let (pass1, pass2) = run_passes(tree, pass1, pass2)?;
    let plans = match pass1 {
        Some(pass1) => pass1.into_names()?,
        None => Vec::new(),
    };
    if let Some(error) = pass2_error {
        return Err(error);
    }
    let (tests, stats) = match pass2 {
        Some(pass2) => pass2.finish()?,
        None => (Vec::new(), Vec::new()),
    };
    let plan = plan_result?;
    Ok(Discovery {
        root,
        plan,
        tests,
        stats,
        plans,
        skipped,
    })
}

/// Visit every node with the plan lookup and the test selection, on every
/// core (each thread with its own copy of the passes, combined in node
/// order afterwards).
fn run_passes<'a>(
    tree: RawTree,
    pass1: Option<PlanPass>,
    pass2: Option<TestPass<'a>>,
) -> Result<(Option<PlanPass>, Option<TestPass<'a>>)> {
    let states = tree.into_visit_split(
        || (pass1.clone(), pass2.clone()),
        |(pass1, pass2), node| match (pass1, pass2) {
            (pass1, Some(pass2)) => pass2.offer(node, pass1.as_mut()),
            (Some(pass1), None) => pass1.offer(&node),
            (None, None) => {}
        },
    )?;
    // The untouched passes are the neutral start of the combination.
    let (mut pass1, mut pass2) = (pass1, pass2);
    for (later1, later2) in states {
        if let (Some(pass1), Some(later1)) = (&mut pass1, later1) {
            pass1.absorb(later1);
        }
        if let (Some(pass2), Some(later2)) = (&mut pass2, later2) {
            pass2.absorb(later2);
        }
    }
    Ok((pass1, pass2))
}

/// What is known of the plan before the nodes are visited.
#[expect(
    clippy::large_enum_variant,
    reason = "one short-lived value per discovery"
)]
enum Early {
    /// The plan, or why it is not one.
    Known(Result<Plan>),
    /// A regex: every plan must be listed first.
    Search,
    /// Looking it up failed; the visit reports why.
    Failed,
}

/// A plan named exactly: inherit and adjust it along its ancestors only.
fn exact_plan(tree: &RawTree, wanted: &str, root: &Path, cli: &Dimensions) -> Early {
    let Some(Ok(mut node)) = tree.find(wanted) else {
        return Early::Failed;
    };
    let (context, options) = plan_lookup(cli);
    if (node.data.contains_key("execute") || node.data.contains_key(&options.key))
        && adjust::adjust_node(
            &mut node.data,
            &node.name,
            &node.sources,
            &context,
            &options,
            &mut adjust::Decisions::default(),
        )
        .is_err()
    {
        return Early::Failed;
    }
    if !plan::is_plan(&node.data) {
        return Early::Known(Err(not_plan(wanted, "it has no 'execute'")));
    }
    if node.data.contains_key("test") {
        return Early::Known(Err(not_plan(wanted, "it has 'test'")));
    }
    Early::Known(Plan::new(&node.name, &node.data, &node.sources, root, cli))
}

/// [`discover`] for a plan given as a regex: one pass lists the plans,
/// a second selects the tests.
fn discover_searching(
    tree: RawTree,
    root: PathBuf,
    options: &DiscoveryOptions,
    skipped: Vec<Skipped>,
) -> Result<Discovery> {
    let wanted = options.plan.as_deref().unwrap_or_default();
    let mut pass1 = PlanPass::new(&options.context, true);
    tree.visit(|node| pass1.offer(&node))?;
    let candidates = pass1.into_candidates()?;
    let node = find_plan(&tree, &candidates, wanted)?;
    let plan = Plan::new(
        &node.name,
        &node.data,
        &node.sources,
        &root,
        &options.context,
    )?;
    let pass2 = TestPass::new(&plan, &root, &options.criteria)?;
    let (_, pass2) = run_passes(tree, None, Some(pass2))?;
    let (tests, stats) = match pass2 {
        Some(pass2) => pass2.finish()?,
        None => (Vec::new(), Vec::new()),
    };
    Ok(Discovery {
        root,
        plan,
        tests,
        stats,
        plans: Vec::new(),
        skipped,
    })
}

/// The context and options plans are looked up with: the command-line
/// context, case-insensitive.
fn plan_lookup(cli: &Dimensions) -> (Context, AdjustOptions) {
    let mut context = Context::new(cli.clone());
    context.set_case_sensitive(false);
    let options = AdjustOptions {
        case_sensitive: false,
        ..AdjustOptions::default()
    };
    (context, options)
}

/// The plan lookup over visited nodes: the selected nodes that are plans
/// once adjusted with the command-line context. Only nodes with `execute`
/// or with `adjust` rules can be plans, so only those are adjusted (and
/// copied only when a rule applies). The first adjust error is kept.
#[derive(Debug, Clone)]
struct PlanPass {
    context: Context,
    options: AdjustOptions,
    decisions: adjust::Decisions,
    error: Option<Error>,
    /// `None` when only errors matter.
    candidates: Option<Vec<Node>>,
    /// The names of the plans, when only those are asked for.
    names: Option<Vec<String>>,
}

impl PlanPass {
    fn new(cli: &Dimensions, collect: bool) -> PlanPass {
        let (context, options) = plan_lookup(cli);
        PlanPass {
            context,
            options,
            decisions: adjust::Decisions::default(),
            error: None,
            candidates: collect.then(Vec::new),
            names: None,
        }
    }

    /// A lookup that lists the names of the plans (not plans with `test`,
    /// which are not plans to [`find_plan`]).
    fn names(cli: &Dimensions) -> PlanPass {
        PlanPass {
            names: Some(Vec::new()),
            ..PlanPass::new(cli, false)
        }
    }

    /// Whether a node (its data not adjusted yet) needs the plan checks.
    fn wants(&self, select: bool, data: &Map) -> bool {
        self.error.is_none()
            && select
            && (data.contains_key("execute") || data.contains_key(&self.options.key))
    }

    fn offer(&mut self, node: &Visited<'_>) {
        if !self.wants(node.select, &node.data) {
            return;
        }
        let mut data = Cow::Borrowed(node.data.as_ref());
        let adjusted = adjust::adjust_cow(
            &mut data,
            node.name,
            &node.sources,
            &self.context,
            &self.options,
            &mut self.decisions,
        );
        self.record(&adjusted, node.name, &node.sources, node.leaf, &data);
    }

    /// Take the result of adjusting a selected node the way this pass does.
    fn record(
        &mut self,
        adjusted: &Result<()>,
        name: &str,
        sources: &[PathBuf],
        leaf: bool,
        data: &Map,
    ) {
        if let Err(error) = adjusted {
            self.error = Some(error.clone());
            return;
        }
        if let Some(names) = &mut self.names
            && plan::is_plan(data)
            && !data.contains_key("test")
        {
            names.push(name.to_owned());
        }
        if let Some(candidates) = &mut self.candidates
            && plan::is_plan(data)
        {
            candidates.push(Node {
                name: name.to_owned(),
                data: data.clone(),
                sources: sources.to_vec(),
                leaf,
                select: true,
            });
        }
    }

    /// Take in what a copy of this pass saw of the nodes that follow.
    fn absorb(&mut self, later: PlanPass) {
        if self.error.is_some() {
            return;
        }
        self.error = later.error;
        if let (Some(mine), Some(theirs)) = (&mut self.candidates, later.candidates) {
            mine.extend(theirs);
        }
        if let (Some(mine), Some(theirs)) = (&mut self.names, later.names) {
            mine.extend(theirs);
        }
    }

    /// The plan names listed (empty unless asked for), or the first error.
    fn into_names(self) -> Result<Vec<String>> {
        match self.error {
            Some(error) => Err(error),
            None => Ok(self.names.unwrap_or_default()),
        }
    }

    fn into_candidates(self) -> Result<Vec<Node>> {
        match self.error {
            Some(error) => Err(error),
            None => Ok(self.candidates.unwrap_or_default()),
        }
    }
}

/// Test selection over visited nodes for every `how: fmf` section of a
/// plan: each node is adjusted with the plan context and the section's
/// `adjust-tests` (once per distinct rule set), offered to the section's
/// [`Selector`], and read into a [`DiscoveredTest`] only if it passes.
#[derive(Debug, Clone)]
struct TestPass<'a> {
    root: &'a Path,
    context: Context,
    decisions: adjust::Decisions,
    /// The distinct `adjust-tests` rule sets, and the first adjust error
    /// of each.
    rule_sets: Vec<(AdjustOptions, Option<Error>)>,
    sections: Vec<SectionPass<'a>>,
    /// The rule set that adjusts exactly as the plan lookup does (the plan
    /// context is the command-line one and there is no `adjust-tests`):
    /// its result serves the lookup too.
    lookup_set: Option<usize>,
    plan_context: Dimensions,
}

#[derive(Debug, Clone)]
struct SectionPass<'a> {
    /// Index in `rule_sets`.
    rules: usize,
    prefix: Option<&'a str>,
    selector: Result<Selector<'a>>,
    /// The tests of the nodes the selector passed, by its numbers.
    tests: Vec<Result<DiscoveredTest>>,
}

impl<'a> TestPass<'a> {
    /// Check the plan's fmf sections and set up their selection.
    fn new(plan: &'a Plan, root: &'a Path, criteria: &Criteria) -> Result<TestPass<'a>> {
        unsupported_methods(plan)?;
        let sections = plan.fmf_sections()?;
        let mut rules = Vec::with_capacity(sections.len());
        for section in &sections {
            for key in ["url", "path"] {
                if section.data.contains_key(key) {
                    return Err(data_error(
                        ErrorKind::FormatError,
                        &plan.name,
                        &plan.sources,
                        key,
                        format!(
                            "discover phase '{}': '{key}' is not supported",
                            section.name
                        ),
                    ));
                }
            }
            rules.push(match section.data.get("adjust-tests") {
                None | Some(Value::Null) => None,
                Some(rules @ (Value::Map(_) | Value::Seq(_))) => Some(rules),
                Some(other) => {
                    return Err(data_error(
                        ErrorKind::FormatError,
                        &plan.name,
                        &plan.sources,
                        "adjust-tests",
                        format!(
                            "discover phase '{}': 'adjust-tests' must be a mapping or a list, not {}",
                            section.name,
                            other.py_type_name()
                        ),
                    ));
                }
            });
        }
        let plan_context = plan.context.clone();
        let mut context = Context::new(plan.context.clone());
        context.set_case_sensitive(false);
        let plan_source = PlanSource {
            name: &plan.name,
            sources: &plan.sources,
        };
        // Sections with equal rules share one adjusted copy of each node.
        let mut distinct: Vec<Option<&Value>> = Vec::new();
        let mut rule_sets = Vec::new();
        let mut passes = Vec::with_capacity(sections.len());
        for (section, section_rules) in sections.into_iter().zip(rules) {
            let same = |known: &Option<&Value>| match (known, section_rules) {
                (None, None) => true,
                (Some(a), Some(b)) => a.py_eq(b),
                _ => false,
            };
            let index = match distinct.iter().position(same) {
                Some(index) => index,
                None => {
                    distinct.push(section_rules);
                    let additional_rules = match section_rules {
                        None => Vec::new(),
                        Some(Value::Seq(rules)) => rules.clone(),
                        Some(rule) => vec![rule.clone()],
                    };
                    let options = AdjustOptions {
                        case_sensitive: false,
                        additional_rules,
                        additional_sources: plan.sources.clone(),
                        ..AdjustOptions::default()
                    };
                    rule_sets.push((options, None));
                    rule_sets.len() - 1
                }
            };
            passes.push(SectionPass {
                rules: index,
                prefix: section.named.then_some(section.name.as_str()),
                selector: Selector::new(root, section, criteria, plan_source),
                tests: Vec::new(),
            });
        }
        Ok(TestPass {
            root,
            context,
            decisions: adjust::Decisions::default(),
            rule_sets,
            sections: passes,
            lookup_set: None,
            plan_context,
        })
    }

    /// Let the plan lookup reuse the adjusting of a rule set that does the
    /// same (see `lookup_set`).
    fn share_lookup(&mut self, cli: &Dimensions) {
        let same_context = self.plan_context.len() == cli.len()
            && self.plan_context.iter().zip(cli).all(|(a, b)| a == b);
        if same_context {
            self.lookup_set = self
                .rule_sets
                .iter()
                .position(|(options, _)| options.additional_rules.is_empty());
        }
    }

    /// Adjust and offer one visited node. `lookup` is the plan lookup
    /// running in the same visit, if any.
    fn offer(&mut self, node: Visited<'_>, lookup: Option<&mut PlanPass>) {
        let Visited {
            name,
            data,
            sources,
            leaf,
            select,
        } = node;
        // The lookup shares a rule set's result until that set fails (then
        // the lookup still has to look at later nodes on its own).
        let mut shared = None;
        if let Some(pass) = lookup {
            match self.lookup_set {
                Some(set) if self.rule_sets[set].1.is_none() => shared = Some((set, pass)),
                _ => {
                    let node = Visited {
                        name,
                        data: Cow::Borrowed(data.as_ref()),
                        sources: Cow::Borrowed(sources.as_ref()),
                        leaf,
                        select,
                    };
                    pass.offer(&node);
                }
            }
        }
        let node = (name, sources.as_ref(), leaf, select);
        if self.rule_sets.len() == 1 {
            // The node's own copy is adjusted in place.
            let lookup = shared.map(|(_, pass)| pass);
            self.offer_adjusted(0, node, data, lookup);
        } else {
            let mut shared = shared;
            for index in 0..self.rule_sets.len() {
                let lookup = match &shared {
                    Some((set, _)) if *set == index => shared.take().map(|(_, pass)| pass),
                    _ => None,
                };
                let data = Cow::Borrowed(data.as_ref());
                self.offer_adjusted(index, node, data, lookup);
            }
        }
    }

    /// Adjust a node with rule set `index` and offer it to its sections;
    /// hand the result to `lookup` too.
    fn offer_adjusted(
        &mut self,
        index: usize,
        (name, sources, leaf, select): (&str, &[PathBuf], bool, bool),
        mut data: Cow<'_, Map>,
        lookup: Option<&mut PlanPass>,
    ) {
        let lookup = lookup.filter(|pass| pass.wants(select, &data));
        let (options, error) = &mut self.rule_sets[index];
        if error.is_some() {
            return;
        }
        let adjusted = adjust::adjust_cow(
            &mut data,
            name,
            sources,
            &self.context,
            options,
            &mut self.decisions,
        );
        if let Some(pass) = lookup {
            pass.record(&adjusted, name, sources, leaf, &data);
        }
        if let Err(e) = adjusted {
            *error = Some(e);
            return;
        }
        if !select {
            return;
        }
        for section in self.sections.iter_mut().filter(|s| s.rules == index) {
            let Ok(selector) = &mut section.selector else {
                continue;
            };
            if selector.offer(name, sources, &data, true).is_some() {
                section.tests.push(DiscoveredTest::from_parts(
                    name,
                    sources,
                    &data,
                    self.root,
                    section.prefix,
                ));
            }
        }
    }

    /// Take in what a copy of this pass saw of the nodes that follow.
    fn absorb(&mut self, later: TestPass<'a>) {
        let failed: Vec<bool> = self.rule_sets.iter().map(|(_, e)| e.is_some()).collect();
        for ((_, mine), (_, theirs)) in self.rule_sets.iter_mut().zip(later.rule_sets) {
            if mine.is_none() {
                *mine = theirs;
            }
        }
        for (mine, theirs) in self.sections.iter_mut().zip(later.sections) {
            // a section whose rules failed reports only that
            if failed[mine.rules] {
                continue;
            }
            if let (Ok(selector), Ok(later_selector)) = (&mut mine.selector, theirs.selector)
                && selector.absorb(later_selector)
            {
                mine.tests.extend(theirs.tests);
            }
        }
    }

    /// The selected tests, sections in order, and what each section saw;
    /// or the first error in the order the sections report them.
    fn finish(self) -> Result<(Vec<DiscoveredTest>, Vec<SelectionStats>)> {
        let mut tests = Vec::new();
        let mut stats = Vec::with_capacity(self.sections.len());
        for section in self.sections {
            if let Some(error) = &self.rule_sets[section.rules].1 {
                return Err(error.clone());
            }
            let selector = section.selector?;
            stats.push(selector.stats());
            let kept = selector.finish()?;
            let mut uses = vec![0usize; section.tests.len()];
            for &k in &kept {
                uses[k] += 1;
            }
            let mut slots: Vec<Option<Result<DiscoveredTest>>> =
                section.tests.into_iter().map(Some).collect();
            for k in kept {
                uses[k] -= 1;
                let test = if uses[k] == 0 {
                    slots[k].take()
                } else {
                    slots[k].clone()
                };
                if let Some(test) = test {
                    tests.push(test?);
                }
            }
        }
        Ok((tests, stats))
    }
}

/// The discover methods atex-discover implements.
pub const DISCOVER_METHODS: [&str; 1] = ["fmf"];

/// Refuse a plan with a discover phase (one that applies) of a method
/// atex-discover does not implement: its tests would be silently missing
/// from the run (ATEX ignored such phases).
fn unsupported_methods(plan: &Plan) -> Result<()> {
    let Some(phase) = plan
        .discover
        .iter()
        .find(|phase| !DISCOVER_METHODS.contains(&phase.how.as_str()))
    else {
        return Ok(());
    };
    let error = data_error(
        ErrorKind::FormatError,
        &plan.name,
        &plan.sources,
        "discover",
        format!(
            "discover phase '{}': method 'how: {}' is not supported (supported: {})",
            phase.name,
            phase.how,
            DISCOVER_METHODS.join(", ")
        ),
    );
    // The phase's own `how:` line when it is written as a block key.
    Err(
        match crate::tmt::locate::locate_value(&plan.sources, "how", &phase.how) {
            Some(location) => error.at(location),
            None => error,
        },
    )
}

/// Every plan of the tree at `root` (adjusted with the command-line
/// context), in climb order, and the directories the walk could not read.
pub fn list_plans(root: &Path, context: &Dimensions) -> Result<(Vec<Plan>, Vec<Skipped>)> {
    let tree = RawTree::load(root)?;
    let abs_root = absolute_root(tree.root())?;
    let skipped = tree.skipped().to_vec();
    let pass = PlanPass::new(context, true);
    let (pass, _) = run_passes(tree, Some(pass), None)?;
    let plans = pass
        .map(PlanPass::into_candidates)
        .transpose()?
        .unwrap_or_default()
        .iter()
        .map(|node| Plan::new(&node.name, &node.data, &node.sources, &abs_root, context))
        .collect::<Result<_>>()?;
    Ok((plans, skipped))
}

fn absolute_root(root: &Path) -> Result<PathBuf> {
    std::path::absolute(root).map_err(|e| {
        Error::new(
            ErrorKind::RootError,
            format!("failed to resolve the tree root: {e}"),
        )
        .in_file(root)
    })
}

fn not_plan(name: &str, why: &str) -> Error {
    Error::new(
        ErrorKind::GeneralError,
        format!("'{name}' is not a plan: {why}"),
    )
}

/// The plan named `wanted` among `plans` (see [`PlanPass`]): an exact
/// name, else the one plan whose name `re.search`es the pattern.
fn find_plan<'p>(tree: &RawTree, plans: &'p [Node], wanted: &str) -> Result<&'p Node> {
    if let Some(node) = plans.iter().find(|node| node.name == wanted) {
        if node.data.contains_key("test") {
            return Err(not_plan(&node.name, "it has 'test'"));
        }
        return Ok(node);
    }
    if let Some(select) = tree.find_select(wanted) {
        let why = if select {
            "it has no 'execute'"
        } else {
            "it has children"
        };
        return Err(not_plan(wanted, why));
    }
    let plan_names = || -> Vec<&str> {
        plans
            .iter()
            .filter(|node| !node.data.contains_key("test"))
            .map(|node| node.name.as_str())
            .collect()
    };
    let pattern = crate::pyre::compile(wanted).map_err(|e| {
        Error::new(
            ErrorKind::GeneralError,
            format!(
                "plan '{wanted}' not found, and it is not a valid regex ({e}){}",
                plan_hint(wanted, &plan_names())
            ),
        )
    })?;
    let matches: Vec<&Node> = plans
        .iter()
        .filter(|node| !node.data.contains_key("test") && pattern.search(&node.name))
        .collect();
    match matches.as_slice() {
        [] => Err(Error::new(
            ErrorKind::GeneralError,
            format!(
                "plan '{wanted}' not found{}",
                plan_hint(wanted, &plan_names())
            ),
        )),
        [one] => Ok(one),
        many => {
            let names: Vec<&str> = many.iter().map(|n| n.name.as_str()).collect();
            Err(Error::new(
                ErrorKind::GeneralError,
                format!(
                    "plan '{wanted}' is ambiguous: it matches {}",
                    names.join(", ")
                ),
            ))
        }
    }
}

/// How many names a message lists before "and N more".
pub const LISTED_NAMES: usize = 10;

/// `names` joined with `, `, the first [`LISTED_NAMES`] only, then
/// "and N more".
pub fn list_names(names: &[impl AsRef<str>]) -> String {
    let mut text = names
        .iter()
        .take(LISTED_NAMES)
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > LISTED_NAMES {
        text.push_str(&format!(" and {} more", names.len() - LISTED_NAMES));
    }
    text
}

/// The rest of a "plan not found" message: the closest plan name (a
/// typo is the usual reason) and the plans there are.
fn plan_hint(wanted: &str, plans: &[&str]) -> String {
    if plans.is_empty() {
        return ": the tree has no plans (nodes with 'execute')".to_owned();
    }
    // Close enough to be a typo: a third of what is compared may differ.
    // A name without `/` is compared with the plans' last segments too.
    let distance = |name: &str| {
        let whole = (strsim::levenshtein(wanted, name), name.chars().count());
        let last = name.rsplit('/').next().unwrap_or(name);
        let segment = (strsim::levenshtein(wanted, last), last.chars().count());
        if wanted.contains('/') || whole.0 <= segment.0 {
            whole
        } else {
            segment
        }
    };
    let closest = plans
        .iter()
        .map(|name| (distance(name), *name))
        .min_by_key(|((distance, _), _)| *distance)
        .filter(|((distance, length), _)| *distance <= 2.max(length / 3));
    match closest {
        Some((_, name)) => format!(
            "; did you mean '{name}'? The tree's plans: {}",
            list_names(plans)
        ),
        None => format!("; the tree's plans: {}", list_names(plans)),
    }
}

impl Discovery {
    /// The Test records of the discovered tests. A record's `environment`
    /// is the test's environment with the plan's applied on top (tmt: the
    /// plan environment overrides the test's). Records are built as they
    /// are consumed, so a large selection is not held twice in memory.
    pub fn records(&self) -> impl Iterator<Item = Test> + '_ {
        let plan = PlanRecord {
            name: self.plan.name.clone(),
            environment: self.plan.environment.clone(),
            context: self.plan.context.clone(),
            prepare: self
                .plan
                .prepare
                .iter()
                .map(|p| map_to_json(&p.data))
                .collect(),
            finish: self
                .plan
                .finish
                .iter()
                .map(|p| map_to_json(&p.data))
                .collect(),
        };
        self.tests.iter().map(move |test| {
            let mut environment = test.environment.clone();
            environment.extend(
                self.plan
                    .environment
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
            Test {
                name: test.name.clone(),
                root: self.root.clone(),
                path: test.path.clone(),
                test: test.test.clone(),
                duration: test.duration,
                environment,
                require: test.require.iter().map(Value::to_json).collect(),
                recommend: test.recommend.iter().map(Value::to_json).collect(),
                tty: test.tty,
                tag: test.tag.clone(),
                plan: plan.clone(),
                data: map_to_json(&test.data),
            }
        })
    }
}

/// [`Value::to_json`] of a mapping, without copying it into a `Value`.
fn map_to_json(map: &Map) -> serde_json::Value {
    serde_json::Value::Object(map.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
}
