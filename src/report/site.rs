//! Writing the site incrementally: each page is rendered only when its inputs may have
//! changed and written only when its bytes did, under a temp name and then renamed, so a
//! reader (or a web server) never sees half a page.
//!
//! A manifest (`.runner-report.json`) keeps, per page, a key: for a finished run's page
//! the run's fingerprint (status, stop time, exit code), which changes only when the run
//! does (a replay); for every other page the hash of its bytes. After one new run only
//! that run's page, its job's page and the index are rewritten.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::pages::{self, Renderer};
use crate::error::Error;
use crate::store::model::{RunDetail, RunRecord, RunStatus, StoredOutput};

/// The manifest's file name inside the output directory.
const MANIFEST: &str = ".runner-report.json";

/// What the report shows of one job.
#[derive(Debug)]
pub(crate) struct JobInput {
    /// The job's name.
    pub(crate) name: String,
    /// Its newest runs, newest first; each gets a page.
    pub(crate) runs: Vec<RunRecord>,
    /// Its finished runs by status word.
    pub(crate) counts: BTreeMap<String, u64>,
}

/// What a run's page shows: the run's detail and the output the store keeps of it
/// (empty where the output is in files only).
pub(crate) type RunPage = (RunDetail, Vec<StoredOutput>);

/// How many pages were rendered and how many files written.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Written {
    /// Pages rendered.
    pub(crate) rendered: usize,
    /// Files written (the rest were unchanged).
    pub(crate) written: usize,
    /// Pages removed (runs no longer listed).
    pub(crate) removed: usize,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    version: u32,
    /// Page path (relative, `/`-separated) to its key.
    pages: BTreeMap<String, String>,
}

/// Writes (or brings up to date) the site in `out` for `jobs`; `detail` loads a run's
/// tasks, attempts and stored output when its page must be rendered. `store` names the records in the
/// footer.
pub(crate) fn write_site(
    out: &Path,
    jobs: &[JobInput],
    store: &Path,
    detail: &mut dyn FnMut(&str) -> Result<RunPage, Error>,
) -> Result<Written, Error> {
    for dir in [out.to_owned(), out.join("jobs"), out.join("runs")] {
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    let old = read_manifest(out);
    let mut new = Manifest {
        version: 1,
        pages: BTreeMap::new(),
    };
    let mut written = Written::default();
    let renderer = Renderer::new(&store.display().to_string());

    write_if_changed(
        out,
        "style.css",
        pages::STYLE.as_bytes(),
        &old,
        &mut new,
        &mut written,
    )?;
    let index = renderer.index(jobs)?;
    written.rendered += 1;
    write_if_changed(
        out,
        "index.html",
        index.as_bytes(),
        &old,
        &mut new,
        &mut written,
    )?;
    for job in jobs {
        let page = format!("jobs/{}", pages::job_file(&job.name));
        let html = renderer.job(job)?;
        written.rendered += 1;
        write_if_changed(out, &page, html.as_bytes(), &old, &mut new, &mut written)?;
        for run in &job.runs {
            let page = pages::run_page(&run.run_id);
            let key = fingerprint(run);
            let unchanged = run.status != RunStatus::Running
                && old.pages.get(&page) == Some(&key)
                && out.join(&page).is_file();
            if !unchanged {
                let (detail, kept) = detail(&run.run_id)?;
                let html = renderer.run(&detail, &kept)?;
                written.rendered += 1;
                write_file(out, &page, html.as_bytes())?;
                written.written += 1;
            }
            new.pages.insert(page, key);
        }
    }
    // Pages of runs that are no longer listed (pruned, or past the newest N) go, so the
    // directory does not grow without bound.
    for page in old.pages.keys() {
        // Only a plain file under runs/: a manifest edited to name `runs/../../x` must
        // not make the report delete outside its directory.
        let path = out.join(page);
        if !new.pages.contains_key(page) && crate::store::paths::is_below(&path, &out.join("runs"))
        {
            match std::fs::remove_file(&path) {
                Ok(()) => written.removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
    }
    // Other jobs' pages stay (a report of one job keeps the others' pages) and keep
    // their keys.
    for (page, key) in old.pages {
        if page.starts_with("jobs/") && !new.pages.contains_key(&page) {
            new.pages.insert(page, key);
        }
    }
    let manifest = serde_json::to_vec_pretty(&new).expect("a manifest serializes");
    write_file(out, MANIFEST, &manifest)?;
    Ok(written)
}

/// What a finished run's page depends on that can change: a replay changes the status,
/// the stop time and the exit code.
fn fingerprint(run: &RunRecord) -> String {
    format!("run:{}:{:?}:{:?}", run.status, run.stop_time, run.exit_code)
}

fn content_key(bytes: &[u8]) -> String {
    format!("crc32:{:08x}:{}", crc32fast::hash(bytes), bytes.len())
}

fn read_manifest(out: &Path) -> Manifest {
    std::fs::read(out.join(MANIFEST))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Manifest>(&bytes).ok())
        .filter(|m| m.version == 1)
        .unwrap_or_default()
}

fn write_if_changed(
    out: &Path,
    page: &str,
    bytes: &[u8],
    old: &Manifest,
    new: &mut Manifest,
    written: &mut Written,
) -> Result<(), Error> {
    let key = content_key(bytes);
    if old.pages.get(page) != Some(&key) || !out.join(page).is_file() {
        write_file(out, page, bytes)?;
        written.written += 1;
    }
    new.pages.insert(page.to_owned(), key);
    Ok(())
}

/// Writes `out/page` under a temp name in the same directory, then renames it.
fn write_file(out: &Path, page: &str, bytes: &[u8]) -> Result<(), Error> {
    let path: PathBuf = out.join(page);
    let dir = path.parent().unwrap_or(out);
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(tmp.path(), e))?;
    // Pages are for reading by anyone who may read the directory (a web server).
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(|e| Error::io(tmp.path(), e))?;
    tmp.persist(&path).map_err(|e| Error::io(&path, e.error))?;
    Ok(())
}
