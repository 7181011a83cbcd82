//! `runner fire EVENT [--data JSON] [--session S]`: record an event, wake whoever waits
//! for it, and call `post_fire_hook`. With a fleet database the event goes there, for
//! every host of the session; if that database cannot be reached, the event is kept in
//! this host's file (its chains still see it), with one warning and exit code 75.

use std::sync::Arc;

use serde::Serialize;

use crate::cli::{FireArgs, GlobalArgs};
use crate::config::ChainConfig;
use crate::error::{Error, exit_codes};
use crate::events;
use crate::exec::{Guardian, Supervisor};
use crate::interrupt::Interrupt;
use crate::state;
use crate::store::{EventRecord, Fired, Location, NewEvent};

/// What `post_fire_hook` receives: the event as stored.
#[derive(Debug, Serialize)]
pub(crate) struct FireHookPayload<'a> {
    /// The event's name.
    pub(crate) event: &'a str,
    /// Its sequence number.
    pub(crate) id: i64,
    /// Its session.
    pub(crate) session: &'a str,
    /// Its data.
    pub(crate) data: &'a serde_json::Value,
    /// When it was fired (epoch seconds).
    pub(crate) fired_at: f64,
    /// Who fired it.
    pub(crate) source: Option<&'a str>,
}

impl<'a> FireHookPayload<'a> {
    pub(crate) fn of(event: &'a EventRecord) -> FireHookPayload<'a> {
        FireHookPayload {
            event: &event.name,
            id: event.id,
            session: &event.session,
            data: &event.data,
            fired_at: event.fired_at,
            source: event.source.as_deref(),
        }
    }
}

/// Fires the event and exits 0; a bad name or data is a configuration error (78).
pub(crate) fn fire(global: &GlobalArgs, args: &FireArgs) -> Result<u8, Error> {
    events::validate_name(&args.event)?;
    let data = match &args.data {
        Some(text) => events::parse_data(text)?,
        None => serde_json::json!({}),
    };
    let config = args
        .config
        .as_deref()
        .map(|path| ChainConfig::load(Some(path)))
        .transpose()?;
    // As root, a configuration others could write must not choose the hook root runs.
    if let Some(config) = &config
        && crate::security::is_root()
        && !args.insecure
    {
        for file in config.doc.files() {
            crate::security::check(crate::security::Kind::Config, file)?;
        }
    }
    let state_dir = state_dir_for(global, config.as_ref());
    let session =
        events::resolve_session(args.session.as_deref(), configured_session(config.as_ref()));
    state::ensure_dir(&state_dir)?;
    let location = Location::resolve(global.database.as_deref(), None, &state_dir)?;
    let host = state::host(config.as_ref().and_then(|c| c.runner.host.as_deref()));
    let fired = crate::store::fire(
        &location,
        &host,
        &NewEvent {
            session: &session,
            name: &args.event,
            data: &data,
            source: "fire",
        },
    )?;
    let shared = matches!(fired, Fired::Stored(_));
    let event = shared_or_warn(fired);
    log::info!(
        "fired event \"{}\" (#{}) in session {session}",
        event.name,
        event.id
    );
    if let Some(config) = &config {
        call_post_hook(
            config,
            config.runner.post_fire_hook.as_deref(),
            &FireHookPayload::of(&event),
        );
    }
    // Other hosts did not get it: try later (it is in this host's file already).
    Ok(if shared {
        exit_codes::OK
    } else {
        exit_codes::LOCKED
    })
}

/// The event fired; when the fleet database did not take it, a warning (the process's
/// one about the database) that only this host has it.
pub(crate) fn shared_or_warn(fired: Fired) -> EventRecord {
    match fired {
        Fired::Stored(event) => event,
        Fired::LocalOnly(event, why) => {
            // One warning per process: `skip --cascade` has given it already.
            crate::store::warn_away(&format!(
                "{}; event \"{}\" was recorded on this host only, other hosts do not see it",
                crate::logging::one_line(&why),
                event.name
            ));
            event
        }
    }
}

/// The session the configuration sets explicitly, if it does.
pub(crate) fn configured_session(config: Option<&ChainConfig>) -> Option<&str> {
    let config = config?;
    config
        .origin_of("runner", "session")
        .map(|_| config.runner.session.as_str())
}

/// Calls one of the `post_*_hook`s, if set, with `payload`; its failure is a warning.
pub(crate) fn call_post_hook(
    config: &ChainConfig,
    hook: Option<&[String]>,
    payload: &impl Serialize,
) {
    let Some(hook) = hook else {
        return;
    };
    let grace = config.defaults.kill_grace;
    let supervisor = Supervisor::new(Interrupt::new(), Arc::new(Guardian::start(grace, None)));
    // A hook runs with the environment a task gets: the inherited one, then `[env]`.
    let env = config.env.iter().map(|(k, v)| {
        (
            std::ffi::OsStr::new(k.as_str()),
            std::ffi::OsStr::new(v.as_str()),
        )
    });
    crate::hooks::call(
        &supervisor,
        hook,
        payload,
        env,
        config.runner.hook_timeout,
        grace,
    );
}

/// The state directory for an optional chain configuration.
pub(crate) fn state_dir_for(
    global: &GlobalArgs,
    config: Option<&ChainConfig>,
) -> std::path::PathBuf {
    state::resolve(
        global.state_dir.as_deref(),
        config.and_then(|c| c.runner.state_dir.as_deref()),
    )
}
