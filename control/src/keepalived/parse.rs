//! keepalived.conf as a tree of statements: a keyword, the words after it
//! on its line, and a `{ }` block when one follows (its `{` on the same
//! line or the next). What the keywords mean is [`super::map`]'s.

use super::lex::{Kind, Token};
use super::{Pos, Refusal};

/// Blocks nested in blocks, at most (keepalived's deepest is 4: a url in
/// a checker in a real_server in a virtual_server).
pub const MAX_NESTING: usize = 16;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Word {
    pub text: String,
    pub quoted: bool,
    pub at: Pos,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Node {
    pub keyword: Word,
    pub args: Vec<Word>,
    pub block: Option<Vec<Node>>,
}

impl Node {
    pub fn at(&self) -> &Pos {
        &self.keyword.at
    }

    pub fn name(&self) -> &str {
        &self.keyword.text
    }
}

/// The statements of `tokens`.
pub(super) fn parse(tokens: Vec<Token>) -> Result<Vec<Node>, Refusal> {
    let mut rest = tokens.into_iter().peekable();
    let nodes = block(&mut rest, None, 0)?;
    Ok(nodes)
}

type Tokens = std::iter::Peekable<std::vec::IntoIter<Token>>;

/// Statements up to the `}` closing the block `opened` by a keyword (none:
/// the top level, up to the end).
fn block(rest: &mut Tokens, opened: Option<&Word>, depth: usize) -> Result<Vec<Node>, Refusal> {
    let mut nodes = Vec::new();
    while let Some(token) = rest.next() {
        match token.kind {
            Kind::Close if opened.is_some() => return Ok(nodes),
            Kind::Close => {
                return Err(Refusal::new(token.at, "}", "closes no block".to_owned()));
            }
            Kind::Open => {
                return Err(Refusal::new(
                    token.at,
                    "{",
                    "opens a block with no keyword before it".to_owned(),
                ));
            }
            Kind::Word | Kind::Quoted => {}
        }
        let keyword = Word {
            quoted: token.kind == Kind::Quoted,
            text: token.text,
            at: token.at,
        };
        let mut args = Vec::new();
        while let Some(arg) = rest
            .next_if(|t| t.line_id == token.line_id && matches!(t.kind, Kind::Word | Kind::Quoted))
        {
            args.push(Word {
                quoted: arg.kind == Kind::Quoted,
                text: arg.text,
                at: arg.at,
            });
        }
        let block = match rest.next_if(|t| t.kind == Kind::Open) {
            Some(open) if depth >= MAX_NESTING => {
                return Err(Refusal::new(
                    open.at,
                    "{",
                    format!("blocks nest more than {MAX_NESTING} deep"),
                ))
            }
            Some(_) => Some(block(rest, Some(&keyword), depth + 1)?),
            None => None,
        };
        nodes.push(Node {
            keyword,
            args,
            block,
        });
    }
    match opened {
        Some(keyword) => Err(Refusal::new(
            keyword.at.clone(),
            &keyword.text,
            "its `{` block is never closed".to_owned(),
        )),
        None => Ok(nodes),
    }
}

#[cfg(test)]
mod tests {
    use super::super::lex::lex;
    use super::*;
    use std::sync::Arc;

    fn tree(text: &str) -> Result<Vec<Node>, Refusal> {
        let mut id = 0;
        parse(lex(text, &Arc::from("k.conf"), &mut id)?)
    }

    /// The tree as `keyword(args){...}` text.
    fn shape(nodes: &[Node]) -> String {
        nodes
            .iter()
            .map(|n| {
                let args: Vec<&str> = n.args.iter().map(|a| a.text.as_str()).collect();
                let block = n
                    .block
                    .as_ref()
                    .map(|b| format!("{{{}}}", shape(b)))
                    .unwrap_or_default();
                format!("{}({}){block}", n.name(), args.join(" "))
            })
            .collect::<Vec<_>>()
            .join(";")
    }

    #[test]
    fn blocks_open_on_the_same_line_or_the_next() {
        let nodes = tree(
            "virtual_server 10.0.0.1 80\n{\n  real_server 10.0.1.1 80 { weight 2 }\n  \
             ha_suspend\n}\nvirtual_server fwmark 7 {\n}\n",
        )
        .unwrap();
        assert_eq!(
            shape(&nodes),
            "virtual_server(10.0.0.1 80){real_server(10.0.1.1 80){weight(2)};ha_suspend()};\
             virtual_server(fwmark 7){}"
        );
        assert_eq!(nodes[0].block.as_ref().unwrap()[0].at().line, 3);
    }

    #[test]
    fn unbalanced_braces_are_refused_where_they_are() {
        assert_eq!(
            tree("a {\n b 1\n").unwrap_err().to_string(),
            "k.conf:1: a: its `{` block is never closed"
        );
        assert_eq!(
            tree("a {\n}\n}\n").unwrap_err().to_string(),
            "k.conf:3: }: closes no block"
        );
        assert_eq!(
            tree("{ a }\n").unwrap_err().to_string(),
            "k.conf:1: {: opens a block with no keyword before it"
        );
        let deep = "a {\n".repeat(MAX_NESTING + 1) + &"}\n".repeat(MAX_NESTING + 1);
        assert!(tree(&deep)
            .unwrap_err()
            .to_string()
            .contains("nest more than 16 deep"));
    }
}
