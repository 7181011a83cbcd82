//! `runner report --out DIR [--job J]...`: a static HTML site of the recorded runs,
//! brought up to date incrementally.
//!
//! The store is opened read-only; the site is written by `report`, which sees only the
//! model types gathered here.

use std::collections::BTreeSet;

use super::metrics::{open, records_source};
use super::print;
use crate::cli::{GlobalArgs, ReportArgs};
use crate::error::{Error, exit_codes};
use crate::report::{self, JobInput};
use crate::store::model::RunFilter;

/// Runs `runner report`.
pub(crate) fn report(global: &GlobalArgs, args: &ReportArgs) -> Result<u8, Error> {
    let source = records_source(global, args.config.as_deref())?;
    let store = open(&source)?;
    let mut names: BTreeSet<String> = source.jobs.iter().cloned().collect();
    let mut jobs = Vec::new();
    if let Some(store) = &store {
        names.extend(store.job_names_view()?);
        if !args.jobs.is_empty() {
            names.retain(|n| args.jobs.contains(n));
        }
        let mut counts = store.runs_by_result_view()?;
        for name in names {
            let runs = store.list_runs_on(&RunFilter::newest(
                std::slice::from_ref(&name),
                args.runs_per_job,
            ))?;
            jobs.push(JobInput {
                counts: counts.remove(&name).unwrap_or_default(),
                name,
                runs,
            });
        }
    } else {
        names.retain(|n| args.jobs.is_empty() || args.jobs.contains(n));
        jobs.extend(names.into_iter().map(|name| JobInput {
            name,
            runs: Vec::new(),
            counts: Default::default(),
        }));
    }
    // Runs dsari recorded keep their output.txt in dsari's layout, beside the database.
    let data_dir = source
        .location
        .file()
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let mut detail = |run_id: &str| match &store {
        Some(store) => {
            let mut detail = store.run_detail(run_id)?;
            crate::store::paths::check_detail(&detail)?;
            if detail.output_dir.is_none() {
                let dir = crate::store::paths::run_dir(
                    &data_dir,
                    &detail.run.job_name,
                    &detail.run.run_id,
                )?;
                detail.output_dir = Some(dir.display().to_string());
            }
            // A fleet database keeps each output's end itself: every host's run shows
            // its output, read there, capped as the files are.
            let kept = store.stored_output_tail(&detail.run.run_id, report::OUTPUT_LIMIT)?;
            Ok((detail, kept))
        }
        None => Err(Error::Refused(format!(
            "no store to read run {run_id} from"
        ))),
    };
    let written = report::write_site(&args.out, &jobs, source.location.file(), &mut detail)?;
    if !global.quiet {
        print::write_stdout(
            format!(
                "{}: {} page(s) rendered, {} file(s) written, {} removed\n",
                args.out.display(),
                written.rendered,
                written.written,
                written.removed
            )
            .as_bytes(),
        )?;
    }
    Ok(exit_codes::OK)
}
