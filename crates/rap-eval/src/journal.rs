//! A predictions file written as the answers come, so that an interrupted run resumes where it
//! stopped.
//!
//! While a run goes, each answer is appended as one JSON line (`{"key", "run", "row"}`) to a
//! journal beside the predictions file (`FILE.journal`) and flushed at once; a kill loses at
//! most the line being written (a torn last line is ignored on reading). When the run ends the
//! predictions file is written whole (through a temporary file and a rename) in the input's
//! order and the journal is removed. On start, rows already in the predictions file or in the
//! journal count as answered and are not asked again.
//!
//! Rows that name the run that produced them (`run`: model and settings) must match the current
//! run, so a resumed file never mixes two models' answers.

use crate::tasks::{row_key, Task};
use rap_core::{Error, Result};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A predictions file being written.
pub struct Journal {
    path: PathBuf,
    journal: PathBuf,
    rows: HashMap<String, Value>,
    runs: BTreeSet<String>,
    writer: Option<std::fs::File>,
}

/// The journal beside a predictions file.
pub fn journal_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".journal");
    path.with_file_name(name)
}

impl Journal {
    /// Opens the predictions file `path` of `task`, reading what it and its journal already
    /// hold.
    pub fn open(path: &Path, task: Task) -> Result<Self> {
        let mut this = Journal {
            path: path.to_path_buf(),
            journal: journal_path(path),
            rows: HashMap::new(),
            runs: BTreeSet::new(),
            writer: None,
        };
        if path.exists() {
            let rows = crate::io::read_json_array(path, "predictions")?;
            for (i, row) in rows.into_iter().enumerate() {
                let key = row_key(task, &row).ok_or_else(|| {
                    Error::invalid(format!(
                        "{}: row {i} is not a {} prediction; move the file away or pass \
                         another --predictions",
                        path.display(),
                        task.as_str()
                    ))
                })?;
                this.add(key, row, None);
            }
        }
        if this.journal.exists() {
            let text =
                std::fs::read_to_string(&this.journal).map_err(|e| Error::io(&this.journal, e))?;
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            for (i, line) in lines.iter().enumerate() {
                let parsed: Option<(String, Option<String>, Value)> =
                    serde_json::from_str::<Value>(line).ok().and_then(|v| {
                        Some((
                            v.get("key")?.as_str()?.to_string(),
                            v.get("run").and_then(Value::as_str).map(str::to_string),
                            v.get("row")?.clone(),
                        ))
                    });
                match parsed {
                    Some((key, run, row)) => this.add(key, row, run),
                    // A kill in the middle of a write leaves a torn last line.
                    None if i + 1 == lines.len() => {}
                    None => {
                        return Err(Error::invalid(format!(
                            "{}: line {} is damaged; remove the journal to start over",
                            this.journal.display(),
                            i + 1
                        )))
                    }
                }
            }
        }
        Ok(this)
    }

    fn add(&mut self, key: String, row: Value, run: Option<String>) {
        if let Some(r) = run.or_else(|| row.get("run").and_then(Value::as_str).map(str::to_string))
        {
            self.runs.insert(r);
        }
        self.rows.insert(key, row);
    }

    /// Rows already answered.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn contains(&self, key: &str) -> bool {
        self.rows.contains_key(key)
    }

    /// Fails when rows already there were made by another run than `run`.
    pub fn check_run(&self, run: &str) -> Result<()> {
        match self.runs.iter().find(|r| *r != run) {
            None => Ok(()),
            Some(other) => Err(Error::invalid(format!(
                "{} already holds answers from another run ({other}), not from this one \
                 ({run}); pass another --predictions file or the same settings",
                self.path.display()
            ))),
        }
    }

    /// Records an answered row: appended to the journal and flushed before returning.
    pub fn record(&mut self, key: &str, row: Value, run: &str) -> Result<()> {
        if self.writer.is_none() {
            if let Some(dir) = self.journal.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.journal)
                .map_err(|e| Error::io(&self.journal, e))?;
            self.writer = Some(f);
        }
        let line = json!({ "key": key, "run": run, "row": row }).to_string();
        if let Some(w) = self.writer.as_mut() {
            w.write_all(format!("{line}\n").as_bytes())
                .and_then(|_| w.flush())
                .map_err(|e| Error::io(&self.journal, e))?;
        }
        self.runs.insert(run.to_string());
        self.rows.insert(key.to_string(), row);
        Ok(())
    }

    /// Writes the predictions file: the rows of `order` that are answered, in that order; then
    /// removes the journal. Returns the rows written.
    pub fn finish(mut self, order: &[String]) -> Result<Vec<Value>> {
        self.writer = None;
        let rows: Vec<Value> = order
            .iter()
            .filter_map(|k| self.rows.get(k).cloned())
            .collect();
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(|e| Error::io(&dir, e))?;
        let text = serde_json::to_string_pretty(&rows)
            .map_err(|e| Error::invalid(format!("predictions: {e}")))?;
        tmp.write_all(text.as_bytes())
            .and_then(|_| tmp.flush())
            .map_err(|e| Error::io(&self.path, e))?;
        tmp.persist(&self.path)
            .map_err(|e| Error::io(&self.path, e.error))?;
        if self.journal.exists() {
            std::fs::remove_file(&self.journal).map_err(|e| Error::io(&self.journal, e))?;
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: u64, answer: &str) -> Value {
        json!({"index": i, "image": "a.png", "concept": "bo", "correct_answer": true,
               "answer": answer, "run": "m"})
    }

    fn key(i: u64) -> String {
        format!("{i}|a.png|bo")
    }

    #[test]
    fn resumes_from_the_journal_and_the_file_then_writes_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out").join("p.json");
        let mut j = Journal::open(&path, Task::Recognition).unwrap();
        assert!(j.is_empty());
        j.record(&key(1), row(1, "No"), "m").unwrap();
        j.record(&key(0), row(0, "Yes"), "m").unwrap();
        drop(j); // as if killed: only the journal exists
        assert!(!path.exists());
        // A torn last line (the write a kill interrupted) is ignored.
        let jp = journal_path(&path);
        let mut f = std::fs::OpenOptions::new().append(true).open(&jp).unwrap();
        f.write_all(b"{\"key\": \"2|a.p").unwrap();
        let j = Journal::open(&path, Task::Recognition).unwrap();
        assert_eq!(j.len(), 2);
        assert!(j.contains(&key(0)) && j.contains(&key(1)) && !j.contains(&key(2)));
        let rows = j.finish(&[key(0), key(1), key(2)]).unwrap();
        assert_eq!(rows.len(), 2);
        assert!(!jp.exists());
        let written: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(written[0]["answer"], "Yes");
        assert_eq!(written[1]["answer"], "No");
        // The finished file is read back as answered.
        let j = Journal::open(&path, Task::Recognition).unwrap();
        assert!(j.contains(&key(1)));
        j.check_run("m").unwrap();
        let e = j.check_run("other").unwrap_err().to_string();
        assert!(e.contains("another run") && e.contains("p.json"), "{e}");
    }

    #[test]
    fn a_damaged_middle_line_or_foreign_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        std::fs::write(journal_path(&path), "garbage\n{\"key\":\"k\",\"row\":1}\n").unwrap();
        let e = Journal::open(&path, Task::Recognition)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("line 1"), "{e}");
        std::fs::remove_file(journal_path(&path)).unwrap();
        std::fs::write(&path, r#"[["img.png", ["bo"], "a caption"]]"#).unwrap();
        let e = Journal::open(&path, Task::Recognition)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not a recognition prediction"), "{e}");
        assert_eq!(Journal::open(&path, Task::Caption).unwrap().len(), 1);
    }
}
