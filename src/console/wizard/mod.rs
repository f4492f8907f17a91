//! The EMC's wizards: a left-hand list of pages, `< Back`, `Next >`, `Cancel`, a `New` on the
//! last page before Completion, and a Completion page showing the shell line that does the same.
//!
//! A wizard keeps no state on the server: every value typed so far (the draft) travels in the
//! form, the current page's as inputs and the other pages' as hidden inputs, so Back keeps what
//! was typed and Cancel (a plain link) leaves nothing behind. Each page is checked by running
//! the real operation on a transaction that is rolled back, and only the errors about that
//! page's own inputs (or earlier ones) stop it; `New` runs the operation for real.
//!
//! Lists (address spaces, smart hosts, bindings, remote ranges) are edited as the EMC did, in a
//! small dialog (`Add...`, `Edit...`, `Remove`) drawn in the same form.

pub mod domain;
pub mod receive;
pub mod send;
mod send_pages;
mod view;

use std::future::Future;

use axum::Form;
use axum::extract::{Query, State};
use sqlx::PgConnection;

pub use view::{Completion, DialogView, WField, WOpt, WizardPage};

use super::pages::{FormData, Node, PageError, PageResult, page, target};
use super::session::Admin;
use super::state::ConsoleState;
use crate::ops::OpError;
use crate::org::org_key::OrganizationKey;

/// The query a wizard opens with (`?server=HUB1`).
pub type Params = std::collections::HashMap<String, String>;

/// Form names the wizard itself uses; never part of a draft.
const CONTROL: &[&str] = &["csrf", "action", "step", "dlg-list", "dlg-index"];

/// The prefix of a secret's name while it rides along sealed on the pages after its own.
const SEALED: &str = "sealed-";
const SECRET_PURPOSE: &[u8] = b"hubgate console wizard secret";

fn is_control(name: &str) -> bool {
    CONTROL.contains(&name) || name.starts_with("sel-") || name.starts_with("dlg-")
}

/// Everything typed so far: name/value pairs in order (a list repeats its name).
#[derive(Clone, Debug, Default)]
pub struct Draft(pub Vec<(String, String)>);

impl Draft {
    /// The draft a form posts; a secret carried sealed (`sealed-Password`) is opened again,
    /// and one that does not open (another node's key, a forged value) is dropped, so the page
    /// that asks for it refuses Next until it is typed again.
    fn from_form(form: &FormData, key: Option<&OrganizationKey>) -> Draft {
        Draft(
            form.0
                .iter()
                .filter(|(n, _)| !is_control(n))
                .filter_map(|(n, v)| match n.strip_prefix(SEALED) {
                    Some(secret) => {
                        let plain = key?.open(SECRET_PURPOSE, v, secret).ok()?;
                        Some((secret.to_string(), plain))
                    }
                    None => Some((n.clone(), v.clone())),
                })
                .collect(),
        )
    }
    pub fn one(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    /// A text input's value, trimmed; empty when absent.
    pub fn text(&self, name: &str) -> String {
        self.one(name).unwrap_or("").trim().to_string()
    }
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
    /// A checkbox: present means ticked.
    pub fn flag(&self, name: &str) -> bool {
        self.one(name).is_some()
    }
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.set_all(name, vec![value.into()]);
    }
    pub fn set_flag(&mut self, name: &str, on: bool) {
        self.set_all(name, if on { vec!["true".into()] } else { vec![] });
    }
    pub fn set_all(&mut self, name: &str, values: Vec<String>) {
        self.0.retain(|(n, _)| n != name);
        self.0
            .extend(values.into_iter().map(|v| (name.to_string(), v)));
    }
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Draft {
        self.set(name, value);
        self
    }
}

/// What pages offer from the database, by input name (the Source Server page's servers).
pub type Offers = std::collections::HashMap<&'static str, Vec<(String, String)>>;

/// Messages by input name; `""` holds one shown above the page's inputs.
pub type Errors = super::pages::fields::Errors;

/// The small dialog a list's `Add...` and `Edit...` open.
pub struct Dialog {
    /// "SMTP Address Space".
    pub title: &'static str,
    /// Its inputs (named as the dialog's own, without the `dlg-` prefix the form gives them),
    /// showing `item` when editing one.
    pub fields: fn(item: Option<&str>) -> Vec<WField>,
    /// The item the dialog's inputs make, or why they do not make one.
    pub item: fn(&Draft) -> Result<String, Errors>,
}

/// What `New` made: the shell line that makes the same, and where Finish goes.
pub struct Created {
    pub cmdlet: String,
    pub finish: String,
    /// What the Completion page lists under the object's name.
    pub summary: Vec<String>,
}

/// One wizard: its pages, their inputs, their checks and the operation `New` runs.
pub trait Wizard: Send + Sync + 'static {
    /// "New SMTP Send Connector".
    const TITLE: &'static str;
    const NODE: Node;
    /// Inputs whose values are never written into another page (a password).
    const SECRETS: &'static [&'static str] = &[];
    /// Where Cancel (and Finish after a failure) goes.
    fn cancel(p: &Params) -> String;
    /// The draft a new wizard starts with.
    fn start(st: &ConsoleState, p: &Params) -> Draft;
    /// The pages for this draft, in order, ending with "Completion"; the intended use may
    /// change which pages there are.
    fn steps(d: &Draft) -> Vec<&'static str>;
    /// The text at the top of a page.
    fn intro(_step: &str) -> &'static str {
        ""
    }
    /// A page's inputs, showing the draft.
    fn fields(st: &ConsoleState, d: &Draft, step: &str) -> Vec<WField>;
    /// The choices pages offer from the database, `(value, label)` by input name; loaded once
    /// per page drawn.
    fn offers(_st: &ConsoleState) -> impl Future<Output = Result<Offers, PageError>> + Send {
        async { Ok(Offers::new()) }
    }
    /// `fields` given the offers.
    fn offered_fields(st: &ConsoleState, d: &Draft, step: &str, _offers: &Offers) -> Vec<WField> {
        Self::fields(st, d, step)
    }
    /// The dialog of the list input `list`.
    fn dialog(_list: &str) -> Option<Dialog> {
        None
    }
    /// Why a page cannot be left by Next (empty: it can). Run on a transaction that is rolled
    /// back.
    fn check(
        st: &ConsoleState,
        tx: &mut PgConnection,
        d: &Draft,
        step: &str,
    ) -> impl Future<Output = Result<Errors, PageError>> + Send;
    /// The New Connector page's summary lines.
    fn summary(_d: &Draft) -> Vec<String> {
        vec![]
    }
    /// Runs the operation.
    fn create(
        st: &ConsoleState,
        tx: &mut PgConnection,
        d: &Draft,
    ) -> impl Future<Output = Result<Created, OpError>> + Send;
}

pub const COMPLETION: &str = "Completion";

/// An operation's error as a page shows it: beside the page's input it names, as the page's
/// message when it names an input of an earlier page or none, and not at all when it names
/// only inputs of later pages (those pages check it).
pub fn page_errors(e: &OpError, this_page: &[&str], later: &[&str]) -> Errors {
    let named = |p: &str| this_page.iter().find(|n| n.eq_ignore_ascii_case(p));
    let is_later = |p: &str| later.iter().any(|n| n.eq_ignore_ascii_case(p));
    if let OpError::MissingMandatory(missing) = e {
        let mut errors = Errors::default();
        for m in missing.iter() {
            if let Some(n) = named(m) {
                errors.0.insert(n.to_string(), e.to_string());
            } else if !is_later(m) {
                errors.0.insert(String::new(), e.to_string());
            }
        }
        return errors;
    }
    match e.param() {
        Some(p) if is_later(p) => Errors::default(),
        Some(p) => Errors::one(named(p).copied().unwrap_or(""), e.to_string()),
        None => Errors::one("", e.to_string()),
    }
}

fn step_index<W: Wizard>(d: &Draft, step: &str) -> usize {
    W::steps(d).iter().position(|s| *s == step).unwrap_or(0)
}

struct Render<'a> {
    admin: &'a Admin,
    post: &'a str,
    p: &'a Params,
    offers: &'a Offers,
}

fn render<W: Wizard>(
    r: &Render,
    st: &ConsoleState,
    d: &Draft,
    step: &str,
    errors: &Errors,
    dialog: Option<DialogView>,
    done: Option<Completion>,
) -> PageResult {
    let steps = W::steps(d);
    let at = steps.iter().position(|s| *s == step).unwrap_or(0);
    let mut fields = if done.is_some() {
        vec![]
    } else {
        W::offered_fields(st, d, step, r.offers)
    };
    for f in &mut fields {
        f.error = errors.0.get(&f.name).cloned();
    }
    // Inputs drawn on the page are posted by the page; the rest of the draft rides along.
    let shown: Vec<String> = if dialog.is_some() || done.is_some() {
        vec![]
    } else {
        fields.iter().map(|f| f.name.clone()).collect()
    };
    // A secret (a smart host's password) is in the page only where it is typed; elsewhere it
    // rides along sealed with the organisation key, so no other page's HTML holds it.
    let carried =
        d.0.iter()
            .filter(|(n, _)| !shown.contains(n))
            .filter_map(|(n, v)| {
                if !W::SECRETS.contains(&n.as_str()) {
                    return Some((n.clone(), v.clone()));
                }
                let sealed = st.org_key.as_ref()?.seal(SECRET_PURPOSE, v).ok()?;
                Some((format!("{SEALED}{n}"), sealed))
            })
            .collect();
    let last = steps.len().saturating_sub(1);
    page(&WizardPage {
        frame: super::pages::Frame::new(r.admin, W::NODE, W::TITLE),
        render_id: uuid::Uuid::new_v4().simple().to_string(),
        title: W::TITLE,
        steps: steps
            .iter()
            .enumerate()
            .map(|(i, s)| view::StepLink {
                label: s,
                current: i == at,
                done: i < at,
            })
            .collect(),
        step: steps.get(at).copied().unwrap_or(COMPLETION),
        intro: W::intro(step),
        post: r.post.to_string(),
        cancel: W::cancel(r.p),
        fields,
        carried,
        error: errors.general(),
        summary: if at + 1 == last {
            W::summary(d)
        } else {
            vec![]
        },
        back: at > 0 && done.as_ref().is_none_or(|c| !c.ok),
        next: at + 1 < last,
        new: at + 1 == last,
        dialog,
        done,
    })
}

/// The wizard's first page.
pub async fn open<W: Wizard>(
    State(st): State<ConsoleState>,
    admin: Admin,
    Query(p): Query<Params>,
    uri: axum::http::Uri,
) -> PageResult {
    let d = W::start(&st, &p);
    let first = W::steps(&d)[0];
    let post = target(&uri);
    let offers = W::offers(&st).await?;
    let r = Render {
        admin: &admin,
        post: &post,
        p: &p,
        offers: &offers,
    };
    render::<W>(&r, &st, &d, first, &Errors::default(), None, None)
}

async fn check<W: Wizard>(st: &ConsoleState, d: &Draft, step: &str) -> Result<Errors, PageError> {
    let mut tx = st.pool.begin().await?;
    let errors = W::check(st, &mut tx, d, step).await?;
    tx.rollback().await?;
    Ok(errors)
}

/// Back, Next, New, and the list dialogs' buttons.
pub async fn post<W: Wizard>(
    State(st): State<ConsoleState>,
    admin: Admin,
    Query(p): Query<Params>,
    uri: axum::http::Uri,
    Form(form): Form<FormData>,
) -> PageResult {
    let mut d = Draft::from_form(&form, st.org_key.as_deref());
    let post = target(&uri);
    let offers = W::offers(&st).await?;
    let r = Render {
        admin: &admin,
        post: &post,
        p: &p,
        offers: &offers,
    };
    let steps = W::steps(&d);
    let step = form
        .one("step")
        .and_then(|s| steps.iter().find(|x| **x == s))
        .copied()
        .unwrap_or(steps[0]);
    let at = step_index::<W>(&d, step);
    let none = Errors::default();
    let action = form.one("action").unwrap_or("");
    match action.split_once(':') {
        Some(("add", list)) => return open_dialog::<W>(&r, &st, &d, step, list, None, &none),
        Some(("edit", list)) => {
            let items = d.all(list);
            let chosen = form
                .one(&format!("sel-{list}"))
                .and_then(|i| i.parse::<usize>().ok())
                .filter(|i| *i < items.len());
            return match chosen {
                Some(i) => open_dialog::<W>(&r, &st, &d, step, list, Some(i), &none),
                None => render::<W>(&r, &st, &d, step, &select_first(list), None, None),
            };
        }
        Some(("remove", list)) => {
            let mut items = d.all(list);
            match form
                .one(&format!("sel-{list}"))
                .and_then(|i| i.parse::<usize>().ok())
                .filter(|i| *i < items.len())
            {
                Some(i) => {
                    items.remove(i);
                    d.set_all(list, items);
                    return render::<W>(&r, &st, &d, step, &none, None, None);
                }
                None => return render::<W>(&r, &st, &d, step, &select_first(list), None, None),
            }
        }
        Some(("ok", list)) => return dialog_ok::<W>(&r, &st, d, step, list, &form),
        Some(("cancel", _)) => return render::<W>(&r, &st, &d, step, &none, None, None),
        _ => {}
    }
    match action {
        "back" => {
            let to = steps.get(at.saturating_sub(1)).copied().unwrap_or(step);
            render::<W>(&r, &st, &d, to, &none, None, None)
        }
        "next" => {
            let errors = check::<W>(&st, &d, step).await?;
            if !errors.is_empty() {
                return render::<W>(&r, &st, &d, step, &errors, None, None);
            }
            // The pages may change with what this one chose (the intended use).
            let steps = W::steps(&d);
            let at = steps.iter().position(|s| *s == step).unwrap_or(0);
            let to = steps.get(at + 1).copied().unwrap_or(step);
            render::<W>(&r, &st, &d, to, &none, None, None)
        }
        "new" => create::<W>(&r, &st, &d, step).await,
        _ => render::<W>(&r, &st, &d, step, &none, None, None),
    }
}

fn select_first(list: &str) -> Errors {
    Errors::one(list, "Select an entry in the list first.")
}

fn open_dialog<W: Wizard>(
    r: &Render,
    st: &ConsoleState,
    d: &Draft,
    step: &str,
    list: &str,
    index: Option<usize>,
    errors: &Errors,
) -> PageResult {
    let Some(dialog) = W::dialog(list) else {
        return Err(PageError::NoPage);
    };
    let items = d.all(list);
    let item = index.and_then(|i| items.get(i)).map(String::as_str);
    let fields = (dialog.fields)(item);
    render::<W>(
        r,
        st,
        d,
        step,
        &Errors::default(),
        Some(DialogView::new(dialog.title, list, index, fields, errors)),
        None,
    )
}

fn dialog_ok<W: Wizard>(
    r: &Render,
    st: &ConsoleState,
    mut d: Draft,
    step: &str,
    list: &str,
    form: &FormData,
) -> PageResult {
    let Some(dialog) = W::dialog(list) else {
        return Err(PageError::NoPage);
    };
    // The dialog's own inputs, without their prefix.
    let inputs = Draft(
        form.0
            .iter()
            .filter_map(|(n, v)| Some((n.strip_prefix("dlg-")?.to_string(), v.clone())))
            .filter(|(n, _)| n != "list" && n != "index")
            .collect(),
    );
    let mut items = d.all(list);
    let index = form
        .one("dlg-index")
        .and_then(|i| i.parse::<usize>().ok())
        .filter(|i| *i < items.len());
    match (dialog.item)(&inputs) {
        Ok(item) => {
            match index {
                Some(i) => items[i] = item,
                None => items.push(item),
            }
            d.set_all(list, items);
            render::<W>(r, st, &d, step, &Errors::default(), None, None)
        }
        Err(errors) => {
            let mut fields = (dialog.fields)(None);
            for f in &mut fields {
                if let Some(v) = inputs.one(&f.name) {
                    f.keep(v);
                } else if f.input == "checkbox" {
                    f.checked = false;
                }
            }
            render::<W>(
                r,
                st,
                &d,
                step,
                &Errors::default(),
                Some(DialogView::new(dialog.title, list, index, fields, &errors)),
                None,
            )
        }
    }
}

async fn create<W: Wizard>(r: &Render<'_>, st: &ConsoleState, d: &Draft, step: &str) -> PageResult {
    // A page with inputs before New (the accepted domain's only page) is checked as Next would.
    let errors = check::<W>(st, d, step).await?;
    if !errors.is_empty() {
        return render::<W>(r, st, d, step, &errors, None, None);
    }
    let mut tx = st.pool.begin().await?;
    let done = match W::create(st, &mut tx, d).await {
        Ok(c) => {
            tx.commit().await?;
            Completion {
                ok: true,
                message: String::new(),
                cmdlet: c.cmdlet,
                finish: c.finish,
                summary: c.summary,
            }
        }
        Err(e) => {
            if matches!(e, OpError::Db(_)) {
                tracing::error!("console wizard {}: {e}", W::TITLE);
            }
            Completion {
                ok: false,
                message: e.to_string(),
                cmdlet: String::new(),
                finish: W::cancel(r.p),
                summary: vec![],
            }
        }
    };
    render::<W>(r, st, d, COMPLETION, &Errors::default(), None, Some(done))
}

/// The wizard's routes at `path` (`/accepted-domains/new`).
pub fn routes<W: Wizard>(path: &str) -> axum::Router<ConsoleState> {
    axum::Router::new().route(path, axum::routing::get(open::<W>).post(post::<W>))
}
