//! PowerShell's wildcard patterns, for -like and -notlike.

/// PowerShell's -like: `*` any run, `?` one character, `[abc]` / `[a-z]` one of a set; `` ` ``
/// escapes the next character. Both sides already lowercased.
pub fn wildcard(pat: &str, text: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matching with one backtrack point for the last `*`: linear in practice and
    // bounded by |p|·|t| in the worst case.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                '[' => {
                    if let Some((hit, next)) = class(&p, pi, t[ti])
                        && hit
                    {
                        pi = next;
                        ti += 1;
                        continue;
                    }
                }
                '`' if pi + 1 < p.len() => {
                    if p[pi + 1] == t[ti] {
                        pi += 2;
                        ti += 1;
                        continue;
                    }
                }
                c if c == t[ti] => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// `[..]` at `p[at]`: whether `c` is in it, and where the pattern goes on after it.
fn class(p: &[char], at: usize, c: char) -> Option<(bool, usize)> {
    let close = p[at + 1..].iter().position(|x| *x == ']')? + at + 1;
    let set = &p[at + 1..close];
    let mut hit = false;
    let mut i = 0;
    while i < set.len() {
        if i + 2 < set.len() && set[i + 1] == '-' {
            hit |= (set[i]..=set[i + 2]).contains(&c);
            i += 3;
        } else {
            hit |= set[i] == c;
            i += 1;
        }
    }
    Some((hit, close + 1))
}
