//! What people see of the records: `metrics` checked by promtool and scraped by a real
//! Prometheus server, and `report` pages loaded in headless Chromium.
//!
//! The tools come from Debian (`prometheus`, `chromium`), installed by scripts/test.sh
//! when it runs as root; without them these tests say SKIPPED and why.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{Chain, runner, skip, wait_for};

/// A chain named `obs` with one good run and one failed run recorded.
fn chain_with_runs() -> Chain {
    let chain = Chain::new()
        .task("10-greet.sh", "echo '<script>alert(\"x\")</script>'")
        .task("20-check.sh", "exit ${FAIL:-0}")
        .ini("[runner]\nname = obs\nmax_tries = 1");
    chain.run(&[]).assert_code(0);
    let mut cmd = chain.command(&[]);
    cmd.env("FAIL", "1");
    crate::support::Run::of(cmd).assert_code(1);
    chain
}

fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The child is ended when the guard goes (a test that fails leaves no server behind).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A plain HTTP GET on loopback; the body, when the status is 200.
fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return None;
    }
    Some(body.to_owned())
}

#[test]
fn metrics_dump_counts_runs_and_tasks_and_passes_promtool() {
    let chain = chain_with_runs();
    let run = chain.runner(&["metrics", "--dump"]);
    run.assert_code(0);
    let text = run.stdout();
    for line in [
        "# TYPE runner_run_duration_seconds summary",
        "runner_runs_total{job_name=\"obs\",result=\"ok\"} 1\n",
        "runner_runs_total{job_name=\"obs\",result=\"failed\"} 1\n",
        "runner_run_duration_seconds_count{job_name=\"obs\"} 2\n",
        "runner_run_latency_seconds{job_name=\"obs\",quantile=\"0.99\"} ",
        "runner_last_run_exit_code{job_name=\"obs\"} 1\n",
        "runner_running_runs{job_name=\"obs\"} 0\n",
        "runner_task_attempts_total{job_name=\"obs\",task=\"check\",result=\"RETRY\"} 1\n",
        "runner_task_attempts_total{job_name=\"obs\",task=\"greet\",result=\"OK\"} 2\n",
        "runner_task_duration_seconds_count{job_name=\"obs\",task=\"greet\"} 2\n",
    ] {
        assert!(text.contains(line), "metrics lack {line:?}\n{text}");
    }
    let quantiles = chain.runner(&["metrics", "--dump", "--quantiles", "0.5"]);
    quantiles.assert_code(0);
    assert!(
        !quantiles.stdout().contains("quantile=\"0.99\"")
            && quantiles.stdout().contains("quantile=\"0.5\""),
        "{}",
        quantiles.stdout()
    );
    let Some(promtool) = tool("promtool") else {
        skip("promtool check: promtool is not installed (Debian: prometheus)");
        return;
    };
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = check.wait_with_output().expect("promtool");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_give_configured_jobs_series_before_their_first_run() {
    let chain = Chain::new();
    let config = chain.path().join("daemon.yaml");
    std::fs::write(
        &config,
        "jobs:\n  nightly:\n    command: [\"true\"]\n    schedule: \"@daily\"\n",
    )
    .expect("write config");
    let run = chain.runner(&[
        "metrics",
        "--dump",
        "--config",
        &config.display().to_string(),
    ]);
    run.assert_code(0)
        .assert_stdout_contains("runner_runs_total{job_name=\"nightly\",result=\"ok\"} 0\n")
        .assert_stdout_contains("runner_run_duration_seconds_count{job_name=\"nightly\"} 0\n");
    assert!(
        !chain.state_dir().join("runner.sqlite3").exists(),
        "reading metrics created a store"
    );
}

#[test]
fn metrics_listen_refuses_a_remote_address_unless_allowed() {
    let chain = Chain::new();
    chain
        .runner(&["metrics", "--listen", "0.0.0.0:0"])
        .assert_code(1)
        .assert_stderr_contains("--allow-remote");
    chain
        .runner(&["metrics", "--dump", "--quantiles", "2"])
        .assert_code(2);
}

/// Starts `runner metrics --listen 127.0.0.1:0` and returns it with its address.
fn start_listener(chain: &Chain) -> (Killed, String) {
    let mut child = runner()
        .arg("--state-dir")
        .arg(chain.state_dir())
        .args(["metrics", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn runner metrics");
    let stdout = child.stdout.take().expect("stdout");
    let guard = Killed(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the address");
    let addr = line
        .trim()
        .strip_prefix("serving metrics at http://")
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (guard, addr)
}

#[test]
fn metrics_listen_serves_the_text_format_at_slash_metrics() {
    let chain = chain_with_runs();
    let (_server, addr) = start_listener(&chain);
    let body = http_get(&addr, "/metrics").expect("GET /metrics answers 200");
    assert!(
        body.contains("runner_runs_total{job_name=\"obs\",result=\"ok\"} 1\n"),
        "{body}"
    );
    assert!(
        http_get(&addr, "/other").is_none(),
        "only /metrics is served"
    );
    // A new run shows in the next scrape: the listener reads the store as it is now.
    chain.run(&[]).assert_code(0);
    let body = http_get(&addr, "/metrics").expect("GET /metrics answers 200");
    assert!(
        body.contains("runner_runs_total{job_name=\"obs\",result=\"ok\"} 2\n"),
        "{body}"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[test]
fn a_real_prometheus_scrapes_runner_metrics() {
    let Some(prometheus) = tool("prometheus") else {
        skip("Prometheus scrape: prometheus is not installed (Debian: prometheus)");
        return;
    };
    let chain = chain_with_runs();
    let (_server, addr) = start_listener(&chain);
    let dir = chain.path().join("prometheus");
    std::fs::create_dir(&dir).expect("mkdir");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: runner\n    \
             static_configs:\n      - targets: [\"{addr}\"]\n"
        ),
    )
    .expect("write prometheus.yml");
    let web = format!("127.0.0.1:{}", free_port());
    let _prometheus = Killed(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("log")).expect("log file"))
            .spawn()
            .expect("spawn prometheus"),
    );
    let query =
        "/api/v1/query?query=runner_runs_total%7Bjob_name%3D%22obs%22%2Cresult%3D%22failed%22%7D";
    let mut last = String::new();
    let found = wait_for(Duration::from_secs(90), || {
        let Some(body) = http_get(&web, query) else {
            return false;
        };
        last = body.clone();
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&body) else {
            return false;
        };
        json["data"]["result"][0]["value"][1] == "1"
    });
    let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    assert!(
        found,
        "Prometheus never returned runner_runs_total for obs\nlast answer: {last}\nlog:\n{log}"
    );
}

/// Headless Chromium with a fresh profile and nothing that reaches the network.
fn chromium(profile: &Path) -> Option<Command> {
    let Some(binary) = tool("chromium") else {
        skip("browser checks: chromium is not installed (Debian: chromium)");
        return None;
    };
    let mut cmd = Command::new(binary);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .stderr(Stdio::null());
    Some(cmd)
}

fn dump_dom(profile: &Path, page: &Path) -> Option<String> {
    let out = chromium(profile)?
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium --dump-dom: {:?}",
        out.status
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn report(chain: &Chain, out: &Path) -> String {
    let run = chain.runner(&["report", "--out", &out.display().to_string()]);
    run.assert_code(0);
    run.stdout()
}

fn run_pages(out: &Path) -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(out.join("runs"))
        .expect("runs/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "html"))
        .collect();
    pages.sort();
    pages
}

#[test]
fn report_writes_only_what_changed_after_a_new_run() {
    let chain = chain_with_runs();
    let out = chain.path().join("site");
    let first = report(&chain, &out);
    assert!(first.contains("written"), "{first}");
    for page in ["index.html", "style.css", "jobs/obs.html"] {
        assert!(out.join(page).is_file(), "{page} missing");
    }
    let pages = run_pages(&out);
    assert_eq!(pages.len(), 2, "one page per run");
    let before: Vec<_> = pages
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .expect("mtime")
        })
        .collect();
    assert!(
        report(&chain, &out).contains("0 file(s) written"),
        "nothing changed, nothing is written"
    );
    chain.run(&[]).assert_code(0);
    let third = report(&chain, &out);
    // The new run's page, the job's page and the index.
    assert!(third.contains("3 file(s) written"), "{third}");
    assert_eq!(run_pages(&out).len(), 3);
    for (page, mtime) in pages.iter().zip(before) {
        let now = std::fs::metadata(page)
            .and_then(|m| m.modified())
            .expect("mtime");
        assert_eq!(now, mtime, "{} was rewritten", page.display());
    }
    let leftovers: Vec<_> = std::fs::read_dir(out.join("runs"))
        .expect("runs/")
        .map(|e| e.expect("entry").file_name())
        .filter(|n| n.to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn report_pages_render_in_a_browser_with_output_as_text() {
    let chain = chain_with_runs();
    let out = chain.path().join("site");
    report(&chain, &out);
    let profile = chain.path().join("chromium-profile");
    let Some(index) = dump_dom(&profile, &out.join("index.html")) else {
        return;
    };
    assert!(index.contains("href=\"jobs/obs.html\">obs</a>"), "{index}");
    assert_eq!(
        index.matches("class=\"cell s-").count(),
        2,
        "one cell per run in the strip\n{index}"
    );
    assert!(index.contains("50.0%"), "success rate\n{index}");
    let failed = run_pages(&out)
        .into_iter()
        .find(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .contains("status s-failed")
        })
        .expect("the failed run's page");
    let dom = dump_dom(&profile, &failed).expect("chromium is there");
    assert!(
        dom.contains("&lt;script&gt;alert(\"x\")&lt;/script&gt;"),
        "the output is text in the DOM\n{dom}"
    );
    assert!(!dom.contains("<script"), "no script element\n{dom}");
    assert!(dom.contains("class=\"bar r-OK\""), "timeline bars\n{dom}");
    assert!(
        dom.contains("class=\"bar r-RETRY\""),
        "timeline bars\n{dom}"
    );
    // Screenshots for people to look at, kept in the target directory.
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-screenshots");
    std::fs::create_dir_all(&shots).expect("mkdir");
    for (name, page, dark) in [
        ("index.png", out.join("index.html"), false),
        ("run.png", failed.clone(), false),
        ("run-dark.png", failed, true),
    ] {
        let shot = shots.join(name);
        let _ = std::fs::remove_file(&shot);
        let mut cmd = chromium(&profile).expect("chromium is there");
        cmd.arg("--window-size=1100,900")
            .arg(format!("--screenshot={}", shot.display()));
        if dark {
            cmd.arg("--blink-settings=preferredColorScheme=0");
        }
        let status = cmd
            .arg(format!("file://{}", page.display()))
            .stdout(Stdio::null())
            .status()
            .expect("run chromium");
        assert!(status.success(), "chromium --screenshot: {status:?}");
        let png = std::fs::read(&shot).expect("a screenshot was written");
        assert!(png.starts_with(b"\x89PNG"), "{} is a PNG", shot.display());
        eprintln!("screenshot: {}", shot.display());
    }
}

#[test]
fn lines_to_the_journal_carry_their_priority() {
    use std::os::unix::fs::MetadataExt;
    let chain = Chain::new();
    let path = chain.path().join("journal");
    let file = std::fs::File::create(&path).expect("create");
    let meta = file.metadata().expect("stat");
    // What systemd sets for a unit whose stderr is the journal: the stream's dev:inode.
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let run = runner()
        .arg("--state-dir")
        .arg(chain.state_dir())
        .args(["runs", "show", "nosuchrun"])
        .env("JOURNAL_STREAM", &stream)
        .stderr(file)
        .status()
        .expect("run runner");
    assert_eq!(run.code(), Some(1));
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(
        text.starts_with("<3>runner: error: no recorded run matches"),
        "{text:?}"
    );
    assert!(
        text.lines().all(|l| l.starts_with("<3>")),
        "every line has its priority: {text:?}"
    );
    // The same variable with stderr elsewhere (inherited by a child) changes nothing.
    let mut cmd = runner();
    cmd.arg("--state-dir")
        .arg(chain.state_dir())
        .args(["runs", "show", "nosuchrun"])
        .env("JOURNAL_STREAM", &stream);
    let plain = crate::support::Run::of(cmd);
    plain.assert_code(1);
    assert!(
        plain.stderr().starts_with("runner: error: "),
        "{}",
        plain.stderr()
    );
}

#[test]
fn report_lists_configured_jobs_before_their_first_run() {
    let chain = Chain::new();
    let config = chain.path().join("daemon.yaml");
    std::fs::write(
        &config,
        "jobs:\n  \"nightly build\":\n    command: [\"true\"]\n    schedule: \"@daily\"\n",
    )
    .expect("write config");
    let out = chain.path().join("site");
    chain
        .runner(&[
            "report",
            "--out",
            &out.display().to_string(),
            "--config",
            &config.display().to_string(),
        ])
        .assert_code(0);
    let index = std::fs::read_to_string(out.join("index.html")).expect("index");
    assert!(
        index.contains("href=\"jobs/nightly%2520build.html\">nightly build</a>")
            && index.contains("no run yet"),
        "{index}"
    );
    assert!(out.join("jobs/nightly%20build.html").is_file());
    assert!(
        !chain.state_dir().join("runner.sqlite3").exists(),
        "a report created a store"
    );
}

/// `name{labels} value` lines of the text format, as a map.
fn samples(text: &str) -> std::collections::BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[test]
fn metrics_match_dsari_exporter_on_a_dsari_store() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dsari-metrics");
    let chain = Chain::new();
    std::fs::create_dir_all(chain.state_dir()).expect("mkdir");
    let db = rusqlite::Connection::open(chain.state_dir().join("dsari.sqlite3")).expect("open");
    db.execute_batch(&std::fs::read_to_string(fixtures.join("dsari.sql")).expect("dump"))
        .expect("load dsari's dump");
    drop(db);
    let run = chain.runner(&["metrics", "--dump"]);
    run.assert_code(0);
    let ours = samples(&run.stdout());
    let theirs =
        samples(&std::fs::read_to_string(fixtures.join("dsari-exporter.prom")).expect("golden"));
    assert!(theirs.len() > 20, "the golden file has dsari's samples");
    for (name, want) in &theirs {
        let mapped = if let Some(rest) = name.strip_prefix("dsari_run_success_count") {
            rest.replace('}', ",result=\"ok\"}")
                .replacen('{', "runner_runs_total{", 1)
        } else if let Some(rest) = name.strip_prefix("dsari_run_failure_count") {
            rest.replace('}', ",result=\"failed\"}")
                .replacen('{', "runner_runs_total{", 1)
        } else {
            name.replacen("dsari_", "runner_", 1)
        };
        let got = ours
            .get(&mapped)
            .unwrap_or_else(|| panic!("runner has no {mapped} (dsari's {name})\n{}", run.stdout()));
        // dsari keeps times to the microsecond; runner uses the stored floats.
        assert!(
            (got - want).abs() <= 1e-5 * want.abs().max(1.0),
            "{mapped}: runner {got}, dsari {want}"
        );
    }
    assert!(
        !chain.state_dir().join("runner.sqlite3").exists(),
        "reading dsari's store created runner's"
    );
}

#[test]
fn the_events_a_run_waited_for_are_in_runs_show_and_on_its_report_page() {
    let chain = Chain::new()
        .task("10-wait.sh", "echo waited")
        .task("20-free.sh", "echo free")
        .ini("[runner]\nname = ev\nparallel = 2\n[wait]\nafter = go\nunless = stop");
    let mut child = chain.spawn(&[]);
    let waiting = wait_for(Duration::from_secs(30), || {
        let list = chain.runs_json(&["list", "--limit", "1"]);
        let Some(id) = list[0]["run_id"].as_str() else {
            return false;
        };
        chain.runs_json(&["show", id])["tasks"][0]["status"] == "waiting"
    });
    assert!(waiting, "the task never waited: {}", chain.last_run());
    chain
        .runner(&["fire", "go", "--data", r#"{"n": 1}"#])
        .assert_code(0);
    let status = child.wait().expect("wait runner");
    assert_eq!(status.code(), Some(0));
    let fired = chain.runner(&["events", "list", "--format", "json"]);
    fired.assert_code(0);
    let fired: serde_json::Value = serde_json::from_str(&fired.stdout()).expect("JSON");
    let go = fired
        .as_array()
        .and_then(|all| all.iter().find(|e| e["name"] == "go"))
        .expect("go in events list")
        .clone();

    let run = chain.last_run();
    let tasks = run["tasks"].as_array().expect("tasks");
    let events = tasks[0]["events"].as_array().expect("the waiter's events");
    assert_eq!(events.len(), 2, "{run}");
    assert_eq!(events[0]["name"], "go");
    assert_eq!(events[0]["kind"], "after");
    assert_eq!(events[0]["fired"], true);
    assert_eq!(events[0]["event_id"], go["id"], "{run}\n{go}");
    assert_eq!(events[0]["source"], "fire");
    assert!(events[0]["fired_at"].is_f64(), "{run}");
    let (since, decided) = (
        events[0]["waited_since"].as_f64().expect("it waited"),
        events[0]["decided_at"].as_f64().expect("decided"),
    );
    assert!(since <= decided, "{run}");
    assert_eq!(events[1]["name"], "stop");
    assert_eq!(events[1]["kind"], "unless");
    assert_eq!(events[1]["fired"], false);
    assert!(events[1]["event_id"].is_null(), "{run}");
    assert!(tasks[1].get("events").is_none(), "no events, no key: {run}");

    let id = run["run_id"].as_str().expect("run id");
    let text = chain.runner(&["runs", "show", id]);
    text.assert_code(0);
    let text = text.stdout();
    let instance = tasks[0]["instance"].as_str().expect("instance");
    assert!(text.contains("events waited for:"), "{text}");
    assert!(
        text.contains(&format!("  {instance} after go: fired "))
            && text.contains(" by fire (waited "),
        "{text}"
    );
    assert!(
        text.contains(&format!("  {instance} unless stop: not fired")),
        "{text}"
    );

    let out = chain.path().join("site");
    report(&chain, &out);
    let page = run_pages(&out).into_iter().next().expect("the run's page");
    let profile = chain.path().join("chromium-profile");
    let Some(dom) = dump_dom(&profile, &page) else {
        return;
    };
    assert!(dom.contains("<h2>Events waited for</h2>"), "{dom}");
    let row = |name: &str, kind: &str, outcome: &str| {
        format!(
            "<td>{instance}</td><td class=\"mono\">{name}</td><td>{kind}</td><td><span class=\"status e-{}\">{outcome}</span></td>",
            outcome.replace(' ', "-")
        )
    };
    assert!(dom.contains(&row("go", "after", "fired")), "{dom}");
    assert!(dom.contains(&row("stop", "unless", "not fired")), "{dom}");
    assert!(dom.contains("<td>fire</td>"), "who fired it\n{dom}");
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-screenshots");
    std::fs::create_dir_all(&shots).expect("mkdir");
    let shot = shots.join("run-events.png");
    let _ = std::fs::remove_file(&shot);
    let status = chromium(&profile)
        .expect("chromium is there")
        .arg("--window-size=1100,1000")
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::null())
        .status()
        .expect("run chromium");
    assert!(status.success(), "chromium --screenshot: {status:?}");
    assert!(
        std::fs::read(&shot)
            .expect("screenshot")
            .starts_with(b"\x89PNG")
    );
    eprintln!("screenshot: {}", shot.display());
}
