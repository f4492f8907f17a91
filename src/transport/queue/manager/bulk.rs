//! A filtered message action on many messages as one command: one look-up of where they are,
//! one pass over the in-memory state, the rows written set-based; then each removed message is
//! finalised (its NDR, or silently) as a failed delivery would be.

use super::admin::{Place, remove_in};
use super::*;
use crate::transport::queue::ops::QueueError;
use crate::transport::queue::ops::command::{Prepared, Verb};

/// The command's messages in order, each with the ordinals named for it (Remove-Message names
/// recipients; Suspend-/Resume-Message name messages).
fn each_message(p: &Prepared) -> Vec<(Uuid, Vec<i32>)> {
    let mut each: Vec<(Uuid, Vec<i32>)> = Vec::new();
    for (i, id) in p.batch.iter().enumerate() {
        if each.last().is_none_or(|(last, _)| last != id) {
            each.push((*id, Vec::new()));
        }
        if let (Some(o), Some((_, ordinals))) = (p.ordinals.get(i), each.last_mut()) {
            ordinals.push(*o);
        }
    }
    each
}

impl QueueManager {
    /// Where each message is; a message gone since the caller checked it is absent.
    async fn places(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Place>, QueueError> {
        let mut places = HashMap::with_capacity(ids.len());
        let mut unknown = Vec::new();
        {
            let st = self.state();
            for id in ids {
                if st.messages.contains_key(id) {
                    places.insert(*id, Place::Memory);
                } else if st.poisoned.contains(id) {
                    places.insert(*id, Place::Poison);
                } else {
                    unknown.push(*id);
                }
            }
        }
        if !unknown.is_empty() {
            let rows: Vec<(Uuid, bool)> =
                sqlx::query_as("SELECT id, poison FROM message WHERE id = ANY($1)")
                    .bind(&unknown)
                    .fetch_all(&self.inner.pool)
                    .await?;
            for (id, poison) in rows {
                places.insert(
                    id,
                    if poison {
                        Place::Poison
                    } else {
                        Place::Arriving
                    },
                );
            }
        }
        Ok(places)
    }

    /// A filtered message action: every message it names, in one command (one flush before
    /// and after, one result). Returns the messages and recipients it changed.
    pub(super) async fn message_batch(&self, p: &Prepared) -> Result<(u32, u32), QueueError> {
        let each = each_message(p);
        if p.verb == Verb::RemoveMessage {
            let ids: Vec<Uuid> = each.iter().map(|(id, _)| *id).collect();
            let places = self.places(&ids).await?;
            return Ok(self.remove_many(each, &places, p.flag).await);
        }
        let (mut messages, mut recipients) = (0u32, 0u32);
        for (id, ordinals) in each {
            let one = Prepared {
                verb: p.verb,
                server: p.server.clone(),
                identity: p.identity.clone(),
                queue_id: None,
                message_id: Some(id),
                ordinals,
                flag: p.flag,
                rate: None,
                batch: vec![],
            };
            match self.message_command(&one).await {
                Ok((m, r)) => {
                    messages = messages.saturating_add(m);
                    recipients = recipients.saturating_add(r);
                }
                Err(QueueError::MessageNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok((messages, recipients))
    }

    /// Remove-Message on many messages: one pass under the state's lock marks every named
    /// recipient, the marks are written together, and the waiting ones are finalised.
    async fn remove_many(
        &self,
        each: Vec<(Uuid, Vec<i32>)>,
        places: &HashMap<Uuid, Place>,
        with_ndr: bool,
    ) -> (u32, u32) {
        let mut rows = Vec::new();
        let mut now = Vec::new();
        // A message in two queues comes once per queue; it counts once.
        let mut touched = HashSet::new();
        {
            let mut st = self.state();
            let st = &mut *st;
            for (id, ordinals) in each {
                let Some(place) = places.get(&id) else {
                    continue;
                };
                touched.insert(id);
                match place {
                    Place::Memory => {
                        let (marked, finals) = remove_in(st, id, &ordinals, with_ndr);
                        rows.extend(marked);
                        if !finals.is_empty()
                            && let Some(m) = st.messages.get(&id)
                        {
                            now.push((Job::new(self.give_back(), &m.meta, Vec::new()), finals));
                        }
                    }
                    Place::Arriving | Place::Poison => {
                        rows.extend(ordinals.iter().map(|o| AdminRow::RemoveMarked {
                            message: id,
                            ordinal: *o,
                            with_ndr,
                        }));
                        if matches!(place, Place::Arriving) {
                            let held = st.held.entry(id).or_default();
                            held.remove.extend(ordinals.iter().map(|o| (*o, with_ndr)));
                        }
                    }
                }
            }
        }
        let recipients = u32::try_from(rows.len()).unwrap_or(u32::MAX);
        for r in rows {
            self.write(Write::Admin(r));
        }
        for (job, finals) in now {
            self.finish(&job, finals, &Attempt::default()).await;
        }
        self.inner.wake.notify_one();
        (u32::try_from(touched.len()).unwrap_or(u32::MAX), recipients)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_groups_each_message_with_its_ordinals_in_order() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let p = Prepared {
            verb: Verb::RemoveMessage,
            server: "HUB1".into(),
            identity: "2 message(s)".into(),
            queue_id: None,
            message_id: None,
            ordinals: vec![0, 2, 1, 3],
            flag: false,
            rate: None,
            batch: vec![a, a, b, a],
        };
        assert_eq!(
            each_message(&p),
            [(a, vec![0, 2]), (b, vec![1]), (a, vec![3])]
        );
        let suspend = Prepared {
            verb: Verb::SuspendMessage,
            ordinals: vec![],
            batch: vec![a, b],
            ..p
        };
        assert_eq!(each_message(&suspend), [(a, vec![]), (b, vec![])]);
    }
}
