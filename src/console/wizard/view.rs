//! What a wizard page shows: its inputs, the list dialog, the Completion page.

use askama::Template;

use super::{Draft, Errors};
use crate::console::pages::Frame;

/// A choice of a select or a radio group.
pub struct WOpt {
    pub value: String,
    pub label: String,
    pub selected: bool,
    /// Drawn but not choosable (the EMC greys out what the intended use rules out).
    pub disabled: bool,
    /// What choosing it does, shown under a select while it is the chosen one.
    pub note: String,
}

/// One input of a wizard page or dialog.
pub struct WField {
    /// The form name (an Exchange parameter where there is one).
    pub name: String,
    pub label: String,
    /// text, password, checkbox, checks (a group of checkboxes sharing the name), select,
    /// radio, list, readonly or note.
    pub input: &'static str,
    pub value: String,
    pub checked: bool,
    pub options: Vec<WOpt>,
    /// A list's columns and rows (the value each row carries, and its cells).
    pub columns: Vec<&'static str>,
    pub rows: Vec<(String, Vec<String>)>,
    pub error: Option<String>,
    pub hint: String,
    /// Drawn under the input before it, as the EMC nests an option under its choice.
    pub indent: bool,
}

impl WField {
    fn new(name: &str, label: &str, input: &'static str) -> WField {
        WField {
            name: name.into(),
            label: label.into(),
            input,
            value: String::new(),
            checked: false,
            options: vec![],
            columns: vec![],
            rows: vec![],
            error: None,
            hint: String::new(),
            indent: false,
        }
    }
    pub fn text(name: &str, label: &str, value: impl Into<String>) -> WField {
        WField {
            value: value.into(),
            ..WField::new(name, label, "text")
        }
    }
    /// A text input showing the draft's value.
    pub fn draft_text(d: &Draft, name: &str, label: &str) -> WField {
        WField::text(name, label, d.one(name).unwrap_or(""))
    }
    pub fn password(name: &str, label: &str, value: impl Into<String>) -> WField {
        WField {
            value: value.into(),
            ..WField::new(name, label, "password")
        }
    }
    pub fn checkbox(name: &str, label: &str, checked: bool) -> WField {
        WField {
            checked,
            ..WField::new(name, label, "checkbox")
        }
    }
    /// A drop-down of `(value, label)` choices with `chosen` selected.
    pub fn select(name: &str, label: &str, choices: &[(&str, &str)], chosen: &str) -> WField {
        WField {
            options: opts(choices, chosen),
            ..WField::new(name, label, "select")
        }
    }
    /// Option buttons of `(value, label)` choices with `chosen` selected.
    pub fn radio(name: &str, label: &str, choices: &[(&str, &str)], chosen: &str) -> WField {
        WField {
            options: opts(choices, chosen),
            ..WField::new(name, label, "radio")
        }
    }
    /// A group of checkboxes of `(value, label)` choices sharing `name`, those in `chosen`
    /// ticked; the draft holds one value per ticked box.
    pub fn checks(
        name: &str,
        label: &str,
        choices: &[(String, String)],
        chosen: &[String],
    ) -> WField {
        WField {
            options: choices
                .iter()
                .map(|(v, l)| WOpt {
                    value: v.clone(),
                    label: l.clone(),
                    selected: chosen.iter().any(|c| c.eq_ignore_ascii_case(v)),
                    disabled: false,
                    note: String::new(),
                })
                .collect(),
            ..WField::new(name, label, "checks")
        }
    }
    /// A list with Add..., Edit... and Remove; `rows` pairs each carried value with its cells.
    pub fn list(
        name: &str,
        label: &str,
        columns: &[&'static str],
        rows: Vec<(String, Vec<String>)>,
    ) -> WField {
        WField {
            columns: columns.to_vec(),
            rows,
            ..WField::new(name, label, "list")
        }
    }
    pub fn readonly(name: &str, label: &str, value: impl Into<String>) -> WField {
        WField {
            value: value.into(),
            ..WField::new(name, label, "readonly")
        }
    }
    /// A line of text between inputs.
    pub fn note(name: &str, text: &str) -> WField {
        WField::new(name, text, "note")
    }
    pub fn hint(mut self, h: &str) -> WField {
        self.hint = h.into();
        self
    }
    /// Says under a select what each `(value, note)` choice does; the line follows the choice.
    pub fn notes(mut self, notes: &[(&str, &str)]) -> WField {
        for o in &mut self.options {
            if let Some((_, n)) = notes.iter().find(|(v, _)| *v == o.value) {
                o.note = n.to_string();
            }
        }
        self
    }
    /// The chosen choice's note.
    pub fn chosen_note(&self) -> &str {
        self.options
            .iter()
            .find(|o| o.selected)
            .map_or("", |o| o.note.as_str())
    }
    pub fn has_notes(&self) -> bool {
        self.options.iter().any(|o| !o.note.is_empty())
    }
    /// Greys out the choice `value` of a select or radio group.
    pub fn disable(mut self, value: &str) -> WField {
        for o in &mut self.options {
            if o.value == value {
                o.disabled = true;
            }
        }
        self
    }
    pub fn indented(mut self) -> WField {
        self.indent = true;
        self
    }
    /// Shows what was posted after a refusal.
    pub fn keep(&mut self, posted: &str) {
        match self.input {
            "checkbox" => self.checked = true,
            "select" | "radio" => {
                for o in &mut self.options {
                    o.selected = o.value == posted;
                }
            }
            _ => self.value = posted.to_string(),
        }
    }
}

fn opts(choices: &[(&str, &str)], chosen: &str) -> Vec<WOpt> {
    choices
        .iter()
        .map(|(v, l)| WOpt {
            value: v.to_string(),
            label: l.to_string(),
            selected: v.eq_ignore_ascii_case(chosen),
            disabled: false,
            note: String::new(),
        })
        .collect()
}

/// A list's Add/Edit dialog as drawn.
pub struct DialogView {
    pub title: &'static str,
    pub list: String,
    /// The row being edited; none when adding.
    pub index: Option<usize>,
    pub fields: Vec<WField>,
    pub error: Option<String>,
}

impl DialogView {
    pub fn new(
        title: &'static str,
        list: &str,
        index: Option<usize>,
        mut fields: Vec<WField>,
        errors: &Errors,
    ) -> DialogView {
        for f in &mut fields {
            f.error = errors.0.get(&f.name).cloned();
        }
        DialogView {
            title,
            list: list.into(),
            index,
            fields,
            error: errors.general(),
        }
    }
}

/// What the Completion page reports.
pub struct Completion {
    pub ok: bool,
    /// Why it failed.
    pub message: String,
    /// The shell line that does the same.
    pub cmdlet: String,
    pub finish: String,
    pub summary: Vec<String>,
}

pub struct StepLink {
    pub label: &'static str,
    pub current: bool,
    pub done: bool,
}

#[derive(Template)]
#[template(path = "console/wizard.html")]
pub struct WizardPage {
    pub frame: Frame,
    /// Differs on every page drawn, so a browser (or a test) can tell a new page from the old.
    pub render_id: String,
    pub title: &'static str,
    pub steps: Vec<StepLink>,
    pub step: &'static str,
    pub intro: &'static str,
    pub post: String,
    pub cancel: String,
    pub fields: Vec<WField>,
    /// The draft's values from other pages, posted again as hidden inputs.
    pub carried: Vec<(String, String)>,
    pub error: Option<String>,
    pub summary: Vec<String>,
    pub back: bool,
    pub next: bool,
    pub new: bool,
    pub dialog: Option<DialogView>,
    pub done: Option<Completion>,
}
