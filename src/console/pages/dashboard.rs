//! Server Configuration › Hub Transport › a server › Dashboard: the per-minute counts of the
//! last hour and day as charts (`transport::stats`), and the live figures: the queues as
//! Get-Queue reads them, and the connections each receive connector holds.

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use time::{Duration, OffsetDateTime};

use super::chart::{self, Chart, Series, grouped};
use super::server_hub::{SERVERS, frame, server_rows, servers_with};
use super::view::{Action, Frame, Link, Table};
use super::{PageError, PageResult, page, seg};
use crate::console::session::Admin;
use crate::console::state::ConsoleState;
use crate::ops::{OpError, receive_connector};
use crate::transport::queue::QueueStatus;
use crate::transport::queue::ops::totals::messages_in_retry;
use crate::transport::queue::ops::{QueueError, QueueInfo, QueueName, list_queues};
use crate::transport::stats::{self, Counts, MinuteRow};

pub fn routes() -> Router<ConsoleState> {
    Router::new().route("/server/hub/{server}/dashboard", get(dashboard))
}

/// The dashboard of `server`.
pub fn url(server: &str) -> String {
    format!("{SERVERS}/{}/dashboard", seg(server))
}

/// The figures of the queues now.
pub struct Now {
    pub queued: String,
    pub in_retry: String,
    pub retry_queues: String,
    pub poison: String,
    pub shadow: String,
}

pub struct Connections {
    pub connector: String,
    pub count: String,
}

#[derive(Template)]
#[template(path = "console/dashboard.html")]
pub struct DashboardPage {
    pub frame: Frame,
    pub servers: Table,
    pub server: String,
    pub max_age: String,
    pub now: Now,
    /// None: another node's, which only that node counts.
    pub connections: Option<Vec<Connections>>,
    /// `Normal` or `High (why)`; None: another node's, which only that node knows.
    pub back_pressure: Option<String>,
    pub hour: Vec<Chart>,
    pub day: Vec<Chart>,
}

fn queue_error(e: QueueError) -> PageError {
    match e {
        QueueError::Db(e) => PageError::Db(e),
        other => PageError::Op(OpError::NotFound(other.to_string())),
    }
}

/// Get-Queue's figures summed: queued is every message in Submission, a delivery queue or
/// Unreachable (a message in two queues counts in both, as the Queue Viewer adds them up); in
/// retry is Get-Message's entries in Retry.
pub fn now_counts(queues: &[QueueInfo], in_retry: i64) -> (Now, u64) {
    let sum = |f: &dyn Fn(&QueueInfo) -> bool| {
        queues
            .iter()
            .filter(|q| f(q))
            .fold(0u64, |a, q| a.saturating_add(q.message_count.max(0) as u64))
    };
    let shadow = |q: &QueueInfo| q.delivery_type == "ShadowRedundancy";
    let poison = |q: &QueueInfo| q.identity.queue == QueueName::Poison;
    let queued = sum(&|q| !shadow(q) && !poison(q));
    let now = Now {
        queued: grouped(queued),
        in_retry: grouped(in_retry.max(0) as u64),
        retry_queues: grouped(
            queues
                .iter()
                .filter(|q| !shadow(q) && q.status == QueueStatus::Retry)
                .count() as u64,
        ),
        poison: grouped(sum(&poison)),
        shadow: grouped(sum(&shadow)),
    };
    (now, queued)
}

/// One value per minute slot.
#[derive(Default)]
struct Columns {
    received: Vec<u64>,
    delivered: Vec<u64>,
    deferred: Vec<u64>,
    failed: Vec<u64>,
    queue: Vec<u64>,
}

fn count(n: i64) -> u64 {
    n.max(0) as u64
}

/// The `slots` minutes ending with `current`, from the stored rows; minutes without a row (the
/// node was down) are zero. The current minute adds what the node counted and has not written,
/// and shows the queue length now.
fn columns(
    rows: &[MinuteRow],
    current: OffsetDateTime,
    slots: usize,
    pending: Counts,
    queued_now: u64,
) -> Columns {
    let mut c = Columns {
        received: vec![0; slots],
        delivered: vec![0; slots],
        deferred: vec![0; slots],
        failed: vec![0; slots],
        queue: vec![0; slots],
    };
    if slots == 0 {
        return c;
    }
    let start = current - Duration::minutes(slots as i64 - 1);
    for r in rows {
        let i = (r.minute - start).whole_minutes();
        let Some(i) = usize::try_from(i).ok().filter(|i| *i < slots) else {
            continue;
        };
        c.received[i] = count(r.received);
        c.delivered[i] = count(r.delivered);
        c.deferred[i] = count(r.deferred);
        c.failed[i] = count(r.failed);
        c.queue[i] = count(r.queue_length);
    }
    let last = slots - 1;
    c.received[last] = c.received[last].saturating_add(pending.received);
    c.delivered[last] = c.delivered[last].saturating_add(pending.delivered);
    c.deferred[last] = c.deferred[last].saturating_add(pending.deferred);
    c.failed[last] = c.failed[last].saturating_add(pending.failed);
    c.queue[last] = queued_now;
    c
}

fn charts(window: &'static str, c: &Columns, current: OffsetDateTime, every: usize) -> Vec<Chart> {
    let slots = c.queue.len();
    let start = current - Duration::minutes(slots as i64 - 1);
    let mut labels: Vec<(usize, String)> = (0..slots)
        .step_by(every.max(1))
        .map(|i| {
            let t = start + Duration::minutes(i as i64);
            (i, format!("{:02}:{:02}", t.hour(), t.minute()))
        })
        .collect();
    if slots > 0 {
        labels.push((slots - 1, "now".into()));
    }
    let (messages, queue) = if window == "hour" {
        ("hour-messages", "hour-queue")
    } else {
        ("day-messages", "day-queue")
    };
    vec![
        chart::chart(
            messages,
            "Messages per minute",
            &[
                Series {
                    name: "Received",
                    class: "received",
                    values: &c.received,
                    gauge: false,
                },
                Series {
                    name: "Delivered",
                    class: "delivered",
                    values: &c.delivered,
                    gauge: false,
                },
                Series {
                    name: "Deferred",
                    class: "deferred",
                    values: &c.deferred,
                    gauge: false,
                },
                Series {
                    name: "Failed",
                    class: "failed",
                    values: &c.failed,
                    gauge: false,
                },
            ],
            &labels,
        ),
        chart::chart(
            queue,
            "Queue length",
            &[Series {
                name: "Queue length",
                class: "queue",
                values: &c.queue,
                gauge: true,
            }],
            &labels,
        ),
    ]
}

pub async fn dashboard(
    State(st): State<ConsoleState>,
    admin: Admin,
    Path(name): Path<String>,
) -> PageResult {
    let mut tx = st.pool.begin().await?;
    let (all, i) = servers_with(&mut tx, &name).await?;
    let s = &all[i];
    let queues = list_queues(&st.pool, &s.name).await.map_err(queue_error)?;
    let in_retry = messages_in_retry(&st.pool, &s.name)
        .await
        .map_err(queue_error)?;
    let (now, queued_now) = now_counts(&queues, in_retry);

    // This node's own counters and connections; another node's are its own to show.
    let local = st
        .live
        .as_ref()
        .filter(|_| s.name.eq_ignore_ascii_case(&st.server));
    let pending = local.map(|l| l.stats.pending()).unwrap_or_default();
    let connections = match local {
        Some(l) => {
            let counts = l.connections.connections();
            let list = receive_connector::on_server(
                receive_connector::get(&mut tx, &st.server, None, true).await?,
                Some(&s.name),
            );
            Some(
                list.iter()
                    .map(|c| Connections {
                        connector: c.name.clone(),
                        count: grouped(counts.get(&c.id).copied().unwrap_or(0) as u64),
                    })
                    .collect(),
            )
        }
        None => None,
    };

    let back_pressure = local.map(|l| {
        let mut line = l.pressure.state().describe();
        if l.pressure.database_down() {
            line.push_str("; PostgreSQL does not answer, new mail is refused");
        }
        line
    });

    let current = stats::minute_of(OffsetDateTime::now_utc());
    let day_slots = 24 * 60;
    let rows = stats::read(&mut tx, &s.name, current - Duration::minutes(day_slots - 1)).await?;
    let day = columns(&rows, current, day_slots as usize, pending, queued_now);
    let hour = columns(&rows, current, 60, pending, queued_now);

    let frame = frame(&admin)
        .tabs(vec![
            Link::new(
                "Receive Connectors",
                format!("{SERVERS}/{}", seg(&s.name)),
                false,
            ),
            Link::new("Dashboard", url(&s.name), true),
        ])
        .actions(s.name.clone(), vec![Action::get("Refresh", url(&s.name))]);
    page(&DashboardPage {
        frame,
        servers: server_rows(&all, Some(&s.name)),
        server: s.name.clone(),
        max_age: crate::shell::parse::format_timespan(s.server_statistics_max_age),
        now,
        connections,
        back_pressure,
        hour: charts("hour", &hour, current, 15),
        day: charts("day", &day, current, 6 * 60),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn row(minute: OffsetDateTime, received: i64, queue: i64) -> MinuteRow {
        MinuteRow {
            minute,
            received,
            delivered: 0,
            deferred: 0,
            failed: 0,
            queue_length: queue,
        }
    }

    #[test]
    fn rows_land_in_their_minute_and_the_current_one_adds_the_unwritten_counts() {
        let now = datetime!(2026-12-02 07:30 UTC);
        let rows = [
            row(datetime!(2026-12-02 06:30 UTC), 9, 9), // before the hour
            row(datetime!(2026-12-02 06:31 UTC), 2, 4), // its first minute
            row(datetime!(2026-12-02 07:30 UTC), 1, 7), // now, written at a restart
            row(datetime!(2026-12-02 07:31 UTC), 5, 5), // a clock ahead: ignored
        ];
        let pending = Counts {
            received: 3,
            failed: 1,
            ..Counts::default()
        };
        let c = columns(&rows, now, 60, pending, 6);
        assert_eq!(c.received[0], 2);
        assert_eq!(c.queue[0], 4);
        assert_eq!(c.received[59], 4);
        assert_eq!(c.failed[59], 1);
        assert_eq!(c.queue[59], 6, "the queue length now");
        assert_eq!(c.received.iter().sum::<u64>(), 6);
        assert!(columns(&rows, now, 0, pending, 6).queue.is_empty());
    }
}
