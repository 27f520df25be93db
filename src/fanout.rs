//! After commit: turn committed domain events into pushes and publish them on the bus.

use std::sync::Arc;

use actors::journal::{Committed, EventSink};
use actors::DomainEvent;
use async_trait::async_trait;

use crate::bus::Hub;

/// Publishes committed events, in commit order, to their topics.
pub struct Fanout {
    pub bus: Arc<Hub>,
}

#[async_trait]
impl EventSink<DomainEvent> for Fanout {
    #[expect(
        clippy::never_loop,
        reason = "no entity kind is wired into the node yet; each adds its variant here"
    )]
    async fn committed(&self, batch: Vec<Committed<DomainEvent>>) {
        for committed in batch {
            for event in committed.events {
                match event {}
            }
        }
    }
}

impl crate::store::journal::Persist for DomainEvent {
    fn persist<'a>(
        &'a self,
        _tx: crate::store::journal::Tx<'a>,
    ) -> futures_util::future::BoxFuture<'a, Result<(), sqlx::Error>> {
        match *self {}
    }
}
