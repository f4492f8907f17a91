//! The queue lengths `/metrics` reports, read from the in-memory state at each scrape.

use std::collections::BTreeMap;

use super::*;
use crate::monitor::QueueLengths;

/// Exchange shows Submission and Poison with this DeliveryType.
const UNDEFINED: &str = "Undefined";

impl QueueManager {
    /// Messages per queue (a message with recipients in two queues counts in both, as Get-Queue
    /// counts it), Submission for recipients not yet routed, Poison, and the shadow copies held.
    pub fn queue_lengths(&self) -> QueueLengths {
        let st = self.state();
        let mut counts: BTreeMap<(String, &'static str), u64> = BTreeMap::new();
        let mut shadow = 0u64;
        let mut queues: Vec<Option<i64>> = Vec::new();
        for m in st.messages.values() {
            queues.clear();
            let mut shadowed = false;
            for r in m.rcpts.iter().filter(|r| r.state != RState::Done) {
                shadowed |= r.state == RState::Shadow;
                if !queues.contains(&r.queue) {
                    queues.push(r.queue);
                }
            }
            shadow += u64::from(shadowed);
            for q in &queues {
                let key = match q.and_then(|id| st.queues.get(&id)) {
                    Some(q) => (q.key.next_hop_domain.clone(), q.key.delivery_type.name()),
                    None => ("Submission".to_string(), UNDEFINED),
                };
                *counts.entry(key).or_default() += 1;
            }
        }
        // Every queue that exists shows, empty or not, as in Get-Queue.
        for q in st.queues.values() {
            counts
                .entry((q.key.next_hop_domain.clone(), q.key.delivery_type.name()))
                .or_default();
        }
        counts
            .entry(("Submission".to_string(), UNDEFINED))
            .or_default();
        *counts.entry(("Poison".to_string(), UNDEFINED)).or_default() += st.poisoned.len() as u64;
        QueueLengths {
            queues: counts
                .into_iter()
                .map(|((queue, delivery_type), n)| (queue, delivery_type, n))
                .collect(),
            shadow,
        }
    }
}
