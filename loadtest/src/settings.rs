//! What one run is given: the scenario, the server, the disruption and the
//! rules that fail it. `run` carries these out and `figures` judges by them;
//! both import them from here, neither from the other.

use crate::disrupt::Disruption;
use crate::scenario::Scenario;
use crate::target::Target;

/// Everything one run needs besides the publish load of the moment.
pub struct RunSettings {
    pub scenario: Scenario,
    pub target: Target,
    pub server_pids: Vec<u32>,
    pub label: Option<String>,
    /// A command to run in the middle of publishing; publishing then lasts
    /// until it is over (see `disrupt`).
    pub disruption: Option<Disruption>,
    pub verdict: VerdictRules,
}

/// What fails a run beyond the fixed rules (lost, duplicated, out of order,
/// refused yet delivered, failed or closed streams, a failed disruption).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct VerdictRules {
    /// Fail the run on any `event: gap` frame (e.g. when the history is
    /// shared and stays up, as with Redis during a rolling restart).
    #[arg(long)]
    pub fail_on_gap_frames: bool,
    /// Fail the run when, in a drain window, the busiest 250 ms of reconnects
    /// (as a rate) exceeds this many times the window's mean rate: a burst of
    /// reconnects instead of a spread.
    #[arg(long, value_name = "RATIO")]
    pub max_reconnect_spike: Option<f64>,
    /// Report publishes not answered 2xx without failing the run (e.g. with
    /// one server, that can't answer while it restarts). Refused publishes
    /// must still reach nobody.
    #[arg(long)]
    pub tolerate_unanswered_publishes: bool,
}
