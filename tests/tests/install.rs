//! `make install` as a packager runs it (issue 15): into a staging
//! `DESTDIR` under a `PREFIX`, the debug build (`PROFILE=debug`, which the
//! test run has built already). Then, as the person who installed it: the
//! five tools run by name from `PREFIX/bin` on PATH, `man -l` renders
//! each tool's page, and bash's completion of each tool is defined once
//! its file is sourced; the same tree in a clean container.

use std::process::Command;

use anyhow::{Context, Result, ensure};
use atex_tests::project_root;

const TOOLS: [&str; 5] = [
    "atex-discover",
    "atex-provision",
    "atex-exec",
    "atex-aggregate",
    "atex-orchestrate",
];

/// Run `command`, failing with its output unless it exits 0; its stdout.
fn ok(command: &mut Command, what: &str) -> Result<String> {
    let out = command
        .output()
        .with_context(|| format!("failed to run {what}"))?;
    ensure!(
        out.status.success(),
        "{what}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn make_install_puts_tools_man_pages_and_completions_in_place() -> Result<()> {
    for tool in ["make", "man", "bash"] {
        ensure!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()?
                .status
                .success(),
            "{tool} is not installed (scripts/install-deps.sh installs it: make deps)"
        );
    }
    let stage = tempfile::Builder::new().prefix("atex-install-").tempdir()?;
    let destdir = stage.path();
    ok(
        Command::new("make")
            .args(["install", "PROFILE=debug", "PREFIX=/opt/atex"])
            .arg(format!("DESTDIR={}", destdir.display()))
            .current_dir(project_root()),
        "make install",
    )?;
    let prefix = destdir.join("opt/atex");
    let path = format!("{}:/usr/bin:/bin", prefix.join("bin").display());
    for tool in TOOLS {
        let version = ok(
            Command::new(tool).arg("--version").env("PATH", &path),
            &format!("{tool} --version from PATH"),
        )?;
        ensure!(version.starts_with(&format!("{tool} ")), "{version}");

        let page = prefix.join(format!("share/man/man1/{tool}.1"));
        let text = ok(
            Command::new("man")
                .arg("-l")
                .arg(&page)
                .env("MANPAGER", "cat")
                .env("MANWIDTH", "80"),
            &format!("man -l {}", page.display()),
        )?;
        ensure!(
            text.contains("NAME") && text.contains(tool) && text.contains("--help"),
            "{text}"
        );

        let completion = prefix.join(format!("share/bash-completion/completions/{tool}"));
        let defined = ok(
            Command::new("bash").args([
                "-c",
                &format!("source '{}' && complete -p {tool}", completion.display()),
            ]),
            &format!("bash completion of {tool}"),
        )?;
        ensure!(defined.contains(&format!(" {tool}")), "{defined}");
        for file in [
            format!("share/zsh/site-functions/_{tool}"),
            format!("share/fish/vendor_completions.d/{tool}.fish"),
        ] {
            ensure!(prefix.join(&file).is_file(), "{file} not installed");
        }
    }
    // A subcommand has its own page.
    ensure!(
        prefix
            .join("share/man/man1/atex-provision-podman.1")
            .is_file(),
        "no page for atex-provision podman"
    );
    in_a_clean_container(&prefix)
}

/// The installed tree in a clean Debian container (`localhost/sut`, which
/// `make sut-image` builds: nothing of this project or of Rust in it, no
/// network): every tool runs by name from PATH, `man -l` renders its page
/// and bash completes it once its file is sourced.
fn in_a_clean_container(prefix: &std::path::Path) -> Result<()> {
    let podman = atex_tests::podman::PodmanConf::new()?;
    let mut script = String::from("set -e; export PATH=/opt/atex/bin:/usr/bin:/bin\n");
    for tool in TOOLS {
        script.push_str(&format!(
            "{tool} --version\n. /opt/atex/share/bash-completion/completions/{tool}\n\
             complete -p {tool}\n\
             MANPAGER=cat MANWIDTH=80 man -l /opt/atex/share/man/man1/{tool}.1 > /tmp/page\n\
             grep -q '^NAME' /tmp/page && grep -q -e '--help' /tmp/page && echo 'page of {tool} rendered'\n"
        ));
    }
    let missing = "the image has no man (an old localhost/sut: `make sut-image` builds it again)";
    let out = ok(
        Command::new("podman")
            .env("CONTAINERS_CONF", podman.path())
            .args(["run", "--rm", "--network", "none", "--pull", "never", "-v"])
            .arg(format!("{}:/opt/atex:ro", prefix.display()))
            .args(["localhost/sut", "bash", "-c", &script]),
        "the installed tools in a clean localhost/sut container (make sut-image builds it)",
    )
    .context(missing)?;
    for tool in TOOLS {
        ensure!(
            out.lines().any(|l| l.starts_with(&format!("{tool} "))),
            "{tool} --version: {out}"
        );
        ensure!(
            out.lines()
                .any(|l| l.starts_with("complete ") && l.ends_with(&format!(" {tool}"))),
            "complete -p {tool}: {out}"
        );
    }
    // Each page rendered with its NAME section and --help.
    for tool in TOOLS {
        ensure!(
            out.contains(&format!("page of {tool} rendered")),
            "man -l {tool}.1 in the container: {out}"
        );
    }
    Ok(())
}
