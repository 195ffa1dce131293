//! Podman for tests: the install check and the configuration that makes
//! rootful podman work on these machines (ENVIRONMENT.md: runc and explicit
//! ulimits), shared by every test that starts a container.

use std::path::PathBuf;

use anyhow::Result;

/// A `containers.conf` for podman on these machines, in a temp dir that
/// lives as long as this value; pass [`PodmanConf::path`] as
/// `CONTAINERS_CONF` to every podman command.
#[derive(Debug)]
pub struct PodmanConf {
    dir: tempfile::TempDir,
}

impl PodmanConf {
    /// Check that podman is installed (failing with how to install it,
    /// never skipping) and write the configuration.
    pub fn new() -> Result<PodmanConf> {
        let found = std::process::Command::new("podman")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        anyhow::ensure!(
            found,
            "podman is not installed: run `make deps` (scripts/install-deps.sh) \
             or `apt-get install podman runc`"
        );
        let dir = tempfile::tempdir()?;
        std::fs::write(
            dir.path().join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=4096:4096\"]\n\
             [engine]\nruntime = \"runc\"\n",
        )?;
        Ok(PodmanConf { dir })
    }

    /// The `containers.conf` file.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("containers.conf")
    }
}

/// A container name unique to this process and moment: `<prefix>-<pid>-<ns>`.
pub fn unique_name(prefix: &str) -> Result<String> {
    Ok(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .subsec_nanos()
    ))
}

/// Podman for one test: the configuration and a label (`atex.test=<unique>`)
/// only this test's containers carry, so the test lists and removes its own
/// containers and never another's. On drop, whatever is left with the
/// label is removed (a failed test leaks nothing).
#[derive(Debug)]
pub struct Labeled {
    conf: PodmanConf,
    label: String,
}

impl Labeled {
    /// Check podman (see [`PodmanConf::new`]) and pick a label starting
    /// with `prefix`.
    pub fn new(prefix: &str) -> Result<Labeled> {
        Ok(Labeled {
            conf: PodmanConf::new()?,
            label: format!("atex.test={}", unique_name(prefix)?),
        })
    }

    /// The `containers.conf` to run podman with.
    pub fn conf(&self) -> PathBuf {
        self.conf.path()
    }

    /// The label, `atex.test=<unique>`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// A podman command using this test's configuration.
    pub fn command(&self) -> std::process::Command {
        let mut command = std::process::Command::new("podman");
        command.env("CONTAINERS_CONF", self.conf.path());
        command
    }

    /// Names of this test's containers, in any state.
    pub fn containers(&self) -> Result<Vec<String>> {
        let out = self
            .command()
            .args(["ps", "-a", "--format", "{{.Names}}", "--filter"])
            .arg(format!("label={}", self.label))
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "podman ps: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect())
    }

    /// `podman inspect --format FORMAT CONTAINER`, trimmed.
    pub fn inspect(&self, container: &str, format: &str) -> Result<String> {
        let out = self
            .command()
            .args(["inspect", "--format", format, container])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "podman inspect: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

impl Drop for Labeled {
    fn drop(&mut self) {
        if let Ok(names) = self.containers() {
            for name in names {
                let _ = self.command().args(["rm", "-f", "-t", "0", &name]).output();
            }
        }
    }
}
