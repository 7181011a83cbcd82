//! `runner events list [--session S | --all]`: the events fired, oldest first (with a
//! fleet database, those of every host).

use super::print::{self, local_time};
use crate::cli::{EventsCommand, GlobalArgs};
use crate::error::{Error, exit_codes};
use crate::events;
use crate::state;
use crate::store::{EventRecord, Location};

/// Runs one `events` subcommand.
pub(crate) fn events(global: &GlobalArgs, command: EventsCommand) -> Result<u8, Error> {
    let EventsCommand::List { session, all } = command;
    let state_dir = state::resolve(global.state_dir.as_deref(), None);
    let session = (!all).then(|| events::resolve_session(session.as_deref(), None));
    let location = Location::resolve(global.database.as_deref(), None, &state_dir)?;
    let host = state::host(None);
    let found = match crate::store::open_events_for_reading(&location, &host)? {
        Some(store) => store.list_events(session.as_deref())?,
        None => Vec::new(),
    };
    print::records(global.format, &found, |_| table(&found))?;
    Ok(exit_codes::OK)
}

fn table(found: &[EventRecord]) -> String {
    let mut rows = vec![vec![
        "ID".to_owned(),
        "FIRED".to_owned(),
        "NAME".to_owned(),
        "SESSION".to_owned(),
        "SOURCE".to_owned(),
        "DATA".to_owned(),
    ]];
    for event in found {
        rows.push(vec![
            event.id.to_string(),
            local_time(Some(event.fired_at)),
            event.name.clone(),
            event.session.clone(),
            event.source.clone().unwrap_or_default(),
            event.data.to_string(),
        ]);
    }
    print::table(&rows)
}
