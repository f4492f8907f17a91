//! Where-Object (`?`, `where`): keeps the pipeline's objects its script block matches, with the
//! same filter grammar as -Filter (`ops::filter`), properties written `$_.Name`.

use super::{Obj, ShellError, format};
use crate::ops::filter::{FValue, Filter, Record};

/// Queue and message objects compare with their typed values; the others as Format-List shows
/// them, a whole number or True/False read as one (as PowerShell's objects would type them).
impl Record for Obj {
    fn property_names(&self) -> Vec<&'static str> {
        format::raw_properties(self)
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    }

    fn property(&self, name: &str) -> Option<FValue> {
        match self {
            Obj::Queue(q) => return q.property(name),
            Obj::Message(m) => return m.property(name),
            _ => {}
        }
        let (_, v) = format::raw_properties(self)
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))?;
        Some(if v.is_empty() {
            FValue::Null
        } else if v == "True" || v == "False" {
            FValue::Bool(v == "True")
        } else if let Ok(n) = v.parse::<i64>() {
            FValue::Num(n as f64)
        } else {
            FValue::Str(v)
        })
    }
}

pub fn run(script: &str, objs: Vec<Obj>) -> Result<Vec<Obj>, ShellError> {
    let f =
        Filter::parse_where(script).map_err(|e| ShellError::Parse(format!("Where-Object: {e}")))?;
    let mut out = Vec::new();
    for o in objs {
        if f.matches(&o)
            .map_err(|e| ShellError::Parse(format!("Where-Object: {e}")))?
        {
            out.push(o);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_matching_objects_of_any_cmdlet() {
        let cred = |u: &str| Obj::Credential {
            user: u.into(),
            password: "x".into(),
        };
        let objs = vec![cred("admin"), cred("Administrator"), cred("relay")];
        let kept = run(
            "$_.UserName -like 'ADMIN*' -and -not ($_.UserName -eq 'admin')",
            objs,
        )
        .unwrap();
        assert_eq!(kept.len(), 1);
        assert!(matches!(&kept[0], Obj::Credential { user, .. } if user == "Administrator"));
        let e = run("$_.User -eq 'x'", vec![cred("a")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"User\" is not a recognized filterable property. Valid properties are: UserName, Password"),
            "{e}"
        );
        // No input: nothing to check the property against, nothing out.
        assert!(run("$_.Anything -eq 1", vec![]).unwrap().is_empty());
        let e = run("UserName -eq 'a'", vec![cred("a")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected $_.PropertyName"), "{e}");
    }
}
