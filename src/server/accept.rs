//! The accept loop: one task per connection, tracked so that stopping can
//! wait for them, and cut off after a grace.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::listener::DrainingAcceptor;
use super::{Shared, connection};

pub(super) async fn run(
    mut acceptor: DrainingAcceptor,
    shared: Arc<Shared>,
    stop: CancellationToken,
    close_grace: Duration,
) {
    let connections = TaskTracker::new();
    let cut = CancellationToken::new();
    // A connection takes no new request once the listener has closed (the
    // drain's second step), not only once the server stops: an idle
    // kept-alive connection closes then, a busy one after its answer or its
    // stream. A proxy's pool of idle upstream connections (nginx's
    // `keepalive`) would otherwise go on sending requests here for the
    // whole drain, each refused with 503, while a new process may already
    // listen at this address; nginx counts each refusal against the
    // address (`max_fails`) and, with every replica's count up at once,
    // answers "no live upstreams" (502, which ends an EventSource for good).
    // Closed, the pool's connections go and nginx opens new ones, to
    // whatever listens here now or, refused, to the next replica.
    let stopping = acceptor.closing().child_token();
    loop {
        let (stream, remote) = tokio::select! {
            accepted = acceptor.accept() => accepted,
            _ = stop.cancelled() => break,
        };
        connections.spawn(connection::serve(
            shared.clone(),
            stream,
            remote,
            stopping.clone(),
            cut.clone(),
            connections.token(),
        ));
    }
    drop(acceptor);
    // Stopped without a drain (the listener still open): the same.
    stopping.cancel();
    connections.close();
    if tokio::time::timeout(close_grace, connections.wait())
        .await
        .is_err()
    {
        tracing::info!(
            left = connections.len(),
            "connections still open after the grace; closing them"
        );
        cut.cancel();
        connections.wait().await;
    }
}
