//! The open-file limit decides how many subscribers one process can hold.

/// Descriptors a process keeps for itself (stdio, runtime, publish
/// connections) besides its subscriber sockets.
pub const RESERVED_FILE_DESCRIPTORS: u64 = 100;

/// Raises the soft open-file limit to the hard one; returns the limit in force.
pub fn raise_open_file_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            eprintln!("warning: could not raise the open-file limit: {error}");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// Subscriber sockets one worker process can hold under `open_file_limit`.
pub fn subscribers_per_process(open_file_limit: u64) -> u64 {
    open_file_limit
        .saturating_sub(RESERVED_FILE_DESCRIPTORS)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twenty_thousand_need_two_processes_under_a_20k_limit() {
        let per_process = subscribers_per_process(20_000);
        assert!(per_process < 20_000 && per_process > 19_000);
        assert_eq!(20_000u64.div_ceil(per_process), 2);
        assert_eq!(10_000u64.div_ceil(per_process), 1);
    }
}
