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
