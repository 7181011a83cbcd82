//! `runner metrics --dump | --listen ADDR`: the store's metrics in Prometheus's text
//! format, printed once or served over HTTP at `/metrics`.
//!
//! The store is opened read-only (never created, migrated or changed), so the exporter
//! can run beside a daemon and chains that write it, as another user if need be. With
//! a fleet database, the numbers are the whole fleet's.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;

use super::print;
use crate::cli::{GlobalArgs, MetricsArgs};
use crate::config::daemon::DaemonConfig;
use crate::error::{Error, exit_codes};
use crate::metrics;
use crate::store::metrics::TaskTally;
use crate::store::{Location, RecordsView};

/// The default `--listen` address: loopback only, dsari's exporter port.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:50575";

/// Where the records are, and the jobs a daemon configuration knows (which get series
/// even before their first run).
pub(crate) struct RecordsSource {
    /// The database file.
    pub(crate) location: Location,
    /// The configured jobs, empty without `--config`.
    pub(crate) jobs: Vec<String>,
}

/// The store (as every records command chooses it: `--database`, a daemon
/// configuration's, or the state directory's) and the jobs `--config PATH` knows.
pub(crate) fn records_source(
    global: &GlobalArgs,
    config: Option<&Path>,
) -> Result<RecordsSource, Error> {
    match config {
        Some(path) => {
            let config = DaemonConfig::load(path)?;
            let dir = crate::daemon::data_dir(&config, global.state_dir.as_deref());
            Ok(RecordsSource {
                location: Location::resolve(global.database.as_deref(), Some(&config), &dir)?,
                jobs: config.jobs.keys().cloned().collect(),
            })
        }
        None => {
            let dir = crate::state::resolve(global.state_dir.as_deref(), None);
            Ok(RecordsSource {
                location: Location::resolve(global.database.as_deref(), None, &dir)?,
                jobs: Vec::new(),
            })
        }
    }
}

/// Opens the store: the fleet's database when one is named (every host's records),
/// else the file read-only (never created, migrated or changed), ready for scans.
pub(crate) fn open(source: &RecordsSource) -> Result<Option<Box<dyn RecordsView>>, Error> {
    Ok(crate::store::open_records_view(
        &source.location,
        &crate::state::host(None),
    )?)
}

/// Runs `runner metrics`.
pub(crate) fn metrics(global: &GlobalArgs, args: &MetricsArgs) -> Result<u8, Error> {
    let quantiles = parse_quantiles(&args.quantiles)?;
    let source = records_source(global, args.config.as_deref())?;
    if args.dump {
        let store = open(&source)?;
        let text = collect(store.as_deref(), &source.jobs, &quantiles)?;
        print::write_stdout(text.as_bytes())?;
        return Ok(exit_codes::OK);
    }
    let listen = args.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let addr = listen_addr(listen, args.allow_remote)?;
    let server = tiny_http::Server::http(addr)
        .map_err(|e| Error::Refused(format!("cannot listen on {addr}: {e}")))?;
    let bound = server
        .server_addr()
        .to_ip()
        .map_or(addr.to_string(), |a| a.to_string());
    // Scripts and tests read the bound address (port 0 picks a free one).
    print::write_stdout(format!("serving metrics at http://{bound}/metrics\n").as_bytes())?;
    let mut store: Option<Box<dyn RecordsView>> = None;
    // Task counts carry over from scrape to scrape: only new attempts are read.
    let mut tally = TaskTally::default();
    metrics::serve(&server, || {
        if store.is_none() {
            store = open(&source).map_err(|e| e.to_string())?;
        }
        let numbers = match &store {
            Some(store) => store
                .metrics_view(&quantiles, &mut tally)
                .map_err(|e| e.to_string())?,
            None => Default::default(),
        };
        Ok(metrics::render(&numbers, &source.jobs, &quantiles))
    });
    Ok(exit_codes::OK)
}

fn collect(
    store: Option<&dyn RecordsView>,
    jobs: &[String],
    quantiles: &[f64],
) -> Result<String, Error> {
    let numbers = match store {
        Some(store) => store.metrics_view(quantiles, &mut TaskTally::default())?,
        None => Default::default(),
    };
    Ok(metrics::render(&numbers, jobs, quantiles))
}

/// `--quantiles 0.5,0.9`: numbers from 0 to 1, in the order given.
fn parse_quantiles(text: &str) -> Result<Vec<f64>, Error> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<f64>() {
            Ok(q) if (0.0..=1.0).contains(&q) => out.push(q),
            _ => {
                return Err(Error::Usage(format!(
                    "--quantiles: {part:?} is not a number from 0 to 1"
                )));
            }
        }
    }
    Ok(out)
}

/// The address to listen on; anything but loopback needs `--allow-remote`, because
/// records name jobs and hosts that may be nobody else's business.
fn listen_addr(text: &str, allow_remote: bool) -> Result<SocketAddr, Error> {
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| Error::Usage(format!("--listen {text:?}: {e}")))?
        .collect();
    let Some(first) = addrs.first().copied() else {
        return Err(Error::Usage(format!(
            "--listen {text:?}: the name has no address"
        )));
    };
    if !allow_remote && !addrs.iter().all(|a| a.ip().is_loopback()) {
        return Err(Error::Refused(format!(
            "--listen {text}: not a loopback address, and metrics can reveal what runs \
             here (add --allow-remote to serve them to other hosts)"
        )));
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_must_be_between_zero_and_one() {
        assert_eq!(
            parse_quantiles("0.5, 0.99").expect("valid"),
            vec![0.5, 0.99]
        );
        assert!(parse_quantiles("0.5,1.5").is_err());
        assert!(parse_quantiles("half").is_err());
    }

    #[test]
    fn only_loopback_without_allow_remote() {
        assert!(listen_addr("127.0.0.1:0", false).is_ok());
        assert!(listen_addr("[::1]:0", false).is_ok());
        assert!(listen_addr("0.0.0.0:50575", false).is_err());
        assert!(listen_addr("0.0.0.0:50575", true).is_ok());
    }
}
