//! The interactive prompt: line editing, history and Tab completion of cmdlet and parameter names.

use std::io::{BufRead, Write};

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};

use super::bind::COMMON;
use super::cmdlets::{all, lookup};

/// Completes the word under the cursor: a cmdlet name at the start of a pipeline stage,
/// otherwise a parameter of that stage's cmdlet.
pub struct ShellHelper;

/// The candidates for `line[..pos]`: (start of the word, completions).
pub fn complete(line: &str, pos: usize) -> (usize, Vec<String>) {
    let head = &line[..pos];
    let start = head
        .rfind(|c: char| c.is_whitespace() || c == '|' || c == ';')
        .map(|i| i + 1)
        .unwrap_or(0);
    let word = &head[start..];
    let stage = head.rsplit(['|', ';']).next().unwrap_or("");
    let before: Vec<&str> = stage[..stage.len() - word.len()]
        .split_whitespace()
        .collect();
    if before.is_empty() {
        let lower = word.to_ascii_lowercase();
        let names = all()
            .map(|(n, _)| n.to_string())
            .filter(|n| n.to_ascii_lowercase().starts_with(&lower))
            .collect();
        return (start, names);
    }
    let Some(prefix) = word.strip_prefix('-') else {
        return (start, vec![]);
    };
    let Some((_, params)) = lookup(before[0]) else {
        return (start, vec![]);
    };
    let lower = prefix.to_ascii_lowercase();
    let names = params
        .iter()
        .chain(COMMON)
        .filter(|p| p.ty != super::bind::Ty::Unsupported)
        .map(|p| format!("-{}", p.name))
        .filter(|n| n[1..].to_ascii_lowercase().starts_with(&lower))
        .collect();
    (start, names)
}

impl Completer for ShellHelper {
    type Candidate = Pair;
    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (start, names) = complete(line, pos);
        Ok((
            start,
            names
                .into_iter()
                .map(|n| Pair {
                    display: n.clone(),
                    replacement: n,
                })
                .collect(),
        ))
    }
}
impl Hinter for ShellHelper {
    type Hint = String;
}
impl Highlighter for ShellHelper {}
impl Validator for ShellHelper {}
impl Helper for ShellHelper {}

pub type Editor = rustyline::Editor<ShellHelper, rustyline::history::DefaultHistory>;

pub fn editor() -> rustyline::Result<Editor> {
    let mut ed = Editor::new()?;
    ed.set_helper(Some(ShellHelper));
    Ok(ed)
}

/// Prompts on the terminal for one line.
pub fn prompt(text: &str) -> std::io::Result<String> {
    eprint!("{text}");
    std::io::stderr().flush()?;
    let mut l = String::new();
    std::io::stdin().lock().read_line(&mut l)?;
    Ok(l.trim_end_matches(['\r', '\n']).to_string())
}

/// Prompts with echo off, as Get-Credential's dialog hides the password.
pub fn prompt_password(text: &str) -> std::io::Result<String> {
    // SAFETY: termios calls on fd 0 with a zeroed struct that tcgetattr fills in.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    let have_tty = unsafe { libc::tcgetattr(0, &mut saved) } == 0;
    if have_tty {
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &quiet) };
    }
    let r = prompt(text);
    if have_tty {
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &saved) };
        eprintln!();
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_cmdlets_and_parameters() {
        // "get-rec" also names Get-RecipientFilterConfig now.
        let (s, c) = complete("get-rece", 8);
        assert_eq!((s, c), (0, vec!["Get-ReceiveConnector".to_string()]));
        let line = "Get-SendConnector x | Set-SendConnector -SmartH";
        let (s, c) = complete(line, line.len());
        assert_eq!(s, line.len() - 7);
        assert_eq!(c, vec!["-SmartHosts", "-SmartHostAuthMechanism"]);
        let line = "New-ReceiveConnector -Name x -Permis";
        assert_eq!(complete(line, line.len()).1, vec!["-PermissionGroups"]);
        assert!(complete("New-Mailbox -Passw", 18).1.is_empty());
        assert_eq!(complete("retry-q", 7).1, vec!["Retry-Queue"]);
        let line = "Get-Message 7 | Remove-Message -With";
        assert_eq!(complete(line, line.len()).1, vec!["-WithNDR"]);
        assert_eq!(
            complete("Get-MessageT", 12).1,
            vec!["Get-MessageTrackingLog"]
        );
    }
}
