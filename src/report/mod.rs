//! The static HTML report: an index of jobs, a page per job and a page per run, from
//! templates rendered by minijinja (which HTML-escapes every value it inserts).
//!
//! It reads only `store::model` types handed to it; it never sees SQL.

mod pages;
mod site;

pub(crate) use pages::OUTPUT_LIMIT;
pub(crate) use site::{JobInput, write_site};
