//! The image the README's podman examples name, `localhost/sut` (`make
//! sut-image`: Debian's minbase with python3, rsync, sshd and systemd,
//! by mmdebstrap and `podman import`), runs the bundled examples through
//! atex-orchestrate in each podman variant: plain `podman exec`, sshd in
//! the container (`--ssh`) and systemd as its init (`--systemd`); every
//! test passes and no container is left.

use std::ffi::OsStr;
use std::time::Duration;

use anyhow::{Result, ensure};
use atex_tests::Fixture;
use atex_tests::podman::Labeled;
use atex_tests::timeline::Orchestrate;

const IMAGE: &str = "localhost/sut";

fn examples_on_the_image(variant: &str) -> Result<()> {
    let podman = Labeled::new("sut-image")?;
    let exists = podman
        .command()
        .args(["image", "exists", IMAGE])
        .status()?
        .success();
    ensure!(
        exists,
        "the podman image {IMAGE} is missing: build it with `make sut-image` \
         (make deps builds it when missing)"
    );
    let work = Fixture::new()?;
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let artifacts = work.path().join("artifacts");
    let spec = format!(
        "podman --image {IMAGE} --max 2 {variant} '--run-option=--label={}'",
        podman.label()
    );
    let conf = podman.conf();
    let args: [&OsStr; 6] = [
        "--root".as_ref(),
        examples.as_os_str(),
        "--provision".as_ref(),
        spec.as_ref(),
        "--artifacts".as_ref(),
        artifacts.as_os_str(),
    ];
    let done = Orchestrate::start(&args, &[("CONTAINERS_CONF", conf.as_os_str())], b"")?
        .finish(Duration::from_secs(180))?;
    let err = done.stderr();
    ensure!(done.code == Some(0), "exit {:?}: {err}", done.code);
    let results = done.results()?;
    let mut names: Vec<&str> = results.iter().map(|r| r.test.as_str()).collect();
    names.sort_unstable();
    ensure!(
        names == ["/tests/basic", "/tests/distro", "/tests/slow"],
        "{names:?}: {err}"
    );
    ensure!(
        results.iter().all(|r| r.status.as_deref() == Some("pass")),
        "{results:?}"
    );
    let left = podman.containers()?;
    ensure!(left.is_empty(), "containers left: {left:?}");
    Ok(())
}

#[test]
fn the_examples_pass_on_the_image_over_podman_exec() -> Result<()> {
    examples_on_the_image("")
}

#[test]
fn the_examples_pass_on_the_image_over_ssh() -> Result<()> {
    examples_on_the_image("--ssh")
}

#[test]
fn the_examples_pass_on_the_image_under_systemd() -> Result<()> {
    examples_on_the_image("--systemd")
}
