//! Discovery end to end: load the tree, pick the plan, and select the
//! tests of each of its `how: fmf` discover sections.

use std::path::{Path, PathBuf};

use atex_shared::records::{Plan as PlanRecord, Test};

use crate::context::Context;
use crate::error::{Error, ErrorKind, Result};
use crate::tmt::data_error;
use crate::tmt::plan::{self, DUMMY_PLAN_NAME, Dimensions, Plan};
use crate::tmt::select::{self, Criteria, PlanSource};
use crate::tmt::test::DiscoveredTest;
use crate::tree::{AdjustOptions, Node, Tree};
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
}

/// Load the tree at `options.root` and discover the plan's tests.
///
/// The plan is found after adjusting the tree with the command-line
/// context only (tmt: a plan's own `context` does not adjust the plan).
/// Each section then adjusts a fresh copy of the tree with the plan
/// context and the section's `adjust-tests`, case-insensitively as tmt
/// does.
///
/// Deviations: sections with `url` or `path` (remote or other trees) are
/// rejected, and sections whose `how` is not `fmf` are ignored (ATEX).
pub fn discover(options: &DiscoveryOptions) -> Result<Discovery> {
    let mut tree = Tree::load(&options.root)?;
    let root = absolute_root(&tree)?;
    let plan = match &options.plan {
        None => Plan::new(
            DUMMY_PLAN_NAME,
            &plan::dummy_plan_data(),
            &[],
            &root,
            &options.context,
        )?,
        Some(wanted) => {
            let candidates = plan_candidates(&tree, &options.context)?;
            let node = find_plan(&tree, &candidates, wanted)?;
            Plan::new(
                &node.name,
                &node.data,
                &node.sources,
                &root,
                &options.context,
            )?
        }
    };
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
    let plan_source = PlanSource {
        name: &plan.name,
        sources: &plan.sources,
    };
    let mut tests = Vec::new();
    // Trees are large: when every section adjusts the same way (the usual
    // case), the loaded tree is adjusted in place once instead of copied.
    let same_rules = rules.windows(2).all(|pair| match (pair[0], pair[1]) {
        (None, None) => true,
        (Some(a), Some(b)) => a.py_eq(b),
        _ => false,
    });
    if same_rules {
        adjust(&mut tree, &plan.context, rules.first().copied().flatten())?;
    }
    for (section, rules) in sections.iter().zip(&rules) {
        let owned;
        let section_tree = if same_rules {
            &tree
        } else {
            owned = {
                let mut copy = tree.clone();
                adjust(&mut copy, &plan.context, *rules)?;
                copy
            };
            &owned
        };
        let nodes: Vec<&Node> = section_tree.climb(false).collect();
        let selected = select::select(&nodes, &root, section, &options.criteria, plan_source)?;
        let prefix = section.named.then_some(section.name.as_str());
        for node in selected {
            tests.push(DiscoveredTest::from_node(node, &root, prefix)?);
        }
    }
    Ok(Discovery { root, plan, tests })
}

/// The selected nodes that are plans once adjusted with the command-line
/// context. Only nodes with `execute` or with `adjust` rules can be plans,
/// so only those are copied and adjusted, not the whole tree.
fn plan_candidates(tree: &Tree, cli: &Dimensions) -> Result<Vec<Node>> {
    let mut context = Context::new(cli.clone());
    context.set_case_sensitive(false);
    let options = AdjustOptions {
        case_sensitive: false,
        ..AdjustOptions::default()
    };
    let mut plans = Vec::new();
    for node in tree.climb(false) {
        if !node.data.contains_key("execute") && !node.data.contains_key(&options.key) {
            continue;
        }
        let mut node = node.clone();
        crate::adjust::adjust_node(&mut node.data, &node.name, &context, &options)?;
        if plan::is_plan(&node.data) {
            plans.push(node);
        }
    }
    Ok(plans)
}

/// Every plan of the tree at `root` (adjusted with the command-line
/// context), in climb order.
pub fn list_plans(root: &Path, context: &Dimensions) -> Result<Vec<Plan>> {
    let tree = Tree::load(root)?;
    let abs_root = absolute_root(&tree)?;
    plan_candidates(&tree, context)?
        .iter()
        .map(|node| Plan::new(&node.name, &node.data, &node.sources, &abs_root, context))
        .collect()
}

fn absolute_root(tree: &Tree) -> Result<PathBuf> {
    std::path::absolute(tree.root()).map_err(|e| {
        Error::new(
            ErrorKind::RootError,
            format!("failed to resolve the tree root: {e}"),
        )
        .in_file(tree.root())
    })
}

/// The plan named `wanted` among `plans` (see [`plan_candidates`]): an
/// exact name, else the one plan whose name `re.search`es the pattern.
fn find_plan<'p>(tree: &Tree, plans: &'p [Node], wanted: &str) -> Result<&'p Node> {
    let not_plan = |name: &str, why: &str| {
        Error::new(
            ErrorKind::GeneralError,
            format!("'{name}' is not a plan: {why}"),
        )
    };
    if let Some(node) = plans.iter().find(|node| node.name == wanted) {
        if node.data.contains_key("test") {
            return Err(not_plan(&node.name, "it has 'test'"));
        }
        return Ok(node);
    }
    if let Some(node) = tree.find(wanted) {
        let why = if node.select {
            "it has no 'execute'"
        } else {
            "it has children"
        };
        return Err(not_plan(&node.name, why));
    }
    let pattern = crate::pyre::compile(wanted).map_err(|e| {
        Error::new(
            ErrorKind::GeneralError,
            format!("plan '{wanted}' not found, and it is not a valid regex: {e}"),
        )
    })?;
    let matches: Vec<&Node> = plans
        .iter()
        .filter(|node| !node.data.contains_key("test") && pattern.search(&node.name))
        .collect();
    match matches.as_slice() {
        [] => Err(Error::new(
            ErrorKind::GeneralError,
            format!("plan '{wanted}' not found"),
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

/// Adjust `tree` with `context` (case-insensitively, as tmt adjusts) and
/// optional additional rules (`adjust-tests`: a rule or a list of rules).
fn adjust(tree: &mut Tree, context: &Dimensions, additional_rules: Option<&Value>) -> Result<()> {
    let context = Context::new(context.clone());
    let additional_rules = match additional_rules {
        None => Vec::new(),
        Some(Value::Seq(rules)) => rules.clone(),
        Some(rule) => vec![rule.clone()],
    };
    let options = AdjustOptions {
        case_sensitive: false,
        additional_rules,
        ..AdjustOptions::default()
    };
    tree.adjust(&context, &options)
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
