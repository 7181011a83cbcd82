//! "Did you mean": how runner tells a misspelt key or section name from a free one.
//!
//! One rule says what is near ([`is_near`]), for INI and daemon configurations alike. A
//! key is compared with the few keys its section knows. A section name is compared
//! with `runner`, `env`, `DEFAULT` and every task name, of which there may be thousands,
//! beside as many sections: [`NearMisses`] keeps that linear.

use std::collections::{HashMap, HashSet};

/// The known key (or value) closest to a misspelt one, if it is close enough to be a
/// typo by the same rule as section names ([`is_near`]). Both configurations, INI and
/// YAML/JSON, suggest through this.
pub(crate) fn suggest(key: &str, known: &[&'static str]) -> Option<&'static str> {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(key, k), *k))
        .filter(|&(d, k)| d > 0 && is_near(d, k))
        .min_by_key(|&(d, _)| d)
        .map(|(_, k)| k)
}

/// Up to this many names, each section is measured against each name.
const FEW_NAMES: usize = 64;

/// The names a section may be a misspelling of. With many of them (tasks), they are
/// indexed so that checking a section costs the same however many tasks there are: each
/// name (lower case) is stored under every string it gives with up to two characters
/// deleted, and two names within two edits of each other share such a string.
/// Candidates found that way are then measured.
pub(crate) struct NearMisses<'a> {
    exact: HashSet<&'a str>,
    /// Each name with its lower case, when there are few.
    few: Vec<(&'a str, String)>,
    by_deletion: HashMap<String, Vec<&'a str>>,
    longest: usize,
}

impl<'a> NearMisses<'a> {
    pub(crate) fn new(known: &[&'a str]) -> NearMisses<'a> {
        let mut few = Vec::new();
        let mut by_deletion: HashMap<String, Vec<&'a str>> = HashMap::new();
        for &name in known {
            if known.len() <= FEW_NAMES {
                few.push((name, name.to_lowercase()));
                continue;
            }
            for variant in deletions(&name.to_lowercase()) {
                let names = by_deletion.entry(variant).or_default();
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        NearMisses {
            exact: known.iter().copied().collect(),
            few,
            by_deletion,
            longest: known.iter().map(|k| k.chars().count()).max().unwrap_or(0),
        }
    }

    /// The known name `section` looks like a misspelling of, if any.
    pub(crate) fn of(&self, section: &str) -> Option<&'a str> {
        if self.exact.contains(section) {
            return None;
        }
        let lower = section.trim().to_lowercase();
        if lower.chars().count() > self.longest + 2 {
            return None;
        }
        let mut best: Option<(usize, &'a str)> = None;
        if !self.few.is_empty() {
            for (known, known_lower) in &self.few {
                if lower.len().abs_diff(known_lower.len()) > 2 {
                    continue;
                }
                let d = strsim::osa_distance(&lower, known_lower);
                if is_near(d, known) && best.is_none_or(|(b, _)| d < b) {
                    best = Some((d, known));
                }
            }
            return best.map(|(_, k)| k);
        }
        for variant in deletions(&lower) {
            for &known in self.by_deletion.get(&variant).into_iter().flatten() {
                let d = strsim::osa_distance(&lower, &known.to_lowercase());
                if is_near(d, known) && best.is_none_or(|(b, _)| d < b) {
                    best = Some((d, known));
                }
            }
        }
        best.map(|(_, k)| k)
    }
}

/// Whether `distance` edits from `known` is a near miss: the same but for case (or blanks
/// around it), one edit from a name of three or more characters, two from one of five.
fn is_near(distance: usize, known: &str) -> bool {
    let len = known.chars().count();
    match distance {
        0 => true,
        1 => len >= 3,
        2 => len >= 5,
        _ => false,
    }
}

/// `word` and every string made from it by deleting one or two characters.
fn deletions(word: &str) -> HashSet<String> {
    let chars: Vec<char> = word.chars().collect();
    let mut out = HashSet::new();
    out.insert(word.to_owned());
    for i in 0..chars.len() {
        let one: Vec<char> = [&chars[..i], &chars[i + 1..]].concat();
        for j in 0..one.len() {
            out.insert(one[..j].iter().chain(&one[j + 1..]).collect());
        }
        out.insert(one.into_iter().collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ini::DEFAULT_SECTION;

    #[test]
    fn near_misses_of_section_names_with_few_and_many_names() {
        let mut many: Vec<String> = (0..100).map(|i| format!("task{i:03}")).collect();
        many.push("flaky".to_owned());
        for names in [vec!["flaky".to_owned()], many] {
            let mut known = vec!["runner", "env", DEFAULT_SECTION];
            known.extend(names.iter().map(String::as_str));
            let near = NearMisses::new(&known);
            assert_eq!(near.of("runnr"), Some("runner"));
            assert_eq!(near.of("rnuner"), Some("runner"));
            assert_eq!(near.of(" runner "), Some("runner"));
            assert_eq!(near.of("Env"), Some("env"));
            assert_eq!(near.of("default"), Some(DEFAULT_SECTION));
            assert_eq!(near.of("flakey"), Some("flaky"));
            assert_eq!(near.of("flaky"), None);
            assert_eq!(near.of("runner"), None);
            for free in ["hg", "mozharness", "environment", "e", "x"] {
                assert_eq!(near.of(free), None, "{free}");
            }
        }
    }

    #[test]
    fn keys_suggest_the_closest_known_one() {
        assert_eq!(
            suggest("max_tris", &["max_tries", "max_time"]),
            Some("max_tries")
        );
        assert_eq!(suggest("zzzzzz", &["max_tries"]), None);
        // Short names take one edit, longer ones two, never more.
        assert_eq!(suggest("evn", &["env"]), Some("env"));
        assert_eq!(suggest("xyv", &["env"]), None);
        assert_eq!(
            suggest("max_exectin", &["max_execution"]),
            Some("max_execution")
        );
        assert_eq!(suggest("mx_exectin", &["max_execution"]), None);
    }
}
