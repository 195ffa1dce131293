//! Harness of the cross-tool integration tests: temp dirs with fixture
//! trees, locating and running the real atex binaries, and parsing their
//! stdout into the atex-shared record types.
#![warn(missing_docs)]

pub mod pipe;
pub mod podman;
pub mod procs;
pub mod sshd;
pub mod tf_server;
pub mod timeline;
pub mod webdriver;

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use serde::de::DeserializeOwned;

/// The tools this workspace builds, by binary name and package.
const TOOLS: &[(&str, &str)] = &[
    ("atex-discover", "atex-discover"),
    ("atex-provision", "atex-provision"),
    ("atex-exec", "atex-exec"),
    ("atex-aggregate", "atex-aggregate"),
    ("atex-orchestrate", "atex-orchestrate"),
];

/// Serializes fallback builds: parallel tests in one process would otherwise
/// start several cargo builds of the same binary.
static BUILD: Mutex<()> = Mutex::new(());

/// In `dir`, run `atex-exec --machine local --artifacts out < tests.jsonl |
/// atex-aggregate --output store` (the built tools, through bash); the
/// pipeline's exit code (atex-aggregate's).
pub fn exec_into_store(dir: &Path) -> Result<Option<i32>> {
    let (exec, aggregate) = (bin_path("atex-exec")?, bin_path("atex-aggregate")?);
    let status = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "'{}' --machine local --artifacts out < tests.jsonl | '{}' --output store",
            exec.display(),
            aggregate.display()
        ))
        .current_dir(dir)
        .status()
        .context("failed to run bash")?;
    Ok(status.code())
}

/// The project root (the workspace directory holding README.md).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// Path of the built binary `name` (e.g. `atex-discover`).
///
/// The binaries sit in the profile directory of the target dir, the parent
/// of the `deps/` directory this test executable runs from (Cargo offers
/// `CARGO_BIN_EXE_*` only to a package's own binaries). `cargo nextest run
/// --workspace` and `cargo test --workspace` build every binary first. When
/// the binary is missing (`cargo test -p atex-tests`), or `ATEX_TESTS_BUILD`
/// is set, it is built here with the cargo running the tests.
/// `ATEX_BIN_DIR` overrides the directory.
pub fn bin_path(name: &str) -> Result<PathBuf> {
    let dir = match std::env::var_os("ATEX_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let exe = std::env::current_exe().context("failed to find the test executable")?;
            let deps = exe.parent().context("test executable has no directory")?;
            deps.parent()
                .context("test executable's directory has no parent")?
                .to_path_buf()
        }
    };
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.exists() || std::env::var_os("ATEX_TESTS_BUILD").is_some() {
        build(name, &dir)?;
    }
    if !path.exists() {
        bail!("binary {} not found after building it", path.display());
    }
    Ok(path)
}

fn build(name: &str, dir: &Path) -> Result<()> {
    let package = TOOLS
        .iter()
        .find(|(bin, _)| *bin == name)
        .map(|(_, package)| *package)
        .with_context(|| format!("unknown atex binary {name}"))?;
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--quiet", "-p", package, "--bin", name])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if dir.file_name() == Some(OsStr::new("release")) {
        command.arg("--release");
    }
    let status = command
        .status()
        .with_context(|| format!("failed to run cargo build for {name}"))?;
    if !status.success() {
        bail!("cargo build of {name} failed ({status})");
    }
    Ok(())
}

/// A temporary directory that holds a test's files; removed on drop.
#[derive(Debug)]
pub struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    /// An empty temporary directory.
    pub fn new() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("atex-tests-")
            .tempdir()
            .context("failed to create a temp dir")?;
        Ok(Fixture { dir })
    }

    /// An fmf tree: `.fmf/version` plus the given `(relative path,
    /// content)` files. Files named `*.sh` are made executable.
    pub fn fmf_tree(files: &[(&str, &str)]) -> Result<Self> {
        let fixture = Fixture::new()?;
        fixture.write(".fmf/version", "1\n")?;
        for (path, content) in files {
            fixture.write(path, content)?;
        }
        Ok(fixture)
    }

    /// The directory (canonical, so it compares equal to paths that tools
    /// resolve).
    pub fn path(&self) -> PathBuf {
        self.dir
            .path()
            .canonicalize()
            .unwrap_or_else(|_| self.dir.path().to_path_buf())
    }

    /// Write `content` to `rel` inside the fixture, creating directories.
    pub fn write(&self, rel: &str, content: &str) -> Result<PathBuf> {
        let path = self.dir.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("failed to create {}", parent.display()))?;
        }
        std::fs::write(&path, content)
            .with_context(|| format!("failed to write {}", path.display()))?;
        #[cfg(unix)]
        if rel.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("failed to chmod {}", path.display()))?;
        }
        Ok(path)
    }
}

/// What a finished tool run left behind.
#[derive(Debug)]
pub struct Output {
    /// Exit code; `None` if a signal ended the process.
    pub code: Option<i32>,
    /// Everything written on stdout.
    pub stdout: Vec<u8>,
    /// Everything written on stderr, lossily decoded (it is for people).
    pub stderr: String,
}

impl Output {
    /// stdout as text, lossily decoded.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Parse stdout as line-JSON records of type `T`.
    pub fn records<T: DeserializeOwned>(&self) -> Result<Vec<T>> {
        parse_records(&self.stdout, "stdout")
    }
}

/// Run the built binary `name` with `args`, feeding `stdin` (empty stdin
/// when `None`), and collect its output.
pub fn run<I, S>(name: &str, args: I, stdin: Option<&[u8]>) -> Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let bin = bin_path(name)?;
    let mut child = Command::new(&bin)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("failed to start {}", bin.display()))?;
    let mut input = child.stdin.take().context("child has no stdin")?;
    let data = stdin.unwrap_or_default().to_vec();
    // A separate thread, so a tool that writes a lot before reading cannot
    // deadlock against us.
    let feeder = std::thread::spawn(move || {
        // The tool may exit without reading its input; that is its business.
        let _ = input.write_all(&data);
    });
    let out = child
        .wait_with_output()
        .with_context(|| format!("failed to wait for {name}"))?;
    let _ = feeder.join();
    Ok(Output {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Parse line-JSON records of type `T`; the error names the bad line.
pub fn parse_records<T: DeserializeOwned>(bytes: &[u8], source: &str) -> Result<Vec<T>> {
    atex_shared::jsonl::Reader::new(bytes, source)
        .collect::<Result<Vec<T>, _>>()
        .context("output is not valid line-JSON records")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_writes_an_fmf_tree_with_executable_scripts() -> Result<()> {
        let tree = Fixture::fmf_tree(&[("a/main.fmf", "test: ./t.sh\n"), ("a/t.sh", "true\n")])?;
        assert!(tree.path().join(".fmf/version").is_file());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(tree.path().join("a/t.sh"))?
                .permissions()
                .mode();
            assert_eq!(mode & 0o111, 0o111);
        }
        Ok(())
    }

    #[test]
    fn parse_records_names_the_bad_line() {
        let err = parse_records::<atex_shared::records::Plan>(b"{}\nnope\n", "stdout")
            .expect_err("line 2 is not JSON");
        assert!(format!("{err:#}").contains("stdout:2:"), "{err:#}");
    }
}
