//! Where a new session goes: with its call while that worker has headroom, otherwise on the
//! least-loaded worker (DESIGN.md decision 3). Pure: the caller passes the loads.

use crate::bridge::WorkerId;

/// Picks a worker for a new session of a call.
///
/// * `call_home` — the worker already hosting the call, if any;
/// * `loads` — sessions per worker (index = worker);
/// * `spill_at` — a worker with this many sessions is full for placement purposes.
pub fn place(call_home: Option<WorkerId>, loads: &[usize], spill_at: usize) -> WorkerId {
    if let Some(home) = call_home {
        if loads.get(home.0).is_some_and(|&l| l < spill_at) {
            return home;
        }
    }
    let best = loads
        .iter()
        .enumerate()
        .min_by_key(|&(i, &l)| (l, i))
        .map(|(i, _)| i)
        .unwrap_or(0);
    WorkerId(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_call_goes_to_least_loaded_worker() {
        assert_eq!(place(None, &[3, 1, 2], 100), WorkerId(1));
        assert_eq!(place(None, &[0, 0], 100), WorkerId(0));
    }

    #[test]
    fn sessions_of_a_call_stay_together_while_there_is_headroom() {
        assert_eq!(place(Some(WorkerId(0)), &[5, 0], 100), WorkerId(0));
    }

    #[test]
    fn a_full_home_worker_spills_to_the_least_loaded() {
        assert_eq!(place(Some(WorkerId(0)), &[100, 7, 3], 100), WorkerId(2));
    }

    #[test]
    fn empty_worker_list_still_yields_worker_zero() {
        assert_eq!(place(None, &[], 10), WorkerId(0));
    }
}
