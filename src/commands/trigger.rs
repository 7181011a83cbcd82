//! `runner trigger JOB`: ask the daemon for a run by writing a trigger file atomically.

use std::collections::BTreeMap;

use crate::cli::{GlobalArgs, TriggerArgs};
use crate::config::daemon::DaemonConfig;
use crate::config::names;
use crate::error::{Error, exit_codes};
use crate::triggers::{self, TriggerFile};

/// Writes `DATA_DIR/trigger/JOB/trigger.json` and prints its path.
pub(crate) fn trigger(global: &GlobalArgs, args: TriggerArgs) -> Result<u8, Error> {
    names::check_daemon(&args.job)
        .map_err(|reason| Error::Usage(format!("job name {:?}: {reason}", args.job)))?;
    // Without --config, the daemon's default configuration is used when there is one,
    // so the file lands where that daemon looks and an unknown job is caught.
    let config_path = args.config.clone().or_else(|| {
        let default = super::daemon::config_path(&crate::cli::DaemonConfigArgs { config: None });
        ["runner.yaml", "runner.json", "dsari.yaml", "dsari.json"]
            .iter()
            .any(|name| default.join(name).exists())
            .then_some(default)
    });
    let configured = match &config_path {
        Some(path) => {
            let config = DaemonConfig::load(path)?;
            if !config.jobs.contains_key(&args.job) {
                return Err(Error::Refused(format!(
                    "no job \"{}\" in {}",
                    args.job,
                    path.display()
                )));
            }
            config.configured_data_dir
        }
        None => None,
    };
    let data_dir = crate::state::resolve(global.state_dir.as_deref(), configured.as_deref());
    let schedule_time = match &args.at {
        Some(at) => {
            let value = match at.parse::<f64>() {
                Ok(n) => serde_json::json!(n),
                Err(_) => serde_json::json!(at),
            };
            crate::timestamp::parse(&value, None)
                .map_err(|e| Error::Usage(format!("--at: {e}")))?;
            Some(value)
        }
        None => None,
    };
    if let Some(kind) = &args.kind
        && (kind.len() > triggers::MAX_TYPE_BYTES || kind.chars().any(char::is_control))
    {
        return Err(Error::Usage(format!(
            "--type must be at most {} bytes without control characters",
            triggers::MAX_TYPE_BYTES
        )));
    }
    let file = TriggerFile {
        kind: args.kind,
        description: args.description,
        environment: args
            .env
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect::<BTreeMap<_, _>>(),
        schedule_time,
        schedule_timezone: None,
        extra: BTreeMap::new(),
    };
    let path = triggers::write(&data_dir, &args.job, &file)
        .map_err(|e| Error::io(triggers::job_dir(&data_dir, &args.job), e))?;
    super::print::write_stdout(format!("{}\n", path.display()).as_bytes())?;
    Ok(exit_codes::OK)
}
