//! Concept names: from a user's list or made up, deterministic for a seed.
//!
//! RAP trains on made-up names so the model learns to use the name it is given rather than one
//! it knows. Generated names are two or three consonant-vowel syllables (`kiro`, `bemalu`),
//! drawn from the concept's own random stream, so a concept keeps its name when others are
//! added; a clash with an earlier name draws again.

use crate::rng::Rng;
use rap_core::{normalize_name_key, Error, Result};
use std::collections::BTreeSet;
use std::path::Path;

const CONSONANTS: &[u8] = b"bdfgklmnprstvz";
const VOWELS: &[u8] = b"aeiou";

fn made_up(rng: &mut Rng) -> String {
    let syllables = if rng.chance(0.7) { 2 } else { 3 };
    let mut s = String::new();
    for _ in 0..syllables {
        s.push(CONSONANTS[rng.below(CONSONANTS.len())] as char);
        s.push(VOWELS[rng.below(VOWELS.len())] as char);
    }
    s
}

/// Reads a names file: one name per line; blank lines and lines starting with `#` are ignored.
/// Every name must be a valid concept name and appear once (compared case-insensitively).
pub fn read_names(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let name = line.trim();
        if name.is_empty() || name.starts_with('#') {
            continue;
        }
        let key = normalize_name_key(name)
            .map_err(|e| Error::invalid(format!("{}, line {}: {e}", path.display(), i + 1)))?;
        if !seen.insert(key) {
            return Err(Error::invalid(format!(
                "{}, line {}: {name:?} appears twice",
                path.display(),
                i + 1
            )));
        }
        out.push(rap_core::strip_brackets(name).to_string());
    }
    Ok(out)
}

/// One name per concept key, in order. With a list, the list is shuffled with the seed and
/// dealt out (it must hold at least as many names as there are concepts).
pub fn assign(keys: &[String], list: Option<&[String]>, seed: u64) -> Result<Vec<String>> {
    match list {
        Some(list) => {
            if list.len() < keys.len() {
                return Err(Error::invalid(format!(
                    "the names list has {} names for {} concepts",
                    list.len(),
                    keys.len()
                )));
            }
            let mut list = list.to_vec();
            Rng::stream(seed, "names", "list").shuffle(&mut list);
            list.truncate(keys.len());
            Ok(list)
        }
        None => {
            let mut used = BTreeSet::new();
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                let mut rng = Rng::stream(seed, "name", key);
                let name = loop {
                    let n = made_up(&mut rng);
                    if used.insert(n.clone()) {
                        break n;
                    }
                };
                out.push(name);
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_are_valid_unique_and_stable() {
        let keys: Vec<String> = (0..500).map(|i| format!("ann:{i}")).collect();
        let a = assign(&keys, None, 3).unwrap();
        let set: BTreeSet<_> = a.iter().collect();
        assert_eq!(set.len(), 500);
        for n in &a {
            assert_eq!(normalize_name_key(n).unwrap(), *n);
        }
        // A concept keeps its name when another is added before it.
        let mut more = vec!["ann:x".to_string()];
        more.extend(keys.iter().take(3).cloned());
        let b = assign(&more, None, 3).unwrap();
        assert_eq!(&b[1..], &a[..3]);
        assert_ne!(assign(&keys, None, 4).unwrap(), a);
    }

    #[test]
    fn name_lists_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("names.txt");
        std::fs::write(&p, "# names\nBo\n\n<Dug>\n").unwrap();
        assert_eq!(read_names(&p).unwrap(), vec!["Bo", "Dug"]);
        std::fs::write(&p, "Bo\nbo\n").unwrap();
        assert!(read_names(&p).unwrap_err().to_string().contains("line 2"));
        std::fs::write(&p, "a,b\n").unwrap();
        assert!(read_names(&p).unwrap_err().to_string().contains("line 1"));
        let keys = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let e = assign(&keys, Some(&["x".to_string()]), 0).unwrap_err();
        assert!(e.to_string().contains("1 names for 3 concepts"));
    }
}
