//! The shard's lease task: what its rate limiters ask of the node-wide budget goes to the
//! control thread from here.

use std::rc::Rc;
use std::time::Instant;

use crate::link::FromShard;
use crate::policy::rate_limit::lease::SWEEP_EVERY;
use crate::state::Shard;

/// The shard's lease task: sends queued asks to the control thread, one message per batch,
/// and gives back expired leases every [`SWEEP_EVERY`].
pub(super) async fn run_leases(shard: Rc<Shard>) {
    let policy = &shard.policy;
    let mut next_sweep = Instant::now() + SWEEP_EVERY;
    loop {
        if policy.outbox.is_empty() {
            let wake = policy.outbox.wake.notified();
            let _ = monoio::time::timeout_at(next_sweep.into(), wake).await;
        }
        let now = Instant::now();
        if now >= next_sweep {
            policy.sweep(now);
            next_sweep = now + SWEEP_EVERY;
        }
        let asks = policy.outbox.take();
        if !asks.is_empty() {
            // Never block the shard on a full channel: the batch is dropped, its asks count as
            // lost after `ASK_TIMEOUT` and are made again, and tokens it gave back are lost.
            let message = FromShard::Lease {
                shard: shard.index,
                asks,
            };
            if shard.events.try_send(message).is_err() {
                tracing::debug!(
                    shard = shard.index,
                    "lease asks dropped: control channel full"
                );
            }
        }
    }
}
