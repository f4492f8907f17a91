//! Recipient Filtering Properties › Valid Recipients (hubgate's; Exchange had AD LDS and
//! EdgeSync instead): each relay domain with its imported valid recipients (a count and the first
//! addresses, bounded), and an Import form taking an uploaded CSV file, imported by
//! Import-ValidRecipient's own operation (`ops::recipient_filter::import_file`: the same size
//! limit, encoding check and CSV rules; a bad line refuses the whole file).
//!
//! The upload is multipart/form-data, the only route of the console whose body may be larger
//! than a form's: `upload_routes` is served beside the pages with a limit of its own.

use askama::Template;
use axum::extract::multipart::{Multipart, MultipartError};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use axum::{Router, body::Bytes};
use tokio::sync::Semaphore;

use super::antispam::{back_to, dialog_frame, refused_status, settled};
use super::antispam_filters::{dialog, dialog_tabs};
use super::view::Link;
use super::{PageResult, see_other};
use crate::console::session::Admin;
use crate::console::state::ConsoleState;
use crate::ops::recipient_filter::{self, DomainRecipients, MAX_IMPORT_BYTES, MAX_IMPORT_ROWS};
use crate::ops::{OpError, accepted_domain};
use crate::org::DomainType;

pub const VALID_RECIPIENTS: &str =
    "/org/hub/anti-spam/recipient-filtering/properties/valid-recipients";
pub const IMPORT: &str =
    "/org/hub/anti-spam/recipient-filtering/properties/valid-recipients/import";

/// The page shows at most this many domains' lists, and this many addresses of each.
const SHOWN_DOMAINS: i64 = 50;
const SHOWN_PER_DOMAIN: i64 = 20;

/// A multipart body around the file: the boundaries, the token's part, the part headers.
const MULTIPART_OVERHEAD: usize = 64 * 1024;

/// One import at a time: each holds its whole file in memory while it runs.
static IMPORTS: Semaphore = Semaphore::const_new(1);

pub fn routes() -> Router<ConsoleState> {
    Router::new().route(VALID_RECIPIENTS, get(page))
}

/// The upload, with the body limit Import-ValidRecipient's file size calls for (the console's
/// other routes keep the form limit).
pub fn upload_routes() -> Router<ConsoleState> {
    let limit = usize::try_from(MAX_IMPORT_BYTES)
        .unwrap_or(usize::MAX)
        .saturating_add(MULTIPART_OVERHEAD);
    Router::new().route(IMPORT, post(import).layer(DefaultBodyLimit::max(limit)))
}

/// One domain's list as shown: its count, its first addresses with when they were added, and
/// how many more there are.
pub struct ListView {
    pub domain: String,
    pub count: String,
    pub rows: Vec<(String, String)>,
    pub more: u64,
}

fn list_view(l: &DomainRecipients) -> ListView {
    let count = u64::try_from(l.count).unwrap_or(0);
    ListView {
        domain: l.domain.clone(),
        count: super::chart::grouped(count),
        rows: l
            .first
            .iter()
            .map(|r| (r.address.clone(), crate::shell::format::datetime(r.added)))
            .collect(),
        more: count.saturating_sub(l.first.len() as u64),
    }
}

/// A relay domain (or a domain with a list that no relay domain names).
pub struct DomainRow {
    pub domain: String,
    pub kind: String,
    pub validated: &'static str,
    pub imported: String,
}

#[derive(Template)]
#[template(path = "console/antispam_valid_recipients.html")]
pub struct ValidRecipientsPage {
    pub frame: super::Frame,
    pub heading: &'static str,
    pub dialog_tabs: Vec<Link>,
    pub validation: &'static str,
    pub lookup: &'static str,
    pub domains: Vec<DomainRow>,
    pub lists: Vec<ListView>,
    pub more_domains: i64,
    pub import: &'static str,
    pub max_bytes: String,
    pub max_rows: String,
    pub notice: Option<String>,
    pub error: Option<String>,
    pub back: String,
}

#[derive(serde::Deserialize)]
pub struct Shown {
    /// How many addresses the import just made added (the redirect's query).
    pub imported: Option<u64>,
}

async fn render(
    st: &ConsoleState,
    admin: &Admin,
    notice: Option<String>,
    error: Option<String>,
) -> PageResult {
    let mut tx = st.pool.begin().await?;
    let config = recipient_filter::get_config(&mut tx).await?;
    let relay: Vec<_> = accepted_domain::get(&mut tx, None, true)
        .await?
        .into_iter()
        .filter(|d| d.kind() != DomainType::Authoritative)
        .collect();
    let (total, lists) =
        recipient_filter::by_domain(&mut tx, SHOWN_DOMAINS, SHOWN_PER_DOMAIN).await?;
    let count_of = |domain: &str| {
        lists
            .iter()
            .find(|l| l.domain.eq_ignore_ascii_case(domain))
            .map(|l| super::chart::grouped(u64::try_from(l.count).unwrap_or(0)))
    };
    let mut domains: Vec<DomainRow> = relay
        .iter()
        .map(|d| DomainRow {
            imported: count_of(&d.domain_name).unwrap_or_else(|| "0".into()),
            kind: d.domain_type.clone(),
            validated: if d.address_book_enabled { "On" } else { "Off" },
            domain: d.domain_name.clone(),
        })
        .collect();
    // A list no relay domain names is not used; shown so that the admin sees why.
    for l in &lists {
        if !relay
            .iter()
            .any(|d| d.domain_name.eq_ignore_ascii_case(&l.domain))
        {
            domains.push(DomainRow {
                domain: l.domain.clone(),
                kind: "(not a relay domain)".into(),
                validated: "-",
                imported: super::chart::grouped(u64::try_from(l.count).unwrap_or(0)),
            });
        }
    }
    let d = dialog("recipient-filtering");
    let back = back_to(d.feature);
    let html = ValidRecipientsPage {
        frame: dialog_frame(admin, VALID_RECIPIENTS, &back),
        heading: d.heading,
        dialog_tabs: dialog_tabs(d, "Valid Recipients"),
        validation: if config.recipient_validation_enabled {
            "Enabled"
        } else {
            "Disabled"
        },
        lookup: super::antispam_filters::RECIPIENT_LOOKUP,
        domains,
        more_domains: total.saturating_sub(i64::try_from(lists.len()).unwrap_or(i64::MAX)),
        lists: lists.iter().map(list_view).collect(),
        import: IMPORT,
        max_bytes: super::chart::grouped(MAX_IMPORT_BYTES),
        max_rows: super::chart::grouped(MAX_IMPORT_ROWS as u64),
        notice,
        error: error.clone(),
        back,
    }
    .render()?;
    Ok((refused_status(error.is_some()), Html(html)).into_response())
}

async fn page(
    State(st): State<ConsoleState>,
    admin: Admin,
    Query(shown): Query<Shown>,
) -> PageResult {
    let notice = shown
        .imported
        .map(|n| format!("{n} valid recipients added."));
    render(&st, &admin, notice, None).await
}

/// Why the upload could not be read, as the file field's refusal.
fn unreadable(e: MultipartError) -> OpError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        OpError::invalid(
            "Path",
            format!("The file is larger than {MAX_IMPORT_BYTES} bytes, the most imported at once."),
        )
    } else {
        OpError::invalid(
            "Path",
            format!("The upload could not be read: {}", e.body_text()),
        )
    }
}

/// The uploaded file (`Path`, as Import-ValidRecipient's parameter): its name and bytes, read
/// no further than MAX_IMPORT_BYTES. The token's part was checked by the guard.
async fn upload(mut form: Multipart) -> Result<(String, Vec<u8>), OpError> {
    while let Some(mut field) = form.next_field().await.map_err(unreadable)? {
        if field.name() != Some("Path") {
            continue;
        }
        let name = field
            .file_name()
            .filter(|n| !n.is_empty())
            .unwrap_or("the uploaded file")
            .to_string();
        let mut bytes = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(unreadable)? {
            let chunk: Bytes = chunk;
            let size = bytes.len().saturating_add(chunk.len());
            recipient_filter::check_import_size(&name, u64::try_from(size).unwrap_or(u64::MAX))?;
            bytes.extend_from_slice(&chunk);
        }
        if bytes.is_empty() && name == "the uploaded file" {
            break;
        }
        return Ok((name, bytes));
    }
    Err(OpError::invalid("Path", "Choose a CSV file to import."))
}

/// Import: every address of the file, or none; the page again with the count, or with the
/// refusal (the bad line's number) beside the file input.
async fn import(State(st): State<ConsoleState>, admin: Admin, form: Multipart) -> PageResult {
    let Ok(_one_at_a_time) = IMPORTS.try_acquire() else {
        let busy = "Another import of valid recipients is running; try again when it has finished.";
        return render(&st, &admin, None, Some(busy.into())).await;
    };
    let outcome = async {
        let (name, bytes) = upload(form).await?;
        let mut tx = st.pool.begin().await?;
        let added = recipient_filter::import_file(&mut tx, &name, &bytes).await?;
        tx.commit().await?;
        Ok(added)
    }
    .await;
    match settled(outcome)? {
        Ok(added) => see_other(&format!("{VALID_RECIPIENTS}?imported={added}")),
        Err(e) => {
            tracing::info!("console: valid recipient import refused: {e}");
            render(&st, &admin, None, Some(e.to_string())).await
        }
    }
}
