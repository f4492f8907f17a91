//! The PowerShell subset Exchange runbooks use: lexing and parsing, without I/O.
//!
//! The parser does not know parameter types; whether `-Name` takes the next word is decided when
//! the command is bound to its cmdlet (`bind.rs`), as PowerShell's parameter binder does.

use super::ShellError;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A bare word or a quoted string; the flag says whether it was quoted.
    Str(String, bool),
    Bool(bool),
    Null,
    Var(String),
    List(Vec<Value>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Element {
    /// `-Name`, `-Name:value` (the value is attached) or `-Name value` (resolved at binding).
    Param {
        name: String,
        attached: Option<Value>,
    },
    Value(Value),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    pub name: String,
    pub elements: Vec<Element>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    Pipeline(Vec<Command>),
    Value(Value),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    pub assign: Option<String>,
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Quoted(String),
    Var(String),
    Param(String, bool),
    Comma,
    Pipe,
    Semi,
    Assign,
}

/// Web pages turn `-` and quotes into typographic ones; PowerShell accepts those too.
fn is_dash(c: char) -> bool {
    matches!(c, '-' | '\u{2013}' | '\u{2014}' | '\u{2015}')
}
fn is_dquote(c: char) -> bool {
    matches!(c, '"' | '\u{201c}' | '\u{201d}' | '\u{201e}')
}
fn is_squote(c: char) -> bool {
    matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201a}' | '\u{201b}')
}
fn ends_word(c: char) -> bool {
    c.is_whitespace() || matches!(c, '|' | ';' | ',')
}

fn lex(line: &str) -> Result<Vec<Tok>, ShellError> {
    let chars: Vec<char> = line.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            _ if c.is_whitespace() => i += 1,
            '#' => break,
            '|' => {
                toks.push(Tok::Pipe);
                i += 1
            }
            ';' => {
                toks.push(Tok::Semi);
                i += 1
            }
            ',' => {
                toks.push(Tok::Comma);
                i += 1
            }
            '<' => {
                let rest: String = chars[i..].iter().collect();
                let placeholder = match rest.find('>') {
                    Some(end) => rest[..=end].to_string(),
                    None => rest.trim_end().to_string(),
                };
                return Err(ShellError::Parse(format!(
                    "The '<' operator is reserved for future use. {placeholder} is a placeholder from the \
                     documentation: replace it with a real value (for -RemoteIPRanges an IP address, a range \
                     a.b.c.d-w.x.y.z or CIDR a.b.c.d/n)."
                )));
            }
            '>' => {
                return Err(ShellError::Parse(
                    "Output redirection with '>' is not supported by the hubgate shell.".into(),
                ));
            }
            '{' => {
                // A script block (`-Filter {…}`, `Where-Object {…}`) is passed on as its text,
                // as `-Filter "…"` is: the filter grammar (`ops::filter`) reads it.
                let (body, next) = script_block(&chars, i)?;
                toks.push(Tok::Quoted(body));
                i = next;
            }
            '(' | ')' | '}' => {
                return Err(ShellError::Parse(format!(
                    "'{c}' expressions are not supported by the hubgate shell; \
                     assign the value to a $variable first."
                )));
            }
            '=' if chars.get(i + 1).is_none_or(|n| n.is_whitespace()) => {
                toks.push(Tok::Assign);
                i += 1
            }
            _ if is_squote(c) => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(ShellError::Parse(
                                "The string is missing the terminator: '.".into(),
                            ));
                        }
                        Some(&q) if is_squote(q) => {
                            if chars.get(i + 1).is_some_and(|n| is_squote(*n)) {
                                s.push('\'');
                                i += 2;
                            } else {
                                i += 1;
                                break;
                            }
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1
                        }
                    }
                }
                toks.push(Tok::Quoted(s));
            }
            _ if is_dquote(c) => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(ShellError::Parse(
                                "The string is missing the terminator: \".".into(),
                            ));
                        }
                        Some('`') => {
                            let e = chars.get(i + 1).copied().unwrap_or('`');
                            s.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                '0' => '\0',
                                other => other,
                            });
                            i += 2;
                        }
                        Some(&q) if is_dquote(q) => {
                            if chars.get(i + 1).is_some_and(|n| is_dquote(*n)) {
                                s.push('"');
                                i += 2;
                            } else {
                                i += 1;
                                break;
                            }
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1
                        }
                    }
                }
                toks.push(Tok::Quoted(s));
            }
            '$' => {
                let start = i + 1;
                let mut j = start;
                while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                if j == start {
                    return Err(ShellError::Parse(
                        "Variable reference is not valid: '$' was not followed by a variable name."
                            .into(),
                    ));
                }
                toks.push(Tok::Var(chars[start..j].iter().collect()));
                i = j;
            }
            // After a comma or `-Name:`, PowerShell reads `-Word` as an argument: the `-Size` of
            // `-SortOrder:+FromAddress,-Size`.
            _ if is_dash(c)
                && chars.get(i + 1).is_some_and(|n| n.is_alphabetic())
                && !matches!(toks.last(), Some(Tok::Comma) | Some(Tok::Param(_, true))) =>
            {
                let start = i + 1;
                let mut j = start;
                while j < chars.len() && !ends_word(chars[j]) && chars[j] != ':' {
                    j += 1;
                }
                let name: String = chars[start..j].iter().collect();
                let colon = chars.get(j) == Some(&':');
                toks.push(Tok::Param(name, colon));
                i = if colon { j + 1 } else { j };
            }
            _ => {
                let start = i;
                while i < chars.len() && !ends_word(chars[i]) {
                    i += 1;
                }
                toks.push(Tok::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(toks)
}

/// The text inside the `{` at `open` and the index after its `}`; quotes and nested braces
/// are skipped so that a `}` inside a string does not end the block.
fn script_block(chars: &[char], open: usize) -> Result<(String, usize), ShellError> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut i = open;
    while i < chars.len() {
        let c = chars[i];
        match quote {
            Some(q) if (q == '"' && is_dquote(c)) || (q == '\'' && is_squote(c)) => quote = None,
            Some('"') if c == '`' => i += 1,
            Some(_) => {}
            None if is_dquote(c) => quote = Some('"'),
            None if is_squote(c) => quote = Some('\''),
            None if c == '{' => depth += 1,
            None if c == '}' => {
                depth -= 1;
                if depth == 0 {
                    return Ok((chars[open + 1..i].iter().collect(), i + 1));
                }
            }
            None => {}
        }
        i += 1;
    }
    Err(ShellError::Parse(
        "Missing closing '}' in statement block or type definition.".into(),
    ))
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn primary(&mut self) -> Result<Value, ShellError> {
        match self.next() {
            Some(Tok::Word(w)) => Ok(Value::Str(w, false)),
            Some(Tok::Quoted(q)) => Ok(Value::Str(q, true)),
            Some(Tok::Var(v)) => Ok(match v.to_ascii_lowercase().as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                _ => Value::Var(v),
            }),
            Some(Tok::Comma) => Err(ShellError::Parse(
                "Missing expression after unary operator ','.".into(),
            )),
            other => Err(ShellError::Parse(format!(
                "Missing argument in parameter list{}.",
                other.map(|t| format!(" before {t:?}")).unwrap_or_default()
            ))),
        }
    }

    /// A value, or a comma list of values (`a, b, c`).
    fn value(&mut self) -> Result<Value, ShellError> {
        let first = self.primary()?;
        if self.peek() != Some(&Tok::Comma) {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.peek() == Some(&Tok::Comma) {
            self.pos += 1;
            items.push(self.primary()?);
        }
        Ok(Value::List(items))
    }

    fn command(&mut self) -> Result<Command, ShellError> {
        let name = match self.next() {
            Some(Tok::Word(w)) => w,
            Some(Tok::Pipe) | None => {
                return Err(ShellError::Parse(
                    "An empty pipe element is not allowed.".into(),
                ));
            }
            Some(t) => {
                return Err(ShellError::Parse(format!(
                    "Expressions are only allowed as the first element of a pipeline (found {t:?})."
                )));
            }
        };
        let mut elements = Vec::new();
        loop {
            match self.peek() {
                None | Some(Tok::Pipe) | Some(Tok::Semi) => break,
                Some(Tok::Param(..)) => {
                    let Some(Tok::Param(n, colon)) = self.next() else {
                        unreachable!()
                    };
                    let attached = if colon { Some(self.value()?) } else { None };
                    elements.push(Element::Param { name: n, attached });
                }
                Some(Tok::Assign) => {
                    return Err(ShellError::Parse(
                        "Unexpected token '=' in expression or statement.".into(),
                    ));
                }
                _ => elements.push(Element::Value(self.value()?)),
            }
        }
        Ok(Command { name, elements })
    }

    fn statement(&mut self) -> Result<Statement, ShellError> {
        let mut assign = None;
        if let (Some(Tok::Var(v)), Some(Tok::Assign)) =
            (self.toks.get(self.pos), self.toks.get(self.pos + 1))
        {
            assign = Some(v.clone());
            self.pos += 2;
        }
        let body = match self.peek() {
            Some(Tok::Word(_)) => {
                let mut cmds = vec![self.command()?];
                while self.peek() == Some(&Tok::Pipe) {
                    self.pos += 1;
                    cmds.push(self.command()?);
                }
                Body::Pipeline(cmds)
            }
            None | Some(Tok::Semi) if assign.is_some() => {
                return Err(ShellError::Parse(
                    "You must provide a value expression following the '=' operator.".into(),
                ));
            }
            _ => {
                let v = self.value()?;
                if self.peek() == Some(&Tok::Pipe) {
                    return Err(ShellError::Parse(
                        "Piping a value into a cmdlet is not supported by the hubgate shell; pipe a Get- cmdlet instead."
                            .into(),
                    ));
                }
                Body::Value(v)
            }
        };
        match self.peek() {
            None | Some(Tok::Semi) => Ok(Statement { assign, body }),
            Some(t) => Err(ShellError::Parse(format!(
                "Unexpected token {t:?} in expression or statement."
            ))),
        }
    }
}

/// Parses one line into its `;`-separated statements. An empty or comment-only line gives none.
pub fn parse_line(line: &str) -> Result<Vec<Statement>, ShellError> {
    let mut p = Parser {
        toks: lex(line)?,
        pos: 0,
    };
    let mut out = Vec::new();
    while p.pos < p.toks.len() {
        if p.peek() == Some(&Tok::Semi) {
            p.pos += 1;
            continue;
        }
        out.push(p.statement()?);
    }
    Ok(out)
}

/// Joins lines ending in a backtick with the next, as PowerShell continues them.
pub fn logical_lines(script: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut acc = String::new();
    let mut first = 0;
    for (n, raw) in script.lines().enumerate() {
        if acc.is_empty() {
            first = n + 1;
        }
        let line = raw.trim_end();
        if let Some(head) = line.strip_suffix('`') {
            acc.push_str(head);
            acc.push(' ');
            continue;
        }
        acc.push_str(line);
        out.push((first, std::mem::take(&mut acc)));
    }
    if !acc.is_empty() {
        out.push((first, acc));
    }
    out
}

/// `d.hh:mm:ss` as Exchange prints TimeSpans (days only when non-zero).
pub fn format_timespan(secs: i64) -> String {
    let (d, r) = (secs / 86400, secs % 86400);
    let hms = format!("{:02}:{:02}:{:02}", r / 3600, (r % 3600) / 60, r % 60);
    if d > 0 { format!("{d}.{hms}") } else { hms }
}

/// `10 MB (10,485,760 bytes)` as Exchange prints ByteQuantifiedSize.
pub fn format_bytes(bytes: Option<i64>) -> String {
    let Some(b) = bytes else {
        return "Unlimited".into();
    };
    let grouped = {
        let s = b.to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    };
    let units = [
        (1024i64.pow(4), "TB"),
        (1024i64.pow(3), "GB"),
        (1024i64.pow(2), "MB"),
        (1024, "KB"),
    ];
    let head = units
        .iter()
        .find(|(m, _)| b >= *m)
        .map(|(m, u)| {
            let v = b as f64 / *m as f64;
            let v = (v * 1000.0).trunc() / 1000.0;
            format!("{v} {u}")
        })
        .unwrap_or_else(|| format!("{b} B"));
    format!("{head} ({grouped} bytes)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::Str(v.into(), false)
    }
    fn q(v: &str) -> Value {
        Value::Str(v.into(), true)
    }
    fn p(n: &str) -> Element {
        Element::Param {
            name: n.into(),
            attached: None,
        }
    }
    fn v(x: Value) -> Element {
        Element::Value(x)
    }
    fn one(line: &str) -> Statement {
        let mut st = parse_line(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(st.len(), 1, "{line}");
        st.remove(0)
    }
    fn cmds(line: &str) -> Vec<Command> {
        match one(line).body {
            Body::Pipeline(c) => c,
            b => panic!("{line}: {b:?}"),
        }
    }

    #[test]
    fn script_blocks_are_their_text() {
        let cases = [
            (
                "Get-Queue -Filter {NextHopDomain -eq \"contoso.com\"} | Retry-Queue",
                "NextHopDomain -eq \"contoso.com\"",
            ),
            (
                "x -Filter {Subject -eq '}' -or (Size -gt 1)}",
                "Subject -eq '}' -or (Size -gt 1)",
            ),
            ("x -Filter {a -eq \"`\"}\"}", "a -eq \"`\"}\""),
            ("x -Filter { {nested} }", " {nested} "),
        ];
        for (line, body) in cases {
            assert_eq!(cmds(line)[0].elements[1], v(q(body)), "{line}");
        }
        assert_eq!(
            cmds("Get-Queue | ? {$_.MessageCount -gt 1}")[1],
            Command {
                name: "?".into(),
                elements: vec![v(q("$_.MessageCount -gt 1"))],
            }
        );
        for bad in ["x -Filter {a -eq 1", "x -Filter {a -eq '}"] {
            let e = parse_line(bad).unwrap_err().to_string();
            assert!(e.contains("Missing closing '}'"), "{bad}: {e}");
        }
    }

    #[test]
    fn commands_parameters_and_values() {
        let cases: Vec<(&str, Vec<Element>)> = vec![
            (
                "New-AcceptedDomain -Name \"Contoso\" -DomainName contoso.com",
                vec![
                    p("Name"),
                    v(q("Contoso")),
                    p("DomainName"),
                    v(s("contoso.com")),
                ],
            ),
            (
                "x -SmartHosts Hub1.FourthCoffee.Com, Hub2.FourthCoffee.com",
                vec![
                    p("SmartHosts"),
                    v(Value::List(vec![
                        s("Hub1.FourthCoffee.Com"),
                        s("Hub2.FourthCoffee.com"),
                    ])),
                ],
            ),
            (
                "x -a 'it''s' -b \"say \"\"hi\"\" `n\"",
                vec![p("a"), v(q("it's")), p("b"), v(q("say \"hi\" \n"))],
            ),
            (
                "x -RequireTLS $True -Enabled:$false -Confirm:$FALSE -WhatIf -v $null",
                vec![
                    p("RequireTLS"),
                    v(Value::Bool(true)),
                    Element::Param {
                        name: "Enabled".into(),
                        attached: Some(Value::Bool(false)),
                    },
                    Element::Param {
                        name: "Confirm".into(),
                        attached: Some(Value::Bool(false)),
                    },
                    p("WhatIf"),
                    p("v"),
                    v(Value::Null),
                ],
            ),
            (
                "x \"HUB1\\Default HUB1\" -Bindings 0.0.0.0:25 -t 3.00:00:00 -m 10MB -n \"25 MB\"",
                vec![
                    v(q("HUB1\\Default HUB1")),
                    p("Bindings"),
                    v(s("0.0.0.0:25")),
                    p("t"),
                    v(s("3.00:00:00")),
                    p("m"),
                    v(s("10MB")),
                    p("n"),
                    v(q("25 MB")),
                ],
            ),
            (
                "x -AuthenticationCredential $mycred # a comment -Ignored",
                vec![
                    p("AuthenticationCredential"),
                    v(Value::Var("mycred".into())),
                ],
            ),
            (
                "x \u{2013}Name \u{201c}Cross-Forest\u{201d} \u{2014}user \u{2018}ANONYMOUS LOGON\u{2019}",
                vec![
                    p("Name"),
                    v(q("Cross-Forest")),
                    p("user"),
                    v(q("ANONYMOUS LOGON")),
                ],
            ),
        ];
        for (line, want) in cases {
            let c = cmds(line);
            assert_eq!(c.len(), 1, "{line}");
            assert_eq!(c[0].elements, want, "{line}");
        }
    }

    #[test]
    fn pipelines_and_assignments() {
        let c = cmds("Get-SendConnector \"To Org2\" | Add-ADPermission -User x | fl Name, Port");
        let names: Vec<&str> = c.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Get-SendConnector", "Add-ADPermission", "fl"]);
        assert_eq!(
            c[2].elements,
            vec![v(Value::List(vec![s("Name"), s("Port")]))]
        );

        let st = one("$mycred = get-credential");
        assert_eq!(st.assign.as_deref(), Some("mycred"));
        assert!(matches!(&st.body, Body::Pipeline(c) if c[0].name == "get-credential"));

        let st = one("$x = 'a', 'b'");
        assert_eq!(st.body, Body::Value(Value::List(vec![q("a"), q("b")])));

        // A dash word after a comma or `-Name:` is an argument (Get-Message -SortOrder).
        let c = cmds("Get-Message -SortOrder:-Size,+FromAddress,-Subject -ResultSize 5");
        assert_eq!(
            c[0].elements,
            vec![
                Element::Param {
                    name: "SortOrder".into(),
                    attached: Some(Value::List(vec![
                        s("-Size"),
                        s("+FromAddress"),
                        s("-Subject")
                    ])),
                },
                p("ResultSize"),
                v(s("5")),
            ]
        );

        assert_eq!(parse_line("  # only a comment").unwrap(), vec![]);
        assert_eq!(parse_line("a; b").unwrap().len(), 2);
    }

    #[test]
    fn syntax_errors() {
        let cases = [
            (
                "x -RemoteIPRanges <IP address of Fourth Coffee Hub Transport server> -y",
                "<IP address of Fourth Coffee Hub Transport server>",
            ),
            ("x -a 'open", "missing the terminator"),
            ("x -a \"open", "missing the terminator"),
            ("x | | y", "empty pipe element"),
            ("x |", "empty pipe element"),
            ("$x =", "value expression following the '='"),
            ("x -a $", "Variable reference is not valid"),
            ("x -a (Get-Foo)", "not supported"),
            ("x -a b,", "Missing argument"),
            ("x > out.txt", "redirection"),
        ];
        for (line, want) in cases {
            let e = parse_line(line).unwrap_err().to_string();
            assert!(e.contains(want), "{line}: {e}");
        }
    }

    #[test]
    fn timespans_print_as_exchange_does() {
        assert_eq!(format_timespan(2 * 86400), "2.00:00:00");
        assert_eq!(format_timespan(4 * 3600), "04:00:00");
        assert_eq!(format_timespan(64 * 3600), "2.16:00:00");
    }

    #[test]
    fn byte_quantities_print_as_exchange_does() {
        assert_eq!(format_bytes(Some(10485760)), "10 MB (10,485,760 bytes)");
        assert_eq!(format_bytes(Some(65536)), "64 KB (65,536 bytes)");
        assert_eq!(format_bytes(Some(100)), "100 B (100 bytes)");
        assert_eq!(format_bytes(None), "Unlimited");
    }

    #[test]
    fn continuation_lines() {
        let l = logical_lines("a `\n  -b c\nd\n");
        assert_eq!(l, vec![(1, "a    -b c".to_string()), (3, "d".to_string())]);
    }
}
