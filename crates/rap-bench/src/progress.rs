//! How a workload reports its progress: a caller shows it (a progress bar on a terminal) or
//! ignores it ([`NoProgress`]); the workloads themselves never print.

/// Progress of the long steps of a workload (filling a store, making keys, querying).
///
/// A workload calls [`Progress::start`] for each step, then [`Progress::inc`] as items are
/// done (possibly from several threads at once), then [`Progress::finish`]; steps follow one
/// another, never overlap.
pub trait Progress: Sync {
    /// A step of `len` items begins; `label` names it (`"filling"`, `"querying"`...).
    fn start(&self, len: u64, label: &'static str);
    /// `n` more items of the current step are done.
    fn inc(&self, n: u64);
    /// The current step is over (a bar is cleared).
    fn finish(&self);
}

/// Progress that goes nowhere: for tests, and callers that show none.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _len: u64, _label: &'static str) {}
    fn inc(&self, _n: u64) {}
    fn finish(&self) {}
}
