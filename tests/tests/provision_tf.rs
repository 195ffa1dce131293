//! Integration tests of the `testing-farm` provisioner library against the
//! local Testing Farm API server (`atex_tests::tf_server`), whose guests
//! are a real loopback sshd.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use atex_provision::testing_farm::{Args, ReleaseArgs, TestingFarm, release_record};
use atex_provision::{CancellationToken, Pool, PoolOptions, ProvisionError, Provisioner};
use atex_shared::connection::Connection;
use atex_shared::records::{self, Machine};
use atex_tests::tf_server::{Config, Fault, TfServer};

/// Quick timings for tests: poll every 50 ms, retry API calls after 10 ms,
/// no stagger, and a bounded wait for the machine.
fn args(server: &TfServer, dir: &Path) -> Result<Args> {
    let token = dir.join("token");
    std::fs::write(&token, format!("{}\n", server.token()))?;
    let mut args = Args::new("Fedora-41");
    args.token_file = Some(token);
    args.api_url = Some(server.url().to_owned());
    args.poll_interval = Duration::from_millis(50);
    args.api_backoff = Duration::from_millis(10);
    args.api_retries = 20;
    args.stagger = Duration::ZERO;
    args.ready_timeout = Some(Duration::from_secs(30));
    Ok(args)
}

fn key_dir(machine: &Machine) -> Option<PathBuf> {
    machine.release["key_dir"].as_str().map(PathBuf::from)
}

/// Run `id -un` on the machine over its own connection record.
async fn whoami_on(machine: &Machine) -> Result<String> {
    let mut conn = Connection::new(&machine.connection).with_timeout(Duration::from_secs(20));
    conn.connect().await.context("connect")?;
    let out = conn.run_script(b"id -un\n").await?;
    conn.disconnect().await?;
    anyhow::ensure!(out.success(), "{out:?}");
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// The token travels only in the Authorization header of API calls: never
/// to the artifacts host, never in a body or a URL.
fn assert_token_only_in_api_headers(server: &TfServer) {
    let token = server.token();
    let seen = server.seen();
    assert!(!seen.is_empty());
    for s in &seen {
        assert!(
            !s.path.contains(&token) && !s.body.contains(&token),
            "{s:?}"
        );
        if s.path.starts_with("/v0.1") {
            assert_eq!(
                s.authorization.as_deref(),
                Some(&*format!("Bearer {token}")),
                "{s:?}"
            );
        } else {
            assert_eq!(
                s.authorization, None,
                "token sent to the artifacts host: {s:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserves_a_machine_reachable_over_ssh_and_release_cancels_it() -> Result<()> {
    let server = TfServer::start(Config::default())?;
    let dir = tempfile::tempdir()?;
    let mut args = args(&server, dir.path())?;
    args.arch = "aarch64".into();
    args.pool = Some("beaker".into());
    args.hardware = Some(r#"{"memory": ">= 4 GB"}"#.into());
    let lines = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = Arc::clone(&lines);
    let tf = TestingFarm::new(&args)?.with_log(Arc::new(move |line: &str| {
        sink.lock().expect("log lock").push(line.to_owned());
    }));
    let started = Instant::now();
    let machine = tf.reserve(CancellationToken::new()).await?;
    let took = started.elapsed();

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(machine.id, format!("testing-farm/{}", request.id));
    assert_eq!(machine.provisioner, "testing-farm");
    assert_eq!(machine.platform, "Fedora-41@aarch64");
    let env = &request.spec["environments"][0];
    assert_eq!(env["os"]["compose"], "Fedora-41");
    assert_eq!(env["arch"], "aarch64");
    assert_eq!(env["pool"], "beaker");
    assert_eq!(env["hardware"]["memory"], ">= 4 GB");
    assert_eq!(request.spec["settings"]["pipeline"]["timeout"], 60);
    let records::Connection::Ssh {
        host,
        port,
        user,
        identity_file,
        ..
    } = &machine.connection
    else {
        panic!("not ssh: {:?}", machine.connection);
    };
    assert_eq!((host.as_str(), *port), ("127.0.0.1", server.guest_port()));
    assert_eq!(user, "atex-test");
    let key = identity_file.clone().context("no key")?;
    assert!(key.is_file());
    {
        use std::os::unix::fs::PermissionsExt;
        let dir = key.parent().context("key has no directory")?;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "the key directory is not private");
    }

    assert_eq!(whoami_on(&machine).await?, "atex-test");
    let line = serde_json::to_string(&machine)?;
    assert!(
        !line.contains(&server.token()),
        "token in the record: {line}"
    );

    tf.release(machine.clone()).await?;
    let request = &server.requests()[0];
    assert_eq!(request.state, "canceled");
    assert_eq!(request.deletes, 1);
    assert!(server.open_requests().is_empty());
    assert!(!key.exists(), "the generated key outlived the release");
    assert!(!key_dir(&machine).context("no key dir")?.exists());
    // Idempotent: the server refuses to cancel twice (409); that is fine.
    tf.release(machine).await?;
    assert_token_only_in_api_headers(&server);
    let lines = lines.lock().expect("log lock").join("\n");
    for part in [
        "created",
        "is queued",
        "is running",
        "waiting for ssh",
        "is ready",
        "cancelled",
    ] {
        assert!(lines.contains(part), "no {part:?} in the log:\n{lines}");
    }
    assert!(!lines.contains(&server.token()));
    eprintln!("reserved in {took:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_record_works_from_the_record_alone() -> Result<()> {
    let server = TfServer::start(Config::default())?;
    let dir = tempfile::tempdir()?;
    let tf = TestingFarm::new(&args(&server, dir.path())?)?;
    let machine = tf.reserve(CancellationToken::new()).await?;
    drop(tf);
    // As `atex-provision release` would get it: a JSON line.
    let line = serde_json::to_string(&machine)?;
    let parsed: Machine = serde_json::from_str(&line)?;
    // The record never says where a secret is read from.
    assert!(parsed.release.get("token_file").is_none(), "{line}");
    let release = ReleaseArgs {
        api_url: Some(server.url().to_owned()),
        token_file: Some(dir.path().join("token")),
        ca_file: None,
    };
    release_record(&parsed, &release).await?;
    assert!(server.open_requests().is_empty());
    assert!(!key_dir(&parsed).context("no key dir")?.exists());
    release_record(&parsed, &release).await?;
    Ok(())
}

/// A record from another server (a crafted machines.jsonl): the token goes
/// only to the configured API, so the record is refused as bad input and
/// its server sees nothing; a `token_file` in a record is never read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_record_sends_the_token_only_to_the_configured_api() -> Result<()> {
    let server = TfServer::start(Config::default())?;
    let other = TfServer::start(Config::default())?;
    let dir = tempfile::tempdir()?;
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{}\n", server.token()))?;
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "one-line-secret-9c1\n")?;
    let machine = |api_url: &str| Machine {
        context: Default::default(),
        id: "testing-farm/abc".into(),
        provisioner: "testing-farm".into(),
        connection: records::Connection::Local,
        platform: String::new(),
        release: serde_json::json!({
            "api_url": api_url,
            "request_id": "abc",
            "token_file": secret,
        }),
    };
    let release = ReleaseArgs {
        api_url: Some(server.url().to_owned()),
        token_file: Some(token),
        ca_file: None,
    };
    let err = release_record(&machine(other.url()), &release)
        .await
        .expect_err("another API");
    let text = err.to_string();
    assert!(matches!(err, ProvisionError::Invalid(_)), "{text}");
    assert!(
        text.contains(&format!("pass --api-url \"{}\" to release", other.url())),
        "{text}"
    );
    assert!(other.seen().is_empty(), "{:?}", other.seen());
    assert!(server.seen().is_empty(), "{:?}", server.seen());
    // Naming the configured API (with the trailing slash of a hand-written
    // record) it is released, with the configured token, not the file's.
    release_record(&machine(&format!("{}/", server.url())), &release).await?;
    let seen = server.seen();
    assert!(!seen.is_empty());
    for s in &seen {
        assert_eq!(
            s.authorization.as_deref(),
            Some(&*format!("Bearer {}", server.token())),
            "{s:?}"
        );
    }
    assert!(other.seen().is_empty());
    Ok(())
}

/// A service that reflects the Authorization header in its error bodies:
/// no error the provisioner returns shows the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_never_show_a_reflected_token() -> Result<()> {
    let server = TfServer::start(Config {
        reflect_authorization: true,
        ..Config::default()
    })?;
    let dir = tempfile::tempdir()?;
    let args = args(&server, dir.path())?;
    let tf = TestingFarm::new(&args)?;
    let err = tf.reserve(CancellationToken::new()).await.expect_err("400");
    let text = err.to_string();
    assert!(text.contains("Authorization: Bearer ***"), "{text}");
    assert!(!text.contains(&server.token()), "{text}");
    let seen = server.seen();
    assert!(seen.iter().all(|s| s.status == 400), "{seen:?}");
    let machine = Machine {
        context: Default::default(),
        id: "testing-farm/abc".into(),
        provisioner: "testing-farm".into(),
        connection: records::Connection::Local,
        platform: String::new(),
        release: serde_json::json!({"api_url": server.url(), "request_id": "abc"}),
    };
    let release = ReleaseArgs {
        api_url: Some(server.url().to_owned()),
        token_file: args.token_file.clone(),
        ca_file: None,
    };
    let err = release_record(&machine, &release)
        .await
        .expect_err("400")
        .to_string();
    assert!(err.contains("Bearer ***"), "{err}");
    assert!(!err.contains(&server.token()), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_errors_out_is_reported_with_its_cause() -> Result<()> {
    let server = TfServer::start(Config {
        fault: Fault::Error {
            after: Duration::from_millis(300),
            summary: "no capacity in pool beaker".into(),
        },
        queue_delay: Duration::from_millis(100),
        guest_delay: Duration::from_secs(60),
        ..Config::default()
    })?;
    let dir = tempfile::tempdir()?;
    let tf = TestingFarm::new(&args(&server, dir.path())?)?;
    let err = tf
        .reserve(CancellationToken::new())
        .await
        .expect_err("the request errors out");
    let text = err.to_string();
    assert!(text.contains("no capacity in pool beaker"), "{text}");
    assert!(text.contains("\"error\""), "{text}");
    assert!(err.is_retryable(), "a pool may try again");
    assert!(server.open_requests().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_never_shows_the_guest_is_bounded_and_cancelled() -> Result<()> {
    let server = TfServer::start(Config {
        fault: Fault::NoGuest,
        ..Config::default()
    })?;
    let dir = tempfile::tempdir()?;
    let mut args = args(&server, dir.path())?;
    args.ready_timeout = Some(Duration::from_millis(1500));
    let tf = TestingFarm::new(&args)?;
    let started = Instant::now();
    let err = tf
        .reserve(CancellationToken::new())
        .await
        .expect_err("no guest");
    let took = started.elapsed();
    assert!(matches!(err, ProvisionError::Timeout(_)), "{err}");
    assert!(took < Duration::from_secs(6), "took {took:?}");
    let requests = server.requests();
    assert_eq!(requests[0].state, "canceled");
    assert_eq!(requests[0].deletes, 1);
    assert!(server.open_requests().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storms_of_503_and_429_are_ridden_out_with_backoff() -> Result<()> {
    let server = TfServer::start(Config::default())?;
    let dir = tempfile::tempdir()?;
    let tf = TestingFarm::new(&args(&server, dir.path())?)?;
    server.storm(6, 503);
    let machine = tf.reserve(CancellationToken::new()).await?;
    assert_eq!(server.storm_left(), 0);
    server.storm(4, 429);
    tf.release(machine).await?;
    assert_eq!(server.storm_left(), 0);
    assert!(server.open_requests().is_empty());
    let statuses: Vec<u16> = server.seen().iter().map(|s| s.status).collect();
    assert_eq!(statuses.iter().filter(|&&s| s == 503).count(), 6);
    assert_eq!(statuses.iter().filter(|&&s| s == 429).count(), 4);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_longer_than_the_retries_fails_and_creates_nothing() -> Result<()> {
    let server = TfServer::start(Config::default())?;
    let dir = tempfile::tempdir()?;
    let mut args = args(&server, dir.path())?;
    args.api_retries = 3;
    let tf = TestingFarm::new(&args)?;
    server.storm(100, 503);
    let err = tf
        .reserve(CancellationToken::new())
        .await
        .expect_err("storm");
    assert!(matches!(err, ProvisionError::Api { .. }), "{err}");
    assert!(err.to_string().contains("503"), "{err}");
    assert!(err.to_string().contains("gave up after 4 tries"), "{err}");
    assert!(server.requests().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_races_403_and_a_server_ignoring_range_are_handled() -> Result<()> {
    let server = TfServer::start(Config {
        log_forbidden: true,
        ignore_range: true,
        log_delay: Duration::from_millis(300),
        ..Config::default()
    })?;
    let dir = tempfile::tempdir()?;
    let tf = TestingFarm::new(&args(&server, dir.path())?)?;
    let machine = tf.reserve(CancellationToken::new()).await?;
    assert_eq!(whoami_on(&machine).await?, "atex-test");
    let seen = server.seen();
    let log_gets: Vec<_> = seen
        .iter()
        .filter(|s| s.path.ends_with("/pipeline.log"))
        .collect();
    assert!(log_gets.iter().any(|s| s.status == 403), "no 403 race seen");
    assert!(
        log_gets
            .iter()
            .any(|s| s.method == "GET" && s.status == 200)
    );
    // Reads after the first ask for the bytes not read yet.
    assert!(
        log_gets
            .iter()
            .any(|s| s.range.as_deref().is_some_and(|r| r != "bytes=0-")),
        "{log_gets:?}"
    );
    tf.release(machine).await?;
    assert!(server.open_requests().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_reads_append_206_and_416_means_no_news() -> Result<()> {
    let server = TfServer::start(Config {
        guest_delay: Duration::from_millis(500),
        ..Config::default()
    })?;
    let dir = tempfile::tempdir()?;
    let tf = TestingFarm::new(&args(&server, dir.path())?)?;
    let machine = tf.reserve(CancellationToken::new()).await?;
    let statuses: Vec<u16> = server
        .seen()
        .iter()
        .filter(|s| s.method == "GET" && s.path.ends_with("/pipeline.log"))
        .map(|s| s.status)
        .collect();
    assert!(
        statuses.contains(&206) && statuses.contains(&416),
        "{statuses:?}"
    );
    tf.release(machine).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_reservations_is_staggered() -> Result<()> {
    let server = TfServer::start(Config::default())?;
    let dir = tempfile::tempdir()?;
    let mut args = args(&server, dir.path())?;
    args.stagger = Duration::from_millis(1500);
    let tf = TestingFarm::new(&args)?;
    let mut pool = Pool::new(Arc::new(tf), PoolOptions::default());
    pool.provision(3);
    let mut machines = Vec::new();
    while let Some(machine) = pool.next().await {
        machines.push(machine?);
    }
    let mut created: Vec<Instant> = server.requests().iter().map(|r| r.created).collect();
    created.sort();
    assert_eq!(created.len(), 3);
    for pair in created.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= Duration::from_millis(300), "gap {gap:?}");
    }
    for machine in &machines {
        assert_eq!(whoami_on(machine).await?, "atex-test");
    }
    assert!(pool.stop().await.is_empty());
    assert!(server.open_requests().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_stop_during_reservations_leaves_no_open_request() -> Result<()> {
    let server = TfServer::start(Config {
        guest_delay: Duration::from_secs(3600),
        ..Config::default()
    })?;
    let dir = tempfile::tempdir()?;
    let tf = TestingFarm::new(&args(&server, dir.path())?)?;
    let mut pool = Pool::new(Arc::new(tf), PoolOptions::default());
    pool.provision(3);
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.open_requests().len() < 3 {
        anyhow::ensure!(Instant::now() < deadline, "requests were not made");
        let _ = tokio::time::timeout(Duration::from_millis(100), pool.next()).await;
    }
    let started = Instant::now();
    assert!(pool.stop().await.is_empty());
    let took = started.elapsed();
    assert!(
        server.open_requests().is_empty(),
        "{:?}",
        server.open_requests()
    );
    for request in server.requests() {
        assert_eq!((request.state.as_str(), request.deletes), ("canceled", 1));
    }
    assert!(took < Duration::from_secs(5), "stop took {took:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_during_a_storm_creates_nothing() -> Result<()> {
    let server = TfServer::start(Config::default())?;
    let dir = tempfile::tempdir()?;
    let mut args = args(&server, dir.path())?;
    args.api_backoff = Duration::from_millis(200);
    let tf = TestingFarm::new(&args)?;
    server.storm(1000, 503);
    let cancel = CancellationToken::new();
    let canceller = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            cancel.cancel();
        })
    };
    let err = tf.reserve(cancel).await.expect_err("cancelled");
    canceller.await?;
    assert!(err.is_cancelled(), "{err}");
    server.storm(0, 503);
    assert!(server.requests().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_ranch_gets_an_ingress_rule_or_a_clear_error() -> Result<()> {
    let server = TfServer::start(Config {
        ranch: "public".into(),
        ..Config::default()
    })?;
    let dir = tempfile::tempdir()?;
    let mut args = args(&server, dir.path())?;
    let tf = TestingFarm::new(&args)?;
    let err = tf
        .reserve(CancellationToken::new())
        .await
        .expect_err("no CIDR");
    assert!(matches!(err, ProvisionError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("--source-cidr"), "{err}");
    assert!(server.requests().is_empty());

    args.source_cidr = Some("127.0.0.1/32".into());
    let tf = TestingFarm::new(&args)?;
    let machine = tf.reserve(CancellationToken::new()).await?;
    let spec = &server.requests()[0].spec;
    let rule = &spec["environments"][0]["settings"]["provisioning"]["security_group_rules_ingress"];
    assert_eq!(rule[0]["cidr"], "127.0.0.1/32");
    tf.release(machine).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_reported_without_showing_it() -> Result<()> {
    let server = TfServer::start(Config::default())?;
    let dir = tempfile::tempdir()?;
    let mut args = args(&server, dir.path())?;
    let token = dir.path().join("wrong");
    std::fs::write(&token, "not-the-token-0042\n")?;
    args.token_file = Some(token);
    let tf = TestingFarm::new(&args)?;
    let err = tf.reserve(CancellationToken::new()).await.expect_err("401");
    let text = err.to_string();
    assert!(
        matches!(err, ProvisionError::Invalid(_)),
        "not retried: {text}"
    );
    assert!(text.contains("401"), "{text}");
    assert!(!text.contains("not-the-token-0042"), "{text}");
    assert!(!format!("{tf:?}").contains("not-the-token-0042"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_own_key_is_used_and_kept() -> Result<()> {
    let server = TfServer::start(Config::default())?;
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("my key");
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "me@laptop", "-f"])
        .arg(&key)
        .output()?;
    anyhow::ensure!(out.status.success(), "{out:?}");
    std::fs::remove_file(dir.path().join("my key.pub"))?; // derived with ssh-keygen -y
    let mut args = args(&server, dir.path())?;
    args.ssh_key = Some(key.clone());
    let tf = TestingFarm::new(&args)?;
    let machine = tf.reserve(CancellationToken::new()).await?;
    assert_eq!(whoami_on(&machine).await?, "atex-test");
    let records::Connection::Ssh { identity_file, .. } = &machine.connection else {
        panic!("not ssh");
    };
    assert_eq!(identity_file.as_deref(), Some(key.as_path()));
    assert!(machine.release["key_dir"].is_null());
    tf.release(machine).await?;
    assert!(key.exists(), "the user's key was removed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_is_retried_until_the_key_works_and_bounded_when_it_never_does() -> Result<()> {
    let server = TfServer::start(Config {
        key_delay: Duration::from_millis(1500),
        ..Config::default()
    })?;
    let dir = tempfile::tempdir()?;
    let tf = TestingFarm::new(&args(&server, dir.path())?)?;
    let started = Instant::now();
    let machine = tf.reserve(CancellationToken::new()).await?;
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert_eq!(whoami_on(&machine).await?, "atex-test");
    tf.release(machine).await?;
    drop(server);

    let server = TfServer::start(Config {
        key_delay: Duration::from_secs(3600),
        ..Config::default()
    })?;
    let mut args = args(&server, dir.path())?;
    args.ready_timeout = Some(Duration::from_secs(2));
    let tf = TestingFarm::new(&args)?;
    let err = tf
        .reserve(CancellationToken::new())
        .await
        .expect_err("the key never works");
    assert!(matches!(err, ProvisionError::Timeout(_)), "{err}");
    assert!(server.open_requests().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_during_a_slow_post_cancels_the_request_it_created() -> Result<()> {
    let server = TfServer::start(Config {
        post_delay: Duration::from_millis(1500),
        ..Config::default()
    })?;
    let dir = tempfile::tempdir()?;
    let tf = TestingFarm::new(&args(&server, dir.path())?)?;
    let cancel = CancellationToken::new();
    let canceller = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            cancel.cancel();
        })
    };
    let err = tf.reserve(cancel).await.expect_err("cancelled");
    canceller.await?;
    assert!(err.is_cancelled(), "{err}");
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        (requests[0].state.as_str(), requests[0].deletes),
        ("canceled", 1)
    );
    Ok(())
}
