//! The README and docs/ stand alone (issue 15): no link or mention sends
//! the reader outside the repository (the design notes and specs the
//! project was built from are not shipped with it), and every relative
//! link names a file that exists.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use atex_tests::project_root;

/// Files outside the repository the docs once pointed at.
const OUTSIDE: [&str; 6] = [
    "../shared",
    "DESIGN.md",
    "ENVIRONMENT.md",
    "STYLE.md",
    "spec/atex-reference.md",
    "spec/fmf-tmt.md",
];

/// README.md, docs/*.md and the other READMEs users read.
fn documents(root: &Path) -> Result<Vec<PathBuf>> {
    let mut docs = vec![root.join("README.md"), root.join("fuzz/README.md")];
    for entry in std::fs::read_dir(root.join("docs"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "md") {
            docs.push(path);
        }
    }
    docs.sort();
    Ok(docs)
}

/// The targets of the inline links `[text](target)` in `text`, with their
/// line numbers.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            if let Some(end) = rest.find(')') {
                found.push((number + 1, rest[..end].to_owned()));
                rest = &rest[end..];
            }
        }
    }
    found
}

#[test]
fn the_docs_point_only_inside_the_repository() -> Result<()> {
    let root = project_root().canonicalize().context("the project root")?;
    let mut problems = Vec::new();
    for doc in documents(&root)? {
        let text =
            std::fs::read_to_string(&doc).with_context(|| format!("read {}", doc.display()))?;
        let name = doc
            .strip_prefix(&root)
            .unwrap_or(&doc)
            .display()
            .to_string();
        for (number, line) in text.lines().enumerate() {
            for outside in OUTSIDE {
                if line.contains(outside) {
                    problems.push(format!("{name}:{}: mentions {outside}", number + 1));
                }
            }
        }
        for (number, target) in links(&text) {
            let target = target.split('#').next().unwrap_or("");
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let dir = doc.parent().unwrap_or(&root);
            match dir.join(target).canonicalize() {
                Ok(path) if path.starts_with(&root) => {}
                Ok(path) => problems.push(format!(
                    "{name}:{number}: {target} is outside the repository ({})",
                    path.display()
                )),
                Err(e) => problems.push(format!("{name}:{number}: {target}: {e}")),
            }
        }
    }
    ensure!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}
