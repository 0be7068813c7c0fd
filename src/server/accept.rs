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
    loop {
        let (stream, remote) = tokio::select! {
            accepted = acceptor.accept() => accepted,
            _ = stop.cancelled() => break,
        };
        connections.spawn(connection::serve(
            shared.clone(),
            stream,
            remote,
            stop.clone(),
            cut.clone(),
            connections.token(),
        ));
    }
    drop(acceptor);
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
