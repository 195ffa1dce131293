//! `cargo run -p xtask -- DIR`: write every tool's man pages and shell
//! completions under DIR, from the same clap definitions the tools parse
//! their command lines with (so they never drift from `--help`):
//!
//! - `DIR/man/man1/atex-exec.1`, and one page per subcommand
//!   (`atex-discover-tests.1`, `atex-provision-podman.1`, ...);
//! - `DIR/completions/bash/atex-exec`, `DIR/completions/zsh/_atex-exec`,
//!   `DIR/completions/fish/atex-exec.fish`.
//!
//! `make install` runs it and copies the files to where man and the
//! shells look for them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

/// The tools, by the command of each.
fn tools() -> Vec<clap::Command> {
    vec![
        atex_discover::cli::Cli::command(),
        atex_provision::cli::Cli::command(),
        atex_exec::Cli::command(),
        atex_aggregate::Cli::command(),
        atex_orchestrate::Cli::command(),
    ]
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: xtask DIR   (writes DIR/man/man1 and DIR/completions)");
        return ExitCode::from(2);
    };
    match write_all(Path::new(&dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// An I/O error with the path it happened on.
fn at(path: &Path) -> impl FnOnce(std::io::Error) -> String + '_ {
    move |e| format!("{}: {e}", path.display())
}

fn write_all(dir: &Path) -> Result<(), String> {
    let man = dir.join("man/man1");
    std::fs::create_dir_all(&man).map_err(at(&man))?;
    for mut command in tools() {
        command.build();
        write_man(&man, &command, command.get_name())?;
        let name = command.get_name().to_owned();
        for (shell, file) in [
            (Shell::Bash, name.clone()),
            (Shell::Zsh, format!("_{name}")),
            (Shell::Fish, format!("{name}.fish")),
        ] {
            let sub = dir.join("completions").join(shell.to_string());
            std::fs::create_dir_all(&sub).map_err(at(&sub))?;
            let path = sub.join(file);
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut command.clone(), &name, &mut out);
            std::fs::write(&path, out).map_err(at(&path))?;
        }
    }
    Ok(())
}

/// The page of `command` as `NAME.1` (`NAME` joins the parent commands'
/// names with `-`, as git's pages do), then one per visible subcommand.
fn write_man(man: &Path, command: &clap::Command, name: &str) -> Result<(), String> {
    let page = command.clone().name(name.to_owned());
    let path: PathBuf = man.join(format!("{name}.1"));
    let mut out = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut out)
        .map_err(at(&path))?;
    std::fs::write(&path, out).map_err(at(&path))?;
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        write_man(man, sub, &format!("{name}-{}", sub.get_name()))?;
    }
    Ok(())
}
