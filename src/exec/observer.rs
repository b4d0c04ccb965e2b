//! What the executor tells the outside world while it runs: which node
//! starts (and why), its progress, and how it ended. The CLI draws bars or
//! prints JSON lines from these; tests record them.

use crate::fingerprint::Reason;
use crate::kind::{NoProgress, Progress};

use super::NodeOutcome;

/// Receives run events. Called from worker threads.
pub trait Observer: Sync {
    /// A node starts executing on `threads` threads (not called for reused
    /// nodes).
    fn started(&self, _instance: &str, _reason: &Reason, _threads: usize) {}
    /// A progress sink for a running node.
    fn progress(&self, _instance: &str) -> Box<dyn Progress + '_> {
        Box::new(NoProgress)
    }
    /// A node finished: executed, reused, failed or skipped.
    fn finished(&self, _outcome: &NodeOutcome) {}
}

/// Ignores every event.
pub struct NullObserver;
impl Observer for NullObserver {}
