//! Tests of how a daemon run's program is found, and of its id.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;

use super::program;

fn env(path: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("PATH".to_owned(), path.to_owned())])
}

#[test]
fn a_bare_name_is_found_in_the_runs_own_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let empty = dir.path().join("empty");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&empty).expect("mkdir");
    std::fs::create_dir(&bin).expect("mkdir");
    let tool = bin.join("tool");
    std::fs::write(&tool, "#!/bin/sh\n").expect("write");
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // A file of that name that may not be run is passed over, as execvp does.
    let blocked = empty.join("tool");
    std::fs::write(&blocked, "#!/bin/sh\n").expect("write");
    let path = format!("{}:{}", empty.display(), bin.display());
    assert_eq!(program(&"tool".into(), &env(&path)), tool.into_os_string());
}

#[test]
fn what_cannot_be_resolved_here_is_left_as_it_is() {
    let name = OsString::from("no-such-program-anywhere");
    assert_eq!(program(&name, &env("/usr/bin:/bin")), name);
    // A relative PATH entry is the child's to resolve, from its own working directory.
    assert_eq!(program(&"true".into(), &env("bin:/usr/bin:/bin")), "true");
    assert_eq!(program(&"./true".into(), &env("/usr/bin:/bin")), "./true");
    assert_eq!(program(&"true".into(), &BTreeMap::new()), "true");
}
