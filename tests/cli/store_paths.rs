//! A store edited by hand never makes runner read or delete outside its state dir: job
//! names, run ids and task names from records must each be one plain file name, and
//! stored output paths must be the run's own, before `runs output`, `runs tail`, the
//! report or retention build or open a path from them (exit 1, naming run and field).

use std::fs;
use std::path::Path;

use crate::support::Chain;

/// A chain with one recorded run; returns it and the run's id.
fn recorded() -> (Chain, String) {
    let chain = Chain::new().task("10-a.sh", "echo the-real-output");
    chain.run(&[]).assert_code(0);
    let id = chain.last_run()["run_id"]
        .as_str()
        .expect("run id")
        .to_owned();
    (chain, id)
}

fn edit(chain: &Chain, sql: &str, id: &str) {
    let db = rusqlite::Connection::open(chain.state_dir().join("runner.sqlite3")).expect("db");
    db.execute_batch("PRAGMA busy_timeout = 10000")
        .expect("pragma");
    let changed = db
        .execute(sql, [id])
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert!(changed > 0, "{sql} changed nothing");
}

/// Plants `secret` where `state/runs/../../x/ID/output.txt` leads (outside the state dir).
fn plant_outside(chain: &Chain, id: &str) -> std::path::PathBuf {
    let outside = chain.state_dir().join("runs/../../x").join(id);
    fs::create_dir_all(&outside).expect("mkdir outside");
    fs::write(outside.join("output.txt"), "SECRET-OUTSIDE\n").expect("plant");
    assert!(
        !outside
            .canonicalize()
            .expect("real")
            .starts_with(chain.state_dir()),
        "the planted file must lie outside the state dir"
    );
    outside
}

/// A run whose job is `../../x` and whose record keeps no paths: a reader would fall
/// back to `DATA_DIR/runs/JOB/RUN_ID`.
fn climbing_job(chain: &Chain, id: &str) {
    edit(
        chain,
        "UPDATE runs SET job_name = '../../x' WHERE run_id = ?1",
        id,
    );
    edit(
        chain,
        "UPDATE run_meta SET job_name = '../../x', output_dir = NULL WHERE run_id = ?1",
        id,
    );
    edit(
        chain,
        "UPDATE attempts SET output_path = NULL WHERE instance_id IN
            (SELECT id FROM task_instances WHERE run_id = ?1)",
        id,
    );
}

#[test]
fn runs_output_refuses_a_job_name_that_climbs_out_of_the_state_dir() {
    let (chain, id) = recorded();
    climbing_job(&chain, &id);
    plant_outside(&chain, &id);
    let run = chain.runner(&["runs", "output", &id]);
    run.assert_code(1)
        .assert_stderr_contains("job name \"../../x\"");
    assert!(!run.stdout().contains("SECRET-OUTSIDE"), "{}", run.stdout());
    // The record itself is still shown, as it is.
    let shown = chain.runs_json(&["show", &id]);
    assert_eq!(shown["job_name"], "../../x");
    assert!(shown["output_dir"].is_null(), "{shown}");
}

#[test]
fn runs_tail_and_report_refuse_a_job_name_that_climbs_out() {
    let (chain, id) = recorded();
    climbing_job(&chain, &id);
    plant_outside(&chain, &id);
    let tail = chain.runner(&["runs", "tail", &id]);
    tail.assert_code(1)
        .assert_stderr_contains("job name \"../../x\"");
    assert!(
        !tail.stdout().contains("SECRET-OUTSIDE"),
        "{}",
        tail.stdout()
    );
    let out = chain.path().join("site");
    let report = chain.runner(&["report", "--out", &out.display().to_string()]);
    report
        .assert_code(1)
        .assert_stderr_contains("job name \"../../x\"");
    assert_no_file_holds(&out, "SECRET-OUTSIDE");
}

#[test]
fn a_stored_output_path_outside_the_run_dir_is_never_read() {
    let (chain, id) = recorded();
    let secret = chain.path().join("secret.txt");
    fs::write(&secret, "SECRET-FILE\n").expect("write");
    edit(
        &chain,
        &format!(
            "UPDATE attempts SET output_path = '{}' WHERE instance_id IN
                (SELECT id FROM task_instances WHERE run_id = ?1)",
            secret.display()
        ),
        &id,
    );
    let run = chain.runner(&["runs", "output", &id]);
    run.assert_code(1).assert_stderr_contains("output file");
    assert!(!run.stdout().contains("SECRET-FILE"), "{}", run.stdout());
    let out = chain.path().join("site");
    chain
        .runner(&["report", "--out", &out.display().to_string()])
        .assert_code(1)
        .assert_stderr_contains("output file");
    assert_no_file_holds(&out, "SECRET-FILE");
}

/// Gives run `id` the id `bad` in every table that names it, with no stored output dir.
fn rename_run(chain: &Chain, id: &str, bad: &str) {
    let db = rusqlite::Connection::open(chain.state_dir().join("runner.sqlite3")).expect("db");
    for table in ["runs", "run_meta", "task_instances"] {
        db.execute(
            &format!("UPDATE {table} SET run_id = ?2 WHERE run_id = ?1"),
            [id, bad],
        )
        .expect("update");
    }
    db.execute("UPDATE run_meta SET output_dir = NULL", [])
        .expect("update");
}

#[test]
fn a_run_id_with_a_slash_is_refused() {
    let (chain, id) = recorded();
    let bad = "../../x";
    rename_run(&chain, &id, bad);
    chain
        .runner(&["runs", "output", bad])
        .assert_code(1)
        .assert_stderr_contains("run id \"../../x\"");
}

#[test]
fn a_legitimate_record_still_reads_back() {
    let (chain, id) = recorded();
    chain
        .runner(&["runs", "output", &id])
        .assert_code(0)
        .assert_stdout_contains("the-real-output");
    let out = chain.path().join("site");
    chain
        .runner(&["report", "--out", &out.display().to_string()])
        .assert_code(0);
}

#[test]
fn retention_never_deletes_a_stored_directory_that_climbs_out() {
    let chain = Chain::new()
        .task("10-a.sh", "echo out")
        .ini("[runner]\nkeep_runs = 1");
    chain.run(&[]).assert_code(0);
    let id = chain.last_run()["run_id"]
        .as_str()
        .expect("run id")
        .to_owned();
    let victim = chain.state_dir().join("victim");
    fs::create_dir_all(&victim).expect("mkdir");
    fs::write(victim.join("precious"), "keep me").expect("write");
    // `state/runs/../victim` starts with `state/runs`, component by component.
    let climbing = chain.state_dir().join("runs/../victim");
    edit(
        &chain,
        &format!(
            "UPDATE run_meta SET output_dir = '{}' WHERE run_id = ?1",
            climbing.display()
        ),
        &id,
    );
    // The third run prunes the first (one earlier run is kept besides the current one)
    // and waits for the prune at exit.
    chain.run(&[]).assert_code(0);
    chain.run(&[]).assert_code(0);
    let ids: Vec<String> = chain
        .runs_json(&["list"])
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["run_id"].as_str().map(str::to_owned))
        .collect();
    assert!(!ids.contains(&id), "the first run was not pruned: {ids:?}");
    assert!(
        victim.join("precious").is_file(),
        "retention deleted {}",
        climbing.display()
    );
}

/// Asserts that no file under `dir` (if it exists) contains `needle`.
fn assert_no_file_holds(dir: &Path, needle: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            assert_no_file_holds(&path, needle);
        } else {
            let text = fs::read_to_string(&path).unwrap_or_default();
            assert!(!text.contains(needle), "{} holds {needle}", path.display());
        }
    }
}

#[test]
fn the_report_never_deletes_what_an_edited_manifest_names_outside_it() {
    let (chain, _) = recorded();
    let out = chain.path().join("site");
    let report = || {
        chain
            .runner(&["report", "--out", &out.display().to_string()])
            .assert_code(0);
    };
    report();
    let victim = chain.path().join("victim.txt");
    fs::write(&victim, "keep me").expect("write");
    let manifest = out.join(".runner-report.json");
    let mut value: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&manifest).expect("manifest")).expect("json");
    value["pages"]["runs/../../victim.txt"] = "run:ok:x".into();
    fs::write(&manifest, value.to_string()).expect("edit manifest");
    report();
    assert!(victim.is_file(), "the report deleted {}", victim.display());
}

#[test]
fn replay_refuses_a_run_whose_id_climbs_out() {
    let chain = Chain::new()
        .task("10-a.sh", "exit 1")
        .ini("[runner]\nmax_tries = 1");
    chain.run(&[]).assert_code(1);
    let id = chain.last_run()["run_id"]
        .as_str()
        .expect("run id")
        .to_owned();
    let bad = "../../x";
    rename_run(&chain, &id, bad);
    chain
        .runner(&["replay", bad])
        .assert_code(1)
        .assert_stderr_contains("run id \"../../x\"");
    // state/runs/JOB/../../x is state/x: where replay used to write the run's output.
    for outside in [chain.state_dir().join("x"), chain.path().join("x")] {
        assert!(!outside.exists(), "replay wrote {}", outside.display());
    }
}
