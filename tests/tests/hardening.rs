//! Bad input that must not take a tool down (issue 10): each case runs the
//! real binary under a memory limit (`ulimit -v`), so a regression shows
//! up as a failure here and not as a machine that swaps.

use std::process::Command;

use anyhow::{Context, Result, ensure};
use atex_tests::{Fixture, bin_path};

/// Address space for a tool under test: far above what atex needs (tens of
/// MB), far below what an unbounded expansion takes (the alias bomb below
/// reached 24 GB).
const ULIMIT_KB: u64 = 2_000_000;

/// Run `bin args...` through bash under [`ULIMIT_KB`].
fn limited(bin: &std::path::Path, args: &[&str]) -> Result<std::process::Output> {
    // `timeout`: a tool that blocks (on a FIFO, say) fails the test instead
    // of hanging it.
    Command::new("timeout")
        .arg("60")
        .arg("bash")
        .arg("-c")
        .arg(format!("ulimit -v {ULIMIT_KB} && exec \"$0\" \"$@\""))
        .arg(bin)
        .args(args)
        .output()
        .context("failed to run bash")
}

/// Issue 10 item 2: ten nested levels of ten aliases each (a 468-byte
/// file) is refused with its file:line:col, exit 2, in bounded memory.
#[test]
fn yaml_alias_bomb_is_bad_input_in_bounded_memory() -> Result<()> {
    let mut text = String::from("a: &a [x,x,x,x,x,x,x,x,x,x]\n");
    let mut prev = "a".to_owned();
    for level in 0..9 {
        let name = format!("b{level}");
        let items = vec![format!("*{prev}"); 10].join(",");
        text.push_str(&format!("{name}: &{name} [{items}]\n"));
        prev = name;
    }
    let tree = Fixture::fmf_tree(&[("main.fmf", &text)])?;
    let root = tree.path();
    let bin = bin_path("atex-discover")?;
    for args in [
        vec!["ls", root.to_str().context("path")?],
        vec!["tree", root.to_str().context("path")?],
        vec!["tests", "--root", root.to_str().context("path")?],
    ] {
        let out = limited(&bin, &args)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let at = format!("{}:", root.join("main.fmf").display());
        ensure!(
            out.status.code() == Some(2) || (args[0] == "tree" && out.status.code() == Some(0)),
            "{args:?}: exit {:?}\n{stderr}",
            out.status.code()
        );
        let said = format!("{stderr}{}", String::from_utf8_lossy(&out.stdout));
        // `tree` prints python fmf's error record: a root-relative file and
        // the line in its message.
        let located = said.contains(&at) || (said.contains("main.fmf") && said.contains("line 5"));
        ensure!(
            located && said.contains("alias budget"),
            "{args:?} must name the file and the budget:\n{said}"
        );
    }
    Ok(())
}

/// Issue 10 item 13: a `.fmf` file that is a link to /dev/zero (which
/// never ends) or a FIFO (which blocks until a writer comes) is refused by
/// name, exit 2, at once and in bounded memory.
#[test]
fn fmf_files_that_are_not_regular_files_are_refused() -> Result<()> {
    let bin = bin_path("atex-discover")?;
    for kind in ["zero", "fifo"] {
        let tree = Fixture::fmf_tree(&[("main.fmf", "test: ./t.sh\n")])?;
        let special = tree.path().join("sub").join("node.fmf");
        std::fs::create_dir_all(special.parent().context("parent")?)?;
        if kind == "zero" {
            std::os::unix::fs::symlink("/dev/zero", &special)?;
        } else {
            let made = Command::new("mkfifo").arg(&special).status()?;
            ensure!(made.success(), "mkfifo failed");
        }
        let root = tree.path();
        let out = limited(&bin, &["ls", root.to_str().context("path")?])?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.code() == Some(2)
                && stderr.contains(&special.display().to_string())
                && stderr.contains("not a regular file"),
            "{kind}: exit {:?}\n{stderr}",
            out.status.code()
        );
    }
    Ok(())
}

/// Issue 10 item 16: a record line whose string is left open was reported
/// at 1:1 (serde_json saw the line break as a control character on the
/// next line); it is located at the end of its line, for every tool that
/// reads records.
#[test]
fn an_unterminated_record_line_is_located_at_its_end() -> Result<()> {
    let out = atex_tests::run(
        "atex-exec",
        [
            "--machine",
            "local",
            "--artifacts",
            "/nonexistent/never-made",
        ],
        Some(b"{\"name\": \"/b\n"),
    )?;
    ensure!(
        out.code == Some(2)
            && out
                .stderr
                .contains("<stdin>:1:12: EOF while parsing a string"),
        "exit {:?}\n{}",
        out.code,
        out.stderr
    );
    let store = Fixture::new()?;
    let out = atex_tests::run(
        "atex-aggregate",
        ["--output".as_ref(), store.path().join("s").as_os_str()],
        Some(b"{\"test\": \"/b\n"),
    )?;
    ensure!(
        out.code == Some(2) && out.stderr.contains(":1:12: EOF while parsing a string"),
        "exit {:?}\n{}",
        out.code,
        out.stderr
    );
    Ok(())
}

/// A 64 KB file of nested sequences (`- - - ... x`) overflowed
/// atex-discover's stack (found by the fmf_yaml fuzz target): nesting has
/// a cap, and deeper is exit 2 with file:line:col.
#[test]
fn deep_yaml_nesting_is_bad_input_not_a_crash() -> Result<()> {
    let text = format!("a:\n{}x\n", "- ".repeat(32_000));
    let tree = Fixture::fmf_tree(&[("main.fmf", &text)])?;
    let root = tree.path();
    let out = limited(
        &bin_path("atex-discover")?,
        &["ls", root.to_str().context("path")?],
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(2)
            && stderr.contains(&format!("{}:2:", root.join("main.fmf").display()))
            && stderr.contains("nested deeper"),
        "exit {:?}\n{stderr}",
        out.status.code()
    );
    Ok(())
}
