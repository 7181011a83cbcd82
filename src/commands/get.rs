//! `runner -c FILE -g SECTION.OPTION`: how tasks read configuration.
//!
//! Mozilla-compatible: a missing option (or no configuration at all) prints nothing and
//! exits 0, so a task can test for emptiness. Only the files are read; values are not
//! typed, so an odd `[runner]` value elsewhere never breaks a task's lookup. A key of
//! `[DEFAULT]` is found in every section the files have, and as `DEFAULT.key`, as
//! ConfigParser found it for Mozilla's runner.

use std::io::Write;
use std::path::Path;

use crate::config::ChainConfig;
use crate::error::{Error, exit_codes};

/// Prints the value of `key` (split at its first dot) and a newline.
pub(crate) fn get(config: Option<&Path>, key: &str) -> Result<u8, Error> {
    let Some((section, option)) = key.split_once('.') else {
        return Err(Error::Usage(format!(
            "-g takes SECTION.OPTION, and {key:?} has no dot"
        )));
    };
    let Some(config) = config else {
        return Ok(exit_codes::OK);
    };
    let doc = ChainConfig::load_document(config)?;
    if let Some(entry) = doc.get(section, option) {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", entry.value).map_err(|e| Error::io("<stdout>", e))?;
    }
    Ok(exit_codes::OK)
}
