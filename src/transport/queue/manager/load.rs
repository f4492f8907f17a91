//! What the database still holds for this server, loaded at start and on release from Poison.

use super::*;

/// Every message of `server` with a recipient still to deliver, as the database holds it.
/// `only`: just these messages (released from Poison).
pub(super) async fn load_pending(
    pool: &PgPool,
    server: &str,
    only: Option<&[Uuid]>,
) -> Result<Vec<Submitted>, sqlx::Error> {
    type MRow = (
        Uuid,
        i64,
        String,
        i64,
        OffsetDateTime,
        Option<String>,
        Option<String>,
        Option<String>,
        bool,
        Option<String>,
        Option<String>,
        String,
        bool,
        i32,
        bool,
    );
    let rows: Vec<MRow> = sqlx::query_as(
        "SELECT id, internal_id, from_address, size, received_at, env_id, ret, body_type, smtp_utf8,
                subject, internet_message_id, source_ip, suspended, crash_count,
                auth_user IS NOT NULL
         FROM message m WHERE server = $1 AND NOT poison AND ($2::uuid[] IS NULL OR id = ANY($2))
           AND EXISTS (SELECT 1 FROM message_recipient r WHERE r.message_id = m.id AND r.status IN ('Ready', 'Retry', 'Shadow'))
         ORDER BY received_at",
    )
    .bind(server)
    .bind(only)
    .fetch_all(pool)
    .await?;
    type RRow = (
        Uuid,
        i32,
        String,
        Option<String>,
        Option<String>,
        i32,
        Option<String>,
        Option<OffsetDateTime>,
        bool,
        Option<bool>,
        Option<i64>,
    );
    // A shadow copy comes back into its shadow queue (loaded before the messages).
    let rcpts: Vec<RRow> = sqlx::query_as(
        "SELECT r.message_id, r.ordinal, r.address, r.orcpt, r.notify, r.retry_count, r.last_error,
                r.next_retry_time, r.delay_notified, r.remove_with_ndr,
                CASE WHEN r.status = 'Shadow' THEN r.queue_id END
         FROM message_recipient r JOIN message m ON m.id = r.message_id
         WHERE m.server = $1 AND NOT m.poison AND r.status IN ('Ready', 'Retry', 'Shadow')
           AND ($2::uuid[] IS NULL OR m.id = ANY($2))
         ORDER BY r.message_id, r.ordinal",
    )
    .bind(server)
    .bind(only)
    .fetch_all(pool)
    .await?;
    let mut by_message: HashMap<Uuid, Vec<SubmittedRecipient>> = HashMap::new();
    for (
        m,
        ordinal,
        address,
        orcpt,
        notify,
        retry_count,
        last_error,
        next_retry,
        delay_notified,
        remove,
        shadow_queue,
    ) in rcpts
    {
        by_message.entry(m).or_default().push(SubmittedRecipient {
            ordinal,
            address,
            orcpt,
            notify,
            retry_count,
            last_error,
            next_retry,
            delay_notified,
            remove_with_ndr: remove,
            shadow_queue,
        });
    }
    Ok(rows
        .into_iter()
        .map(
            |(
                id,
                internal_id,
                from,
                size,
                received_at,
                env_id,
                ret,
                body_type,
                smtp_utf8,
                subject,
                mid,
                ip,
                suspended,
                crash_count,
                authenticated,
            )| {
                Submitted {
                    id,
                    internal_id,
                    from,
                    size: size as u64,
                    received_at,
                    env_id,
                    ret,
                    body_8bit: body_type.as_deref() == Some("8BITMIME"),
                    smtp_utf8,
                    subject,
                    internet_message_id: mid,
                    source_ip: ip.parse().ok(),
                    authenticated,
                    suspended,
                    crash_count,
                    body_lost: false,
                    recipients: by_message.remove(&id).unwrap_or_default(),
                }
            },
        )
        .collect())
}
