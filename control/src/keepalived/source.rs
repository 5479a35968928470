//! The files of one keepalived configuration: the one named and every
//! file it `include`s, as one stream of tokens.
//!
//! `include PATTERN` takes a whole line, anywhere (inside a block too, as
//! keepalived's). A relative pattern is relative to the directory of the
//! file that includes it. `*`, `?` and `[...]` match within one path
//! component, names starting with `.` only when the pattern does; the
//! matches are read in name order. A pattern without wildcards names a
//! file that must exist; one with wildcards may match none (keepalived
//! only warns), which is noted. Refused: an include cycle, includes nested
//! deeper than [`MAX_DEPTH`], more than [`MAX_FILES`] files, more than
//! [`MAX_CONFIG_BYTES`] of text in all.

use super::lex::{lex, Kind, Token};
use super::{Files, Pos, Refusal};
use crate::config::MAX_CONFIG_BYTES;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Includes nested in includes, at most.
pub const MAX_DEPTH: usize = 16;
/// Files of one configuration, at most.
pub const MAX_FILES: usize = 1000;

/// The tokens of the configuration at `path` with its includes spliced
/// in, and notes on what was read.
pub(super) fn load(
    files: &dyn Files,
    path: &Path,
    notes: &mut Vec<String>,
) -> Result<Vec<Token>, Refusal> {
    let mut loader = Loader {
        files,
        stack: Vec::new(),
        bytes: 0,
        count: 0,
        line_id: 0,
        notes,
        tokens: Vec::new(),
    };
    loader.file(path, None)?;
    Ok(loader.tokens)
}

struct Loader<'a> {
    files: &'a dyn Files,
    /// The files being read, outermost first, by identity.
    stack: Vec<PathBuf>,
    bytes: usize,
    count: usize,
    line_id: usize,
    notes: &'a mut Vec<String>,
    tokens: Vec<Token>,
}

impl Loader<'_> {
    /// Reads `path`, included at `from` (none: the file named on the
    /// command line).
    fn file(&mut self, path: &Path, from: Option<&Pos>) -> Result<(), Refusal> {
        let refuse = |reason: String| match from {
            Some(at) => Refusal::new(at.clone(), "include", reason),
            None => Refusal::whole(&path.display().to_string(), reason),
        };
        let identity = self.files.identity(path);
        if self.stack.contains(&identity) {
            return Err(refuse(format!(
                "{} includes itself (an include cycle)",
                path.display()
            )));
        }
        if self.stack.len() > MAX_DEPTH {
            return Err(refuse(format!("includes nest more than {MAX_DEPTH} deep")));
        }
        self.count += 1;
        if self.count > MAX_FILES {
            return Err(refuse(format!(
                "more than {MAX_FILES} files in one configuration"
            )));
        }
        let text = self.files.read(path).map_err(refuse)?;
        self.bytes += text.len();
        if self.bytes > MAX_CONFIG_BYTES {
            return Err(refuse(format!(
                "more than the limit of {} MiB of configuration in all",
                MAX_CONFIG_BYTES >> 20
            )));
        }
        let name: Arc<str> = Arc::from(path.display().to_string());
        let tokens = lex(&text, &name, &mut self.line_id)?;
        self.stack.push(identity);
        let mut rest = tokens.into_iter().peekable();
        while let Some(token) = rest.next() {
            let starts_line = self
                .tokens
                .last()
                .is_none_or(|t| t.line_id != token.line_id);
            if !(token.kind == Kind::Word && token.text == "include" && starts_line) {
                self.tokens.push(token);
                continue;
            }
            let mut args = Vec::new();
            while let Some(arg) = rest.next_if(|t| t.line_id == token.line_id) {
                args.push(arg);
            }
            let pattern = match args.as_slice() {
                [arg] if matches!(arg.kind, Kind::Word | Kind::Quoted) => arg.text.clone(),
                _ => {
                    return Err(Refusal::new(
                        token.at,
                        "include",
                        "takes one file name or pattern".to_owned(),
                    ))
                }
            };
            let base = path.parent().unwrap_or(Path::new(""));
            let pattern = base.join(pattern);
            let matched = expand(self.files, &pattern)
                .map_err(|reason| Refusal::new(token.at.clone(), "include", reason))?;
            if matched.is_empty() {
                self.notes.push(format!(
                    "{}: include {} matched no file",
                    token.at,
                    pattern.display()
                ));
            }
            for file in matched {
                self.file(&file, Some(&token.at))?;
            }
        }
        self.stack.pop();
        Ok(())
    }
}

/// Whether a path component has glob wildcards.
fn is_pattern(component: &str) -> bool {
    component.contains(['*', '?', '['])
}

/// The paths `pattern` names: itself without wildcards, else the
/// existing paths it matches, in name order.
fn expand(files: &dyn Files, pattern: &Path) -> Result<Vec<PathBuf>, String> {
    let mut paths = vec![PathBuf::new()];
    for component in pattern.components() {
        let Component::Normal(name) = component else {
            for path in &mut paths {
                path.push(component);
            }
            continue;
        };
        let name = name.to_string_lossy();
        if !is_pattern(&name) {
            for path in &mut paths {
                path.push(&*name);
            }
            continue;
        }
        let mut next = Vec::new();
        for dir in &paths {
            let listed = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir.as_path()
            };
            // A directory a wildcard above matched may hold no such entry.
            let mut entries = match files.list(listed) {
                Ok(entries) => entries,
                Err(reason) if paths.len() == 1 => {
                    return Err(format!("cannot read directory {reason}"))
                }
                Err(_) => continue,
            };
            entries.sort();
            for entry in entries {
                if (entry.starts_with('.') && !name.starts_with('.')) || !matches(&name, &entry) {
                    continue;
                }
                next.push(dir.join(entry));
            }
        }
        paths = next;
    }
    Ok(paths)
}

/// Whether `name` matches the glob `pattern` (`*`, `?`, `[abc]`, `[a-z]`,
/// `[!a]` or `[^a]`).
fn matches(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    matches_at(&pattern, &name)
}

fn matches_at(pattern: &[char], name: &[char]) -> bool {
    match pattern.first() {
        None => name.is_empty(),
        Some('*') => (0..=name.len()).any(|skip| matches_at(&pattern[1..], &name[skip..])),
        Some('?') => !name.is_empty() && matches_at(&pattern[1..], &name[1..]),
        Some('[') => {
            let Some((&c, name_rest)) = name.split_first() else {
                return false;
            };
            match class(&pattern[1..], c) {
                Some((true, pattern_rest)) => matches_at(pattern_rest, name_rest),
                Some((false, _)) => false,
                // No closing `]`: a literal `[`.
                None => c == '[' && matches_at(&pattern[1..], name_rest),
            }
        }
        Some(&p) => name.first() == Some(&p) && matches_at(&pattern[1..], &name[1..]),
    }
}

/// Whether `c` is in the class that `pattern` opens (after its `[`), and
/// the pattern after the class; `None` if the class is not closed.
fn class(pattern: &[char], c: char) -> Option<(bool, &[char])> {
    let (negated, mut rest) = match pattern.first() {
        Some('!' | '^') => (true, &pattern[1..]),
        _ => (false, pattern),
    };
    let mut found = false;
    let mut first = true;
    loop {
        match rest {
            [']', tail @ ..] if !first => return Some((found != negated, tail)),
            [low, '-', high, tail @ ..] if *high != ']' => {
                found |= (*low..=*high).contains(&c);
                rest = tail;
            }
            [one, tail @ ..] => {
                found |= *one == c;
                rest = tail;
            }
            [] => return None,
        }
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_patterns() {
        for (pattern, name, expected) in [
            ("*.conf", "web.conf", true),
            ("*.conf", "web.conf.bak", false),
            ("vs-?.conf", "vs-1.conf", true),
            ("vs-?.conf", "vs-10.conf", false),
            ("vs-[0-9].conf", "vs-7.conf", true),
            ("vs-[!0-9].conf", "vs-7.conf", false),
            ("vs-[^0-9].conf", "vs-a.conf", true),
            ("[]x].conf", "].conf", true),
            ("a[b", "a[b", true),
            ("*", "", true),
            ("a*b*c", "aXXbYc", true),
            ("a*b*c", "aXXbY", false),
        ] {
            assert_eq!(matches(pattern, name), expected, "{pattern} {name}");
        }
    }
}
