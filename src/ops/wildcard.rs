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
        if p.get(pi) == Some(&'*') {
            star = Some((pi, ti));
            pi += 1;
            continue;
        }
        if let Some(next) = step(&p, pi, t[ti]) {
            pi = next;
            ti += 1;
            continue;
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

/// Where the pattern goes on if its element at `pi` (not `*`) matches the character `c`.
fn step(p: &[char], pi: usize, c: char) -> Option<usize> {
    match *p.get(pi)? {
        '?' => Some(pi + 1),
        '[' => match class(p, pi, c) {
            Some((hit, next)) => hit.then_some(next),
            // An unclosed `[` is itself.
            None => (c == '[').then_some(pi + 1),
        },
        '`' if pi + 1 < p.len() => (p[pi + 1] == c).then_some(pi + 2),
        x => (x == c).then_some(pi + 1),
    }
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
