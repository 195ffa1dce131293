//! Integration tests of `atex_exec::remote` (the work dir, the uploaded
//! tree, per-test setup and launch, prepare/finish phases, cleanup) on real
//! loopback sshd machines (non-root login) and on the local machine.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use atex_exec::control::{ControlError, Decoder, Event};
use atex_exec::remote::{RemoteError, RemoteLayout};
use atex_shared::connection::{Connection, Input};
use atex_shared::records::{self, Test};
use atex_tests::Fixture;
use atex_tests::sshd::SshdPool;
use tokio::io::AsyncReadExt;

async fn ssh_connection(pool: &SshdPool) -> Result<Connection> {
    let machine = pool.machines().remove(0);
    let mut conn = Connection::new(&machine.connection).with_timeout(Duration::from_secs(20));
    conn.connect().await.context("connect")?;
    Ok(conn)
}

/// A small fmf tree with a `.git` directory that must not be uploaded.
fn tree() -> Result<Fixture> {
    Fixture::fmf_tree(&[
        ("tests/basic/main.fmf", "test: ./run.sh\n"),
        ("tests/basic/run.sh", "#!/bin/bash\necho basic\n"),
        (".git/HEAD", "ref: refs/heads/main\n"),
        ("tests/basic/.git/config", "x\n"),
    ])
}

fn test_record(root: &std::path::Path, snippet: &str) -> Result<Test> {
    let mut test: Test = serde_json::from_value(serde_json::json!({
        "name": "/tests/basic",
        "root": root,
        "path": "tests/basic",
        "test": snippet,
        "environment": {"NL": "line one\nline two", "PCT": "100% %d %s %%", "FROM": "test"},
        "plan": {"name": "/plans/p", "environment": {"PLANVAR": "plan value", "FROM": "plan"}},
        "data": {"summary": "basic", "custom": [1, 2]},
    }))?;
    test.plan.prepare = vec![serde_json::json!({
        "how": "shell",
        "script": [
            "pwd > prepare.txt; printf '%s\\n' \"$PLANVAR\" \"$TMT_TREE\" >> prepare.txt",
            "echo FROM_PREPARE=yes >> \"$TMT_PLAN_ENVIRONMENT_FILE\"",
        ],
    })];
    Ok(test)
}

/// Run a script on the machine and return its stdout (must succeed).
async fn sh(conn: &Connection, script: &str) -> Result<String> {
    let out = conn.run_script(script.as_bytes()).await?;
    if !out.success() {
        bail!(
            "script failed ({:?}): {}",
            out.code,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Launch the test with `files.argv`; return (the exit codes the control
/// channel reported, the wrapper's exit code, the test output).
async fn launch(conn: &Connection, argv: &[String]) -> Result<(Vec<i32>, Option<i32>, Vec<u8>)> {
    let dir = tempfile::tempdir()?;
    let out_path = dir.path().join("output.txt");
    let out_file = std::fs::File::create(&out_path)?;
    let mut process = conn.spawn(argv, Input::Null, out_file).await?;
    let mut control = Vec::new();
    process
        .take_stdout()
        .context("stdout")?
        .read_to_end(&mut control)
        .await?;
    let code = tokio::time::timeout(Duration::from_secs(30), process.wait()).await??;
    let mut decoder = Decoder::new();
    let mut codes = Vec::new();
    decoder.feed(&control, |event| {
        if let Event::ExitCode(c) = event {
            codes.push(c);
        }
        Ok::<(), ControlError>(())
    })?;
    decoder.finish()?;
    Ok((codes, code, std::fs::read(&out_path)?))
}

/// The whole cycle: prepare, prepare phases, two tests, cleanup.
async fn full_cycle(conn: &Connection, expect_var: bool) -> Result<()> {
    let fixture = tree()?;
    let root = fixture.path();
    let layout = RemoteLayout::prepare(conn, &root).await?;
    let w = layout.work_dir().to_owned();
    if expect_var {
        assert!(w.starts_with("/var/atex-"), "{w}");
    } else {
        assert!(
            !w.starts_with("/var/"),
            "a non-root login cannot write /var: {w}"
        );
    }
    // Writable, uploaded without .git, the wrapper executable.
    let listing = sh(
        conn,
        &format!(
            "cd '{w}' && touch probe && find tests -print | sort && stat -c %a wrapper.py && \
             test -d bin && test -f plan_env && ! test -s plan_env && echo ok"
        ),
    )
    .await?;
    assert!(listing.contains("tests/tests/basic/run.sh\n"), "{listing}");
    assert!(listing.contains("tests/.fmf/version\n"), "{listing}");
    assert!(!listing.contains(".git"), "{listing}");
    assert!(listing.ends_with("755\nok\n"), "{listing}");
    assert!(layout.python().starts_with('/'));

    let snippet = "printf '%s\\0' \"$NL\" \"$PCT\" \"$PWD\" \"$TMT_TEST_NAME\" \"$FROM\" \
                   \"$PLANVAR\" \"${FROM_PREPARE-unset}\" \"${FROM_TEST-unset}\" \"$TMT_REBOOT_COUNT\" \
                   \"${TMT_TEST_DATA-unset}\"; echo FROM_TEST=1 >> \"$TMT_PLAN_ENVIRONMENT_FILE\"; \
                   cat \"$TMT_TEST_METADATA\"";
    let test = test_record(&root, snippet)?;

    let outputs = layout.run_prepare(conn, &test.plan).await?;
    assert_eq!(outputs.len(), 2);
    let prepared = sh(conn, &format!("cat '{w}/tests/prepare.txt'")).await?;
    assert_eq!(prepared, format!("{w}/tests\nplan value\n{w}/tests\n"));

    for round in 0..2 {
        let files = layout.setup_test(conn, &test, &[], 0, 0).await?;
        assert_eq!(files.workdir, format!("{w}/tests/tests/basic"));
        let (codes, code, output) = launch(conn, &files.argv).await?;
        assert_eq!(
            (codes.as_slice(), code),
            (&[0][..], Some(0)),
            "round {round}"
        );
        let text = String::from_utf8(output)?;
        let fields: Vec<&str> = text.split('\0').collect();
        assert_eq!(
            &fields[..10],
            [
                "line one\nline two",
                "100% %d %s %%",
                &format!("{w}/tests/tests/basic"),
                "/tests/basic",
                "test",
                "plan value",
                "yes",
                // What the previous test appended does not leak (round 1).
                "unset",
                "0",
                "unset",
            ],
            "round {round}"
        );
        let metadata: serde_json::Value = serde_json::from_str(fields[10].trim())?;
        assert_eq!(metadata, test.data);
    }

    // A failing test still reports through the control channel.
    let failing = test_record(&root, "exit 7")?;
    let files = layout.setup_test(conn, &failing, &[], 0, 0).await?;
    let (codes, code, _) = launch(conn, &files.argv).await?;
    assert_eq!((codes, code), (vec![7], Some(0)));

    // finish phases; unknown `how` is a typed error naming it.
    let finish = [serde_json::json!({"how": "ansible", "playbook": "x.yml"})];
    let err = layout
        .run_plan_phases(conn, "finish", &finish, &[])
        .await
        .expect_err("unknown how");
    assert!(matches!(&err, RemoteError::UnknownHow { how, .. } if how == "ansible"));
    assert!(err.to_string().contains("'how: ansible'"), "{err}");
    let failing_phase = [serde_json::json!({"script": "false"})];
    let err = layout
        .run_plan_phases(conn, "finish", &failing_phase, &[])
        .await
        .expect_err("failing phase");
    assert!(
        matches!(err, RemoteError::PhaseFailed { code: Some(1), .. }),
        "{err}"
    );

    layout.cleanup(conn).await?;
    let gone = sh(conn, &format!("test -e '{w}' && echo present || echo gone")).await?;
    assert_eq!(gone, "gone\n");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_non_root_layout_runs_tests_through_the_wrapper() -> Result<()> {
    let pool = SshdPool::start(1)?;
    let conn = ssh_connection(&pool).await?;
    full_cycle(&conn, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_work_dir_falls_back_to_the_state_dir_of_the_login() -> Result<()> {
    let pool = SshdPool::start(1)?;
    let conn = ssh_connection(&pool).await?;
    let fixture = tree()?;
    let layout = RemoteLayout::prepare(&conn, &fixture.path()).await?;
    let home = sh(&conn, "printf %s \"${XDG_STATE_HOME:-$HOME/.local/state}\"").await?;
    let w = layout.work_dir();
    assert!(w.starts_with(&format!("{home}/atex-")), "{w} under {home}");
    layout.cleanup(&conn).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_layout_runs_tests_through_the_wrapper() -> Result<()> {
    let conn = Connection::new(&records::Connection::Local);
    // Root can write /var (ATEX's place); anyone else gets a fallback.
    let root = sh(&conn, "id -u").await? == "0\n";
    full_cycle(&conn, root).await
}
