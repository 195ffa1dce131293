//! tmt plans: which nodes are plans, their steps' phases (names, `how`,
//! `order`, `when`), their context and environment.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use crate::context::{Context, MatchError};
use crate::error::{Error, ErrorKind, Result};
use crate::tmt::environment::{self, Environment};
use crate::tmt::{data_error, locate};
use crate::value::{Map, Value};

/// Context dimensions and their values, as `-c DIM=V1,V2` gives them.
pub type Dimensions = IndexMap<String, Vec<String>>;

/// The name of the plan used when none is asked for, as tmt names its own
/// default plan.
pub const DUMMY_PLAN_NAME: &str = "/default/plan";

/// The default `order` of tests and phases.
pub const DEFAULT_ORDER: i64 = 50;

/// One phase of a plan step (`discover`, `prepare`, `finish`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    /// `name`, or `default-N` (N is its index in the step).
    pub name: String,
    /// Whether the name was written in the metadata.
    pub named: bool,
    /// `how`, or the step's default.
    pub how: String,
    /// `order`, default 50.
    pub order: i64,
    /// The phase data, with `name` and `how` filled in.
    pub data: Map,
}

/// A plan with its context, environment and the phases that apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The node name.
    pub name: String,
    /// The node data (after adjust with the CLI context).
    pub data: Map,
    /// The node's source files.
    pub sources: Vec<PathBuf>,
    /// The plan context: its `context` key merged with the CLI context,
    /// the CLI winning per dimension.
    pub context: Dimensions,
    /// `environment-file` overridden by `environment`.
    pub environment: Environment,
    /// The `discover` phases whose `when` matches, in metadata order.
    pub discover: Vec<Phase>,
    /// The `prepare` phases whose `when` matches, stably sorted by `order`.
    pub prepare: Vec<Phase>,
    /// The `finish` phases whose `when` matches, stably sorted by `order`.
    pub finish: Vec<Phase>,
}

/// Whether a node is a plan (tmt: it has an `execute` key).
///
/// Deviation: nodes with only a `plan` key (imports of remote plans) are
/// not plans here, since remote plans are not fetched.
pub fn is_plan(data: &Map) -> bool {
    data.contains_key("execute")
}

/// The data of the plan ATEX uses when none is given.
pub fn dummy_plan_data() -> Map {
    let mut discover = Map::default();
    discover.insert("how".into(), Value::Str("fmf".into()));
    let mut execute = Map::default();
    execute.insert("how".into(), Value::Str("tmt".into()));
    let mut data = Map::default();
    data.insert("discover".into(), Value::Map(Box::new(discover)));
    data.insert("execute".into(), Value::Map(Box::new(execute)));
    data
}

impl Plan {
    /// Build a plan from its node. `cli` is the command-line context;
    /// `root` is the tree root (for `environment-file`).
    ///
    /// Phase `when` rules are evaluated against the plan context
    /// (case-sensitively, as fmf's `Context.matches` does by default). A
    /// rule that cannot be decided (unknown dimension) counts as not
    /// matching, so such a phase is skipped unless another rule matches.
    pub fn new(
        name: &str,
        data: &Map,
        sources: &[PathBuf],
        root: &Path,
        cli: &Dimensions,
    ) -> Result<Plan> {
        let err = |key: &str, message: String| {
            data_error(ErrorKind::FormatError, name, sources, key, message)
        };
        let mut context = match data.get("context") {
            None => Dimensions::new(),
            Some(value) => context_from_value(value).map_err(|m| err("context", m))?,
        };
        for (dimension, values) in cli {
            context.insert(dimension.clone(), values.clone());
        }
        let mut env = match data.get("environment-file") {
            None => Environment::new(),
            Some(value) => environment::from_files(value, root)
                .map_err(|e| err("environment-file", e.to_string()))?,
        };
        if let Some(value) = data.get("environment") {
            env.extend(
                environment::from_value(value).map_err(|e| err("environment", e.to_string()))?,
            );
        }
        let matcher = Context::new(context.clone());
        let when = |phases: Vec<Phase>| -> Result<Vec<Phase>> {
            let mut kept = Vec::new();
            for phase in phases {
                let applies = rules_apply(&phase, &matcher).map_err(|(message, rule)| {
                    let error = err("when", format!("phase '{}': {message}", phase.name));
                    // Among several `when:` keys, the one of this rule.
                    match rule.and_then(|rule| locate::locate_value(sources, "when", &rule)) {
                        Some(location) => error.at(location),
                        None => error,
                    }
                })?;
                if applies {
                    kept.push(phase);
                }
            }
            Ok(kept)
        };
        let discover = when(phases(name, data, sources, "discover", "fmf")?)?;
        let mut prepare = when(phases(name, data, sources, "prepare", "shell")?)?;
        let mut finish = when(phases(name, data, sources, "finish", "shell")?)?;
        prepare.sort_by_key(|phase| phase.order);
        finish.sort_by_key(|phase| phase.order);
        Ok(Plan {
            name: name.to_owned(),
            data: data.clone(),
            sources: sources.to_vec(),
            context,
            environment: env,
            discover,
            prepare,
            finish,
        })
    }

    /// The `how: fmf` discover phases, checked as ATEX checks them: when
    /// there is more than one, each needs its own `name`, without `/` and
    /// other than `.` and `..`.
    pub fn fmf_sections(&self) -> Result<Vec<&Phase>> {
        let sections: Vec<&Phase> = self.discover.iter().filter(|p| p.how == "fmf").collect();
        if sections.len() > 1 {
            let mut seen = Vec::new();
            for section in &sections {
                let bad = if !section.named {
                    Some("more than one discover section: each needs a unique 'name'".to_owned())
                } else if section.name.contains('/') || section.name == "." || section.name == ".."
                {
                    Some(format!("invalid discover section name '{}'", section.name))
                } else if seen.contains(&&section.name) {
                    Some(format!(
                        "duplicate discover section name '{}'",
                        section.name
                    ))
                } else {
                    None
                };
                if let Some(message) = bad {
                    return Err(data_error(
                        ErrorKind::FormatError,
                        &self.name,
                        &self.sources,
                        "discover",
                        message,
                    ));
                }
                seen.push(&section.name);
            }
        }
        Ok(sections)
    }
}

/// Whether a phase's `when` (a rule or a list of rules, OR-ed) matches.
/// No `when` always matches; `CannotDecide` is not a match.
pub fn phase_applies(phase: &Phase, context: &Context) -> std::result::Result<bool, String> {
    rules_apply(phase, context).map_err(|(message, _)| message)
}

/// [`phase_applies`], whose error also gives the text of the rule that
/// does not parse, to locate it.
fn rules_apply(
    phase: &Phase,
    context: &Context,
) -> std::result::Result<bool, (String, Option<String>)> {
    let rules: Vec<&Value> = match phase.data.get("when") {
        None | Some(Value::Null) => return Ok(true),
        Some(Value::Seq(rules)) => rules.iter().collect(),
        Some(rule) => vec![rule],
    };
    for rule in rules {
        let matched = match rule {
            Value::Bool(b) => *b,
            Value::Str(rule) => match context.matches(rule) {
                Ok(b) => b,
                Err(MatchError::CannotDecide) => false,
                Err(MatchError::InvalidRule(message)) => {
                    return Err((
                        format!("invalid rule '{rule}': {message}"),
                        Some(rule.clone()),
                    ));
                }
            },
            other => {
                return Err((
                    format!("'when' rules must be strings, not {}", other.py_type_name()),
                    None,
                ));
            }
        };
        if matched {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The phases of `step` in `data`: a mapping or a list of mappings; names
/// default to `default-N` and must be unique; `how` defaults to
/// `default_how`; `order` is an integer, default 50.
pub fn phases(
    node: &str,
    data: &Map,
    sources: &[PathBuf],
    step: &str,
    default_how: &str,
) -> Result<Vec<Phase>> {
    let err = |message: String| data_error(ErrorKind::FormatError, node, sources, step, message);
    let items: Vec<&Map> = match data.get(step) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Map(map)) => vec![map],
        Some(Value::Seq(items)) => items
            .iter()
            .map(|item| {
                item.as_map().ok_or_else(|| {
                    err(format!(
                        "'{step}' items must be mappings, not {}",
                        item.py_type_name()
                    ))
                })
            })
            .collect::<Result<_>>()?,
        Some(other) => {
            return Err(err(format!(
                "'{step}' must be a mapping or a list of mappings, not {}",
                other.py_type_name()
            )));
        }
    };
    let mut phases: Vec<Phase> = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let (name, named) = match item.get("name") {
            None | Some(Value::Null) => (format!("default-{index}"), false),
            Some(Value::Str(name)) => (name.clone(), true),
            Some(other) => {
                return Err(err(format!(
                    "'{step}' phase name must be a string, not {}",
                    other.py_type_name()
                )));
            }
        };
        if phases.iter().any(|p| p.name == name) {
            return Err(err(format!("duplicate '{step}' phase name '{name}'")));
        }
        let how = match item.get("how") {
            None | Some(Value::Null) => default_how.to_owned(),
            Some(Value::Str(how)) => how.clone(),
            Some(other) => {
                return Err(err(format!(
                    "'{step}' phase '{name}': 'how' must be a string, not {}",
                    other.py_type_name()
                )));
            }
        };
        let order = match item.get("order") {
            None | Some(Value::Null) => DEFAULT_ORDER,
            Some(Value::Int(order)) => *order,
            Some(Value::Str(text)) => text
                .trim()
                .parse()
                .map_err(|_| err(format!("'{step}' phase '{name}': invalid order '{text}'")))?,
            Some(other) => {
                return Err(err(format!(
                    "'{step}' phase '{name}': 'order' must be an integer, not {}",
                    other.py_type_name()
                )));
            }
        };
        let mut data = Map::default();
        data.insert("name".into(), Value::Str(name.clone()));
        data.insert("how".into(), Value::Str(how.clone()));
        for (key, value) in item {
            if key != "name" && key != "how" {
                data.insert(key.clone(), value.clone());
            }
        }
        phases.push(Phase {
            name,
            named,
            how,
            order,
            data,
        });
    }
    Ok(phases)
}

/// A `context` key: dimension -> a scalar or a list of scalars, Python
/// `str()`-ed.
fn context_from_value(value: &Value) -> std::result::Result<Dimensions, String> {
    let map = match value {
        Value::Null => return Ok(Dimensions::new()),
        Value::Map(map) => map,
        other => {
            return Err(format!(
                "context must be a mapping, not {}",
                other.py_type_name()
            ));
        }
    };
    let mut dimensions = Dimensions::new();
    for (dimension, values) in map.iter() {
        let values = match values {
            Value::Seq(items) => items.iter().map(Value::py_str).collect(),
            Value::Map(_) | Value::KeyedMap(_) | Value::Set(_) => {
                return Err(format!(
                    "context dimension '{dimension}' must be a string or a list"
                ));
            }
            scalar => vec![scalar.py_str()],
        };
        dimensions.insert(dimension.clone(), values);
    }
    Ok(dimensions)
}

/// Parse `-c DIM=V1,V2` options as tmt does: values split on `,`, an empty
/// value is an error, a later option for the same dimension wins.
pub fn parse_cli_context(options: &[String]) -> Result<Dimensions> {
    let mut dimensions = Dimensions::new();
    for option in options {
        let (dimension, values) = option.split_once('=').ok_or_else(|| {
            Error::new(
                ErrorKind::GeneralError,
                format!("invalid context '{option}': expected DIM=VALUE"),
            )
        })?;
        let values: Vec<String> = values.split(',').map(|v| v.trim().to_owned()).collect();
        if dimension.trim().is_empty() || values.iter().any(String::is_empty) {
            return Err(Error::new(
                ErrorKind::GeneralError,
                format!("invalid context '{option}': empty dimension or value"),
            ));
        }
        dimensions.insert(dimension.trim().to_owned(), values);
    }
    Ok(dimensions)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
mod tests {
    use super::*;

    fn yaml_map(text: &str) -> Map {
        match crate::yaml::parse(text, Path::new("test.fmf")).unwrap() {
            Value::Map(map) => *map,
            other => panic!("not a map: {other:?}"),
        }
    }

    fn cli(pairs: &[&str]) -> Dimensions {
        parse_cli_context(&pairs.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    fn plan(text: &str, context: &[&str]) -> Result<Plan> {
        Plan::new(
            "/plan",
            &yaml_map(text),
            &[],
            Path::new("/nonexistent"),
            &cli(context),
        )
    }

    fn names(phases: &[Phase]) -> Vec<&str> {
        phases.iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn cli_context() {
        let dims = cli(&["distro=fedora-41,centos-9", "arch=x86_64", "arch=aarch64"]);
        assert_eq!(dims["distro"], ["fedora-41", "centos-9"]);
        assert_eq!(dims["arch"], ["aarch64"]);
        assert!(parse_cli_context(&["distro".into()]).is_err());
        assert!(parse_cli_context(&["distro=a,".into()]).is_err());
    }

    #[test]
    fn phases_shape_and_defaults() {
        let data = yaml_map("discover:\n  - how: fmf\n  - name: x\n    how: shell\n  - {}\n");
        let got = phases("/p", &data, &[], "discover", "fmf").unwrap();
        assert_eq!(names(&got), ["default-0", "x", "default-2"]);
        assert_eq!(got[1].how, "shell");
        assert_eq!(got[2].how, "fmf");
        assert!(!got[0].named && got[1].named);
        assert_eq!(got[0].data["name"], Value::Str("default-0".into()));
        let one = phases(
            "/p",
            &yaml_map("prepare:\n  how: install\n"),
            &[],
            "prepare",
            "shell",
        )
        .unwrap();
        assert_eq!(one.len(), 1);
        assert!(phases("/p", &yaml_map("discover: 5\n"), &[], "discover", "fmf").is_err());
        assert!(phases("/p", &yaml_map("discover: [1]\n"), &[], "discover", "fmf").is_err());
        assert!(
            phases(
                "/p",
                &yaml_map("discover: [{name: a}, {name: a}]\n"),
                &[],
                "discover",
                "fmf"
            )
            .is_err()
        );
        assert!(
            phases(
                "/p",
                &yaml_map("prepare: {order: x}\n"),
                &[],
                "prepare",
                "shell"
            )
            .is_err()
        );
    }

    #[test]
    fn prepare_sorted_by_order_stably() {
        let p = plan(
            "execute: {how: tmt}\nprepare:\n  - name: a\n    order: 60\n  - name: b\n  - name: c\n    order: 10\n  - name: d\n",
            &[],
        )
        .unwrap();
        assert_eq!(names(&p.prepare), ["c", "b", "d", "a"]);
    }

    #[test]
    fn when_rules() {
        let text = "execute: {how: tmt}\nfinish:\n  - name: fedora\n    when: distro == fedora\n  - name: any\n    when: [distro == centos, arch == x86_64]\n  - name: never\n    when: false\n  - name: unknown\n    when: color == red\n";
        let p = plan(text, &["distro=fedora-41", "arch=x86_64"]).unwrap();
        assert_eq!(names(&p.finish), ["fedora", "any"]);
        let p = plan(text, &["distro=centos-9"]).unwrap();
        assert_eq!(names(&p.finish), ["any"]);
        assert!(plan("execute: {}\nfinish: {when: 'distro ==='}\n", &[]).is_err());
    }

    #[test]
    fn context_and_environment() {
        let p = plan(
            "execute: {}\ncontext: {distro: fedora-40, arch: [x86_64, 1]}\nenvironment: {A: 1, B: true}\n",
            &["distro=fedora-41"],
        )
        .unwrap();
        assert_eq!(p.context["distro"], ["fedora-41"]);
        assert_eq!(p.context["arch"], ["x86_64", "1"]);
        assert_eq!(p.environment["A"], "1");
        assert_eq!(p.environment["B"], "True");
        assert!(plan("execute: {}\nenvironment: 3\n", &[]).is_err());
        assert!(plan("execute: {}\ncontext: [a]\n", &[]).is_err());
    }

    #[test]
    fn environment_file_is_overridden() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("vars.env"), "A=file\nB=file\n").unwrap();
        let p = Plan::new(
            "/plan",
            &yaml_map("execute: {}\nenvironment-file: [vars.env]\nenvironment: {B: plan}\n"),
            &[],
            dir.path(),
            &Dimensions::new(),
        )
        .unwrap();
        assert_eq!(p.environment["A"], "file");
        assert_eq!(p.environment["B"], "plan");
    }

    #[test]
    fn fmf_sections_need_unique_names() {
        let ok = plan(
            "execute: {}\ndiscover: [{name: a}, {name: b}, {how: shell}]\n",
            &[],
        )
        .unwrap();
        assert_eq!(ok.fmf_sections().unwrap().len(), 2);
        let single = plan("execute: {}\ndiscover: {how: fmf}\n", &[]).unwrap();
        assert_eq!(single.fmf_sections().unwrap().len(), 1);
        let unnamed = plan("execute: {}\ndiscover: [{name: a}, {how: fmf}]\n", &[]).unwrap();
        assert!(unnamed.fmf_sections().is_err());
        let slash = plan("execute: {}\ndiscover: [{name: a/b}, {name: c}]\n", &[]).unwrap();
        assert!(slash.fmf_sections().is_err());
    }
}
