//! The Redis backplane's own unit tests: which failed publishes stored
//! nothing, and which may have.

use std::io;

use super::script_never_ran;

#[test]
fn a_refusal_from_redis_or_a_refused_connection_published_nothing() {
    let out_of_memory = redis::make_extension_error(
        "OOM".to_owned(),
        Some("command not allowed when used memory > 'maxmemory'".to_owned()),
    );
    assert!(script_never_ran(&out_of_memory));
    let refused = redis::RedisError::from(io::Error::from(io::ErrorKind::ConnectionRefused));
    assert!(script_never_ran(&refused));
}

#[test]
fn a_connection_broken_with_the_script_in_flight_leaves_the_outcome_unknown() {
    for kind in [
        io::ErrorKind::BrokenPipe,
        io::ErrorKind::ConnectionReset,
        io::ErrorKind::UnexpectedEof,
        io::ErrorKind::TimedOut,
    ] {
        let broken = redis::RedisError::from(io::Error::from(kind));
        assert!(!script_never_ran(&broken), "{kind:?}");
    }
}
