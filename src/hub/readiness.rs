//! Whether this process should take new clients, and if not why: the hub's
//! readiness reasons, owned here and rendered by `GET /readyz`.

use super::Phase;

/// The hub's answer to "ready?", its reasons in the order they win.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// A drain has begun (and won't be undone): load balancers must stop
    /// sending new clients here, whatever else holds.
    Draining,
    /// The backplane can't take publishes now (Redis unreachable); it may
    /// come back.
    BackplaneUnavailable,
}

impl Readiness {
    /// From the drain phase and whether the backplane is available.
    pub fn of(phase: Phase, backplane_available: bool) -> Self {
        if phase != Phase::Serving {
            Self::Draining
        } else if !backplane_available {
            Self::BackplaneUnavailable
        } else {
            Self::Ready
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drain_wins_over_a_backplane_outage() {
        for phase in [Phase::Draining, Phase::Closing] {
            assert_eq!(Readiness::of(phase, false), Readiness::Draining);
            assert_eq!(Readiness::of(phase, true), Readiness::Draining);
        }
        assert_eq!(
            Readiness::of(Phase::Serving, false),
            Readiness::BackplaneUnavailable
        );
        assert_eq!(Readiness::of(Phase::Serving, true), Readiness::Ready);
    }
}
