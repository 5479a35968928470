//! keepalived.conf's words, as keepalived's own parser splits a line:
//! blanks separate words; `{` and `}` are words of their own; `"..."` is
//! one word without its quotes; `#` or `!` outside quotes starts a comment
//! to the end of the line; a line ending in `\` goes on on the next one.
//!
//! Every token knows its file and line (for refusals) and its logical
//! line (a number unique over all the files of one import): a keyword's
//! arguments are the words on its logical line.

use super::{Pos, Refusal};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// A bare word.
    Word,
    /// A `"..."` string, without its quotes.
    Quoted,
    /// `{`.
    Open,
    /// `}`.
    Close,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Token {
    pub kind: Kind,
    pub text: String,
    pub at: Pos,
    /// The logical line: equal for the tokens of one statement.
    pub line_id: usize,
}

/// The tokens of `text`, the file named `file`, numbering its logical lines
/// from `*line_id` on (and leaving it past the last).
pub(super) fn lex(text: &str, file: &Arc<str>, line_id: &mut usize) -> Result<Vec<Token>, Refusal> {
    let mut tokens = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, first)) = lines.next() {
        let at = Pos {
            file: Arc::clone(file),
            line: index + 1,
        };
        // A trailing backslash joins the next line to this one.
        let mut line = first.to_owned();
        while line.ends_with('\\') {
            line.pop();
            match lines.next() {
                Some((_, next)) => {
                    line.push(' ');
                    line.push_str(next);
                }
                None => break,
            }
        }
        *line_id += 1;
        words(&line, &at, *line_id, &mut tokens)?;
    }
    Ok(tokens)
}

fn words(line: &str, at: &Pos, line_id: usize, tokens: &mut Vec<Token>) -> Result<(), Refusal> {
    let token = |kind, text: &str| Token {
        kind,
        text: text.to_owned(),
        at: at.clone(),
        line_id,
    };
    let mut rest = line;
    loop {
        rest = rest.trim_start();
        let Some(first) = rest.chars().next() else {
            return Ok(());
        };
        match first {
            '#' | '!' => return Ok(()),
            '{' | '}' => {
                let kind = if first == '{' {
                    Kind::Open
                } else {
                    Kind::Close
                };
                tokens.push(token(kind, &rest[..1]));
                rest = &rest[1..];
            }
            '"' => {
                let Some(end) = rest[1..].find('"') else {
                    return Err(Refusal::new(
                        at.clone(),
                        "",
                        format!("unterminated quote in `{}`", line.trim()),
                    ));
                };
                tokens.push(token(Kind::Quoted, &rest[1..1 + end]));
                rest = &rest[end + 2..];
            }
            _ => {
                let end = rest
                    .find(|c: char| c.is_whitespace() || matches!(c, '{' | '}' | '"' | '#' | '!'))
                    .unwrap_or(rest.len());
                tokens.push(token(Kind::Word, &rest[..end]));
                rest = &rest[end..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(Kind, String, usize, usize)> {
        let mut id = 0;
        lex(text, &Arc::from("k.conf"), &mut id)
            .expect("lexed")
            .into_iter()
            .map(|t| (t.kind, t.text, t.at.line, t.line_id))
            .collect()
    }

    #[test]
    fn words_braces_quotes_and_comments() {
        use Kind::*;
        let w = |kind: Kind, text: &str, line, id| (kind, text.to_owned(), line, id);
        assert_eq!(
            kinds(
                "virtual_server 10.0.0.1 80{ # a comment\n\
                 \tmisc_path \"/bin/check -x # not a comment\"\n\
                 weight 2 ! also a comment\n\
                 notify_up \\\n  \"/bin/up\"}\n"
            ),
            vec![
                w(Word, "virtual_server", 1, 1),
                w(Word, "10.0.0.1", 1, 1),
                w(Word, "80", 1, 1),
                w(Open, "{", 1, 1),
                w(Word, "misc_path", 2, 2),
                w(Quoted, "/bin/check -x # not a comment", 2, 2),
                w(Word, "weight", 3, 3),
                w(Word, "2", 3, 3),
                w(Word, "notify_up", 4, 4),
                w(Quoted, "/bin/up", 4, 4),
                w(Close, "}", 4, 4),
            ]
        );
    }

    #[test]
    fn an_unterminated_quote_is_refused_at_its_line() {
        let mut id = 0;
        let err = lex("a\nmisc_path \"/bin/x\n", &Arc::from("k.conf"), &mut id).unwrap_err();
        assert_eq!(
            err.to_string(),
            "k.conf:2: unterminated quote in `misc_path \"/bin/x`"
        );
    }
}
