//! The record types the atex tools exchange as line-JSON (DESIGN.md
//! "Records"): [`Test`], [`Machine`] and [`TestResult`].
//!
//! Fields are snake_case. Readers ignore fields they do not know, so new
//! fields can be added without breaking older tools; collections and flags
//! that are absent on read take their empty or default value.

use std::path::PathBuf;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::duration::DEFAULT_TEST_DURATION;

/// One selected test, as `atex-discover tests` writes it and `atex-exec` and
/// `atex-orchestrate` read it.
///
/// ```
/// use atex_shared::records::Test;
/// let line = r#"{"name": "/tests/basic", "root": "/abs/tree", "path": "tests/basic",
///   "test": "./runtest.sh", "duration": 300, "environment": {"K": "V"},
///   "require": ["pkg", {"type": "library", "name": "x"}], "recommend": [],
///   "tty": false, "tag": ["x"],
///   "plan": {"name": "/plans/ci", "environment": {}, "context": {"distro": ["fedora-41"]},
///            "prepare": [], "finish": []},
///   "data": {"summary": "basic", "test": "./runtest.sh"}}"#;
/// let test: Test = serde_json::from_str(line).unwrap();
/// assert_eq!(test.name, "/tests/basic");
/// assert_eq!(test.duration, 300);
/// assert_eq!(test.environment["K"], "V");
/// assert_eq!(test.plan.context["distro"], ["fedora-41"]);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Test {
    /// The fmf node name, e.g. `/tests/basic`; prefixed with `/<section>`
    /// when the discover section that selected it has a `name` (as ATEX
    /// does; `path` is not prefixed, it stays relative to `root`).
    pub name: String,
    /// Absolute path of the fmf tree root on the controller.
    pub root: PathBuf,
    /// The test directory relative to `root`, without a leading slash (for
    /// example `tests/basic`; empty for the root itself). The test runs with
    /// this directory as its working directory.
    pub path: String,
    /// The shell snippet run by bash (tmt's `test` key).
    pub test: String,
    /// The time budget in seconds, from the tmt duration grammar (see
    /// [`crate::duration`]); 300 when absent on read.
    #[serde(default = "default_duration")]
    pub duration: u64,
    /// Environment variables of the test, the plan's environment already
    /// applied on top; values are strings, in the order they were defined.
    #[serde(default)]
    pub environment: IndexMap<String, String>,
    /// Required packages: package-name strings, or dicts such as
    /// `{"type": "library", ...}` and `{"type": "file", ...}`, verbatim.
    #[serde(default)]
    pub require: Vec<serde_json::Value>,
    /// Recommended packages, in the same forms as `require`; missing ones are
    /// not an error.
    #[serde(default)]
    pub recommend: Vec<serde_json::Value>,
    /// Whether the test wants a terminal.
    #[serde(default)]
    pub tty: bool,
    /// The test's tags.
    #[serde(default)]
    pub tag: Vec<String>,
    /// The plan the test was selected by.
    #[serde(default)]
    pub plan: Plan,
    /// The whole adjusted fmf node, custom keys included, as JSON.
    #[serde(default)]
    pub data: serde_json::Value,
}

fn default_duration() -> u64 {
    DEFAULT_TEST_DURATION
}

/// The parts of a tmt plan that a test's execution needs, carried in every
/// [`Test`] record.
///
/// ```
/// use atex_shared::records::Plan;
/// let plan: Plan = serde_json::from_str(
///     r#"{"name": "/plans/ci", "environment": {"A": "1"},
///         "context": {"arch": ["x86_64"]},
///         "prepare": [{"how": "install", "package": ["make"]}], "finish": []}"#,
/// ).unwrap();
/// assert_eq!(plan.name, "/plans/ci");
/// assert_eq!(plan.prepare[0]["how"], "install");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The plan's fmf node name, e.g. `/plans/ci`.
    #[serde(default)]
    pub name: String,
    /// The plan's environment (values as strings, definition order kept).
    #[serde(default)]
    pub environment: IndexMap<String, String>,
    /// The fmf context the tests were adjusted with: dimension to values.
    #[serde(default)]
    pub context: IndexMap<String, Vec<String>>,
    /// The plan's `prepare` phases, verbatim.
    #[serde(default)]
    pub prepare: Vec<serde_json::Value>,
    /// The plan's `finish` phases, verbatim.
    #[serde(default)]
    pub finish: Vec<serde_json::Value>,
}

/// One provisioned system, as `atex-provision` writes it and `atex-exec` and
/// `atex-orchestrate` read it.
///
/// ```
/// use atex_shared::records::{Connection, Machine};
/// let machine: Machine = serde_json::from_str(
///     r#"{"id": "podman/3f2a9c0e", "provisioner": "podman",
///         "connection": {"kind": "podman", "container": "3f2a9c0e"},
///         "platform": "fedora-41@x86_64", "release": {"container": "3f2a9c0e"}}"#,
/// ).unwrap();
/// assert_eq!(machine.connection, Connection::Podman { container: "3f2a9c0e".into() });
/// let local: Machine = serde_json::from_str(
///     r#"{"id": "local/0", "provisioner": "local", "connection": {"kind": "local"},
///         "platform": "local"}"#,
/// ).unwrap();
/// assert_eq!(local.connection, Connection::Local);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Unique identifier, stable for the machine's life, e.g.
    /// `podman/3f2a9c0e`.
    pub id: String,
    /// Name of the provisioner that made it (`local`, `ssh`, `podman`,
    /// `testing-farm`).
    pub provisioner: String,
    /// How to reach the machine.
    pub connection: Connection,
    /// The platform results are reported for, e.g. `fedora-41@x86_64`.
    #[serde(default)]
    pub platform: String,
    /// The fmf context of the machine's platform, dimension to values
    /// (`distro` → `["fedora-41"]`), set with `-c DIM=VALUE` on any
    /// `atex-provision` kind; empty (and left out of the JSON) when not
    /// given.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub context: IndexMap<String, Vec<String>>,
    /// Whatever `atex-provision release` needs to give the machine back;
    /// opaque to every other tool.
    #[serde(default)]
    pub release: serde_json::Value,
}

/// Parse `-c DIM=VALUE[,VALUE...]` arguments (atex-discover's and
/// atex-provision's) into a context, dimension to values, in order; a
/// later argument for the same dimension replaces the earlier one. The
/// error is the argument without `=`.
///
/// ```
/// let context = atex_shared::records::parse_context(&[
///     "distro=fedora-41".to_owned(), "arch=x86_64,aarch64".to_owned(),
/// ]).unwrap();
/// assert_eq!(context["arch"], ["x86_64", "aarch64"]);
/// assert!(atex_shared::records::parse_context(&["distro".to_owned()]).is_err());
/// ```
pub fn parse_context(specs: &[String]) -> Result<IndexMap<String, Vec<String>>, String> {
    let mut dimensions = IndexMap::new();
    for spec in specs {
        let (dimension, values) = spec.split_once('=').ok_or_else(|| spec.clone())?;
        dimensions.insert(
            dimension.to_owned(),
            values.split(',').map(str::to_owned).collect(),
        );
    }
    Ok(dimensions)
}

/// How to reach a [`Machine`]; the JSON form is tagged by `"kind"`.
///
/// ```
/// use atex_shared::records::Connection;
/// let ssh: Connection = serde_json::from_str(
///     r#"{"kind": "ssh", "host": "10.0.0.5", "port": 2222, "user": "root",
///         "identity_file": "/abs/key", "options": {"StrictHostKeyChecking": "no"}}"#,
/// ).unwrap();
/// let Connection::Ssh { port, options, .. } = &ssh else { panic!() };
/// assert_eq!(*port, 2222);
/// assert_eq!(options["StrictHostKeyChecking"], "no");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Connection {
    /// Through the system OpenSSH client.
    Ssh {
        /// Host name or address.
        host: String,
        /// TCP port; 22 when absent on read.
        #[serde(default = "default_ssh_port")]
        port: u16,
        /// Remote user name.
        user: String,
        /// Private key file, absolute; `None` leaves the choice to the ssh
        /// client (agent, `~/.ssh/config`).
        #[serde(default)]
        identity_file: Option<PathBuf>,
        /// Extra `-o KEY=VALUE` options for the ssh client, in order.
        #[serde(default)]
        options: IndexMap<String, String>,
    },
    /// A podman container on the controller, reached with `podman exec`.
    Podman {
        /// Container name or id.
        container: String,
    },
    /// The controller itself.
    Local,
}

fn default_ssh_port() -> u16 {
    22
}

/// One reported result, as `atex-exec` writes it (streamed as results
/// happen) and `atex-aggregate` reads it.
///
/// Keys that a test reports beyond the known ones are kept verbatim in
/// [`TestResult::extra`] and written back at the top level.
///
/// ```
/// use atex_shared::records::TestResult;
/// let line = r#"{"test": "/tests/basic", "name": null, "status": "pass", "note": null,
///   "files": ["output.txt"], "platform": "fedora-41@x86_64", "machine": "podman/3f2a9c0e",
///   "artifacts": "/abs/out/tests/basic", "exit_code": 0,
///   "started": "2026-01-02T03:04:05Z", "duration": 1.23, "attempt": 0, "rerun": 3}"#;
/// let result: TestResult = serde_json::from_str(line).unwrap();
/// assert_eq!(result.status.as_deref(), Some("pass"));
/// assert_eq!(result.extra["rerun"], 3);
/// let back = serde_json::to_value(&result).unwrap();
/// assert_eq!(back["rerun"], 3);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    /// Name of the test the result belongs to, e.g. `/tests/basic`.
    pub test: String,
    /// Subtest name (may contain `/`), or `None` for the test itself; the
    /// rendered name is `<test>/<name>`.
    #[serde(default)]
    pub name: Option<String>,
    /// The verdict: one of `pass`, `fail`, `info`, `warn`, `skip`, `error`,
    /// `infra` (infrastructure failure), or any other string a test reports.
    /// `None` (written as `null`) when the test reported a result without a
    /// status, as ATEX 1.2 keeps it; the tools count it as not passed
    /// (exit 1), because nothing said it passed.
    #[serde(default)]
    pub status: Option<String>,
    /// A short free-form explanation.
    #[serde(default)]
    pub note: Option<String>,
    /// Names of the stored files, relative to the result's directory under
    /// `artifacts`; the test output's name comes first.
    #[serde(default)]
    pub files: Vec<String>,
    /// The platform the test ran on, e.g. `fedora-41@x86_64`.
    #[serde(default)]
    pub platform: String,
    /// [`Machine::id`] of the machine it ran on.
    #[serde(default)]
    pub machine: String,
    /// Absolute directory holding the test's stored files.
    #[serde(default)]
    pub artifacts: PathBuf,
    /// Exit code of the test script, `None` if it did not exit (killed,
    /// lost connection) or the result was reported by the test itself
    /// before exiting.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// When the test started, RFC 3339.
    #[serde(default)]
    pub started: String,
    /// Seconds from start to the result.
    #[serde(default)]
    pub duration: f64,
    /// 0 for the first run of the test, 1 for the first rerun, and so on.
    #[serde(default)]
    pub attempt: u32,
    /// Custom keys reported by the test, verbatim, in their order.
    #[serde(flatten)]
    pub extra: IndexMap<String, serde_json::Value>,
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn sample_test() -> Test {
        Test {
            name: "/tests/basic".into(),
            root: "/abs/tree".into(),
            path: "tests/basic".into(),
            test: "./runtest.sh".into(),
            duration: 300,
            environment: [
                ("B".to_owned(), "2".to_owned()),
                ("A".to_owned(), "1".to_owned()),
            ]
            .into_iter()
            .collect(),
            require: vec![json!("pkg"), json!({"type": "file", "pattern": ["x"]})],
            recommend: vec![],
            tty: false,
            tag: vec!["x".into()],
            plan: Plan {
                name: "/plans/ci".into(),
                context: [("distro".to_owned(), vec!["fedora-41".to_owned()])]
                    .into_iter()
                    .collect(),
                ..Plan::default()
            },
            data: json!({"test": "./runtest.sh", "custom": [1, 2]}),
        }
    }

    #[test]
    fn test_record_round_trips_and_keeps_environment_order() {
        let test = sample_test();
        let line = serde_json::to_string(&test).unwrap();
        assert!(line.find("\"B\"").unwrap() < line.find("\"A\"").unwrap());
        let back: Test = serde_json::from_str(&line).unwrap();
        assert_eq!(back, test);
    }

    #[test]
    fn unknown_fields_are_ignored_and_defaults_apply() {
        let test: Test = serde_json::from_str(
            r#"{"name": "/t", "root": "/r", "path": "t", "test": "true", "future": 1}"#,
        )
        .unwrap();
        assert_eq!(test.duration, 300);
        assert!(test.environment.is_empty());
        assert_eq!(test.data, serde_json::Value::Null);

        let machine: Machine = serde_json::from_str(
            r#"{"id": "ssh/h", "provisioner": "ssh", "future": true,
                "connection": {"kind": "ssh", "host": "h", "user": "root", "new": 1}}"#,
        )
        .unwrap();
        let Connection::Ssh {
            port,
            identity_file,
            ..
        } = machine.connection
        else {
            panic!("not ssh");
        };
        assert_eq!(port, 22);
        assert_eq!(identity_file, None);
    }

    #[test]
    fn connection_kinds_serialize_tagged() {
        assert_eq!(
            serde_json::to_value(Connection::Local).unwrap(),
            json!({"kind": "local"})
        );
        assert_eq!(
            serde_json::to_value(Connection::Podman {
                container: "c".into()
            })
            .unwrap(),
            json!({"kind": "podman", "container": "c"})
        );
        assert!(serde_json::from_value::<Connection>(json!({"kind": "telnet"})).is_err());
    }

    #[test]
    fn result_keeps_custom_keys_and_writes_nulls() {
        let line = r#"{"test": "/t", "status": "weird", "rerun": 3, "extra": {"a": [1]}}"#;
        let result: TestResult = serde_json::from_str(line).unwrap();
        assert_eq!(result.status.as_deref(), Some("weird"));
        assert_eq!(result.extra.len(), 2);
        let value = serde_json::to_value(&result).unwrap();
        assert_eq!(value["name"], serde_json::Value::Null);
        assert_eq!(value["extra"], json!({"a": [1]}));
        let back: TestResult = serde_json::from_value(value).unwrap();
        assert_eq!(back, result);
    }

    fn small_string() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_/ .é-]{0,12}"
    }

    fn string_map() -> impl Strategy<Value = IndexMap<String, String>> {
        proptest::collection::vec((small_string(), small_string()), 0..4)
            .prop_map(|v| v.into_iter().collect())
    }

    fn json_leaf() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            small_string().prop_map(serde_json::Value::from),
        ]
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        json_leaf().prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::vec((small_string(), inner), 0..4)
                    .prop_map(|v| serde_json::Value::Object(v.into_iter().collect())),
            ]
        })
    }

    prop_compose! {
        fn arb_test()(
            name in small_string(), root in small_string(), path in small_string(),
            test in small_string(), duration in any::<u64>(), environment in string_map(),
            require in proptest::collection::vec(json_value(), 0..3),
            tty in any::<bool>(), tag in proptest::collection::vec(small_string(), 0..3),
            plan_env in string_map(),
            context in proptest::collection::vec(
                (small_string(), proptest::collection::vec(small_string(), 0..3)), 0..3),
            prepare in proptest::collection::vec(json_value(), 0..3),
            data in json_value(),
        ) -> Test {
            Test {
                name, root: root.into(), path, test, duration, environment,
                require: require.clone(), recommend: require, tty, tag,
                plan: Plan {
                    name: "/plans/p".into(), environment: plan_env,
                    context: context.into_iter().collect(),
                    prepare: prepare.clone(), finish: prepare,
                },
                data,
            }
        }
    }

    prop_compose! {
        fn arb_result()(
            test in small_string(), name in proptest::option::of(small_string()),
            status in proptest::option::of(small_string()), note in proptest::option::of(small_string()),
            files in proptest::collection::vec(small_string(), 0..3),
            exit_code in proptest::option::of(any::<i32>()),
            duration in any::<f64>().prop_filter("finite", |d| d.is_finite()),
            attempt in any::<u32>(),
            extra in proptest::collection::vec(("x_[a-z]{0,6}", json_value()), 0..3),
        ) -> TestResult {
            TestResult {
                test, name, status, note, files, platform: "p".into(), machine: "m".into(),
                artifacts: "/a".into(), exit_code, started: "2026-01-01T00:00:00Z".into(),
                duration, attempt, extra: extra.into_iter().collect(),
            }
        }
    }

    proptest! {
        #[test]
        fn test_records_round_trip(test in arb_test()) {
            let line = serde_json::to_string(&test).unwrap();
            let back: Test = serde_json::from_str(&line).unwrap();
            prop_assert_eq!(back, test);
        }

        #[test]
        fn results_round_trip(result in arb_result()) {
            let line = serde_json::to_string(&result).unwrap();
            let back: TestResult = serde_json::from_str(&line).unwrap();
            prop_assert_eq!(back, result);
        }

        #[test]
        fn machines_round_trip(
            host in small_string(), port in any::<u16>(), options in string_map(),
            key in proptest::option::of(small_string()), release in json_value(),
        ) {
            let machine = Machine {
                context: Default::default(),
                id: format!("ssh/{host}"), provisioner: "ssh".into(),
                connection: Connection::Ssh {
                    host, port, user: "root".into(),
                    identity_file: key.map(PathBuf::from), options,
                },
                platform: "fedora-41@x86_64".into(), release,
            };
            let line = serde_json::to_string(&machine).unwrap();
            let back: Machine = serde_json::from_str(&line).unwrap();
            prop_assert_eq!(back, machine);
        }
    }
}
