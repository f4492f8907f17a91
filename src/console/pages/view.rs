//! The frame every page shares (tree, result pane tabs, action pane) and the page templates.

use askama::Template;

use super::PageResult;
use crate::console::session::Admin;

/// A node of the console tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    OrgHub,
    ServerHub,
    Mailbox,
    MailContact,
    Toolbox,
}

pub struct TreeItem {
    pub label: &'static str,
    pub href: &'static str,
    pub depth: u8,
    pub current: bool,
}

fn tree(at: Node) -> Vec<TreeItem> {
    let item = |label, href, depth, node: Option<Node>| TreeItem {
        label,
        href,
        depth,
        current: node == Some(at),
    };
    vec![
        item("Microsoft Exchange", "/", 0, None),
        item(
            "Organization Configuration",
            super::org_hub::DOMAINS,
            1,
            None,
        ),
        item(
            "Hub Transport",
            super::org_hub::DOMAINS,
            2,
            Some(Node::OrgHub),
        ),
        item("Server Configuration", "/server/hub", 1, None),
        item("Hub Transport", "/server/hub", 2, Some(Node::ServerHub)),
        item(
            "Recipient Configuration",
            super::recipients::MAILBOXES,
            1,
            None,
        ),
        item(
            "Mailbox",
            super::recipients::MAILBOXES,
            2,
            Some(Node::Mailbox),
        ),
        item(
            "Mail Contact",
            super::recipients::CONTACTS,
            2,
            Some(Node::MailContact),
        ),
        item("Toolbox", "/toolbox", 1, Some(Node::Toolbox)),
    ]
}

/// One action: a link (GET) or a one-button form (POST).
pub struct Action {
    pub label: String,
    pub href: String,
    pub post: bool,
}

impl Action {
    pub fn get(label: impl Into<String>, href: impl Into<String>) -> Action {
        Action {
            label: label.into(),
            href: href.into(),
            post: false,
        }
    }
    pub fn post(label: impl Into<String>, href: impl Into<String>) -> Action {
        Action {
            label: label.into(),
            href: href.into(),
            post: true,
        }
    }
}

/// The action pane's groups: the node's title, then the selected object's name.
pub struct ActionGroup {
    pub title: String,
    pub items: Vec<Action>,
}

/// A result-pane tab.
pub struct Link {
    pub label: String,
    pub href: String,
    pub current: bool,
}

impl Link {
    pub fn new(label: impl Into<String>, href: impl Into<String>, current: bool) -> Link {
        Link {
            label: label.into(),
            href: href.into(),
            current,
        }
    }
}

/// What the frame around every page shows.
pub struct Frame {
    pub title: String,
    pub account: String,
    pub csrf: String,
    pub tree: Vec<TreeItem>,
    pub tabs: Vec<Link>,
    pub actions: Vec<ActionGroup>,
}

impl Frame {
    pub fn new(admin: &Admin, at: Node, title: impl Into<String>) -> Frame {
        Frame {
            title: title.into(),
            account: admin.account.clone(),
            csrf: admin.csrf.clone(),
            tree: tree(at),
            tabs: vec![],
            actions: vec![],
        }
    }
    pub fn tabs(mut self, tabs: Vec<Link>) -> Frame {
        self.tabs = tabs;
        self
    }
    pub fn actions(mut self, title: impl Into<String>, items: Vec<Action>) -> Frame {
        self.actions.push(ActionGroup {
            title: title.into(),
            items,
        });
        self
    }
}

/// A list row; `href` selects its object.
pub struct Row {
    pub href: String,
    pub selected: bool,
    pub cells: Vec<String>,
}

pub struct Table {
    /// The table's element id (`receive-connectors`), for links and tests to find it by.
    pub id: &'static str,
    pub caption: String,
    pub columns: Vec<&'static str>,
    pub rows: Vec<Row>,
}

#[derive(Template)]
#[template(path = "console/list.html")]
pub struct ListPage {
    pub frame: Frame,
    pub tables: Vec<Table>,
}

/// One input of a property tab or a New form.
pub struct FieldView {
    /// The form name: the property's Exchange name.
    pub name: String,
    pub label: String,
    /// text, checkbox, select, textarea, flags or readonly.
    pub input: &'static str,
    pub value: String,
    pub checked: bool,
    pub options: Vec<Opt>,
    pub error: Option<String>,
    pub hint: String,
    pub required: bool,
    /// A heading shown before this field (the Limits tab's groups).
    pub group: Option<&'static str>,
}

pub struct Opt {
    pub value: String,
    pub selected: bool,
}

/// A Properties dialog on one tab, or a New form (`new`).
#[derive(Template)]
#[template(path = "console/properties.html")]
pub struct PropsPage {
    pub frame: Frame,
    pub heading: String,
    pub dialog_tabs: Vec<Link>,
    pub post: String,
    pub cancel: String,
    pub fields: Vec<FieldView>,
    pub error: Option<String>,
    pub new: bool,
}

#[derive(Template)]
#[template(path = "console/confirm.html")]
pub struct ConfirmPage {
    pub frame: Frame,
    pub question: String,
    pub post: String,
    pub cancel: String,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "console/toolbox.html")]
pub struct ToolboxPage {
    pub frame: Frame,
}

pub async fn toolbox(admin: Admin) -> PageResult {
    super::page(&ToolboxPage {
        frame: Frame::new(&admin, Node::Toolbox, "Toolbox"),
    })
}
