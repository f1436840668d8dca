//! keepalived.conf tokens → statements: the words of one line (up to a
//! brace) are one statement, and a `{ ... }` right after it (on the same
//! line or a later one, as keepalived allows) is that statement's block.

use crate::error::{ConfigError, Loc};

use super::read::{Kind, Token};

/// Blocks nest at most this deep (keepalived's deepest is 4: virtual_server,
/// real_server, a checker, its url); the limit only stops hostile input.
const MAX_BLOCK_DEPTH: usize = 16;

/// A word and where it was written.
#[derive(Debug, Clone)]
pub(super) struct Word {
    pub(super) text: String,
    pub(super) loc: Loc,
}

/// One keyword line with its arguments and, if present, its block.
#[derive(Debug)]
pub(super) struct Stmt {
    /// The keyword and its arguments; never empty.
    pub(super) words: Vec<Word>,
    pub(super) block: Option<Block>,
}

impl Stmt {
    pub(super) fn keyword(&self) -> &Word {
        &self.words[0]
    }

    pub(super) fn args(&self) -> &[Word] {
        &self.words[1..]
    }

    /// The line as written (words joined by spaces), for messages.
    pub(super) fn text(&self) -> String {
        let words: Vec<String> = self
            .words
            .iter()
            .map(|w| {
                if w.text.is_empty() || w.text.contains(char::is_whitespace) {
                    format!("{:?}", w.text)
                } else {
                    w.text.clone()
                }
            })
            .collect();
        words.join(" ")
    }
}

/// A `{ ... }` block.
#[derive(Debug)]
pub(super) struct Block {
    /// Where the `{` is.
    pub(super) open: Loc,
    pub(super) items: Vec<Stmt>,
}

/// Parses every token; the errors are unbalanced braces and misplaced `{`.
pub(super) fn parse(tokens: Vec<Token>) -> (Vec<Stmt>, Vec<ConfigError>) {
    let mut parser = Parser {
        tokens: tokens.into_iter().peekable(),
        errors: Vec::new(),
        too_deep: false,
    };
    let items = parser.items(None, 0);
    (items, parser.errors)
}

struct Parser {
    tokens: std::iter::Peekable<std::vec::IntoIter<Token>>,
    errors: Vec<ConfigError>,
    /// Blocks nested past the limit: the rest of the input was dropped.
    too_deep: bool,
}

impl Parser {
    /// Statements up to the `}` closing the block opened at `open` (by
    /// `owner`), or to the end of input at the top level.
    fn items(&mut self, open: Option<(&Loc, &str)>, depth: usize) -> Vec<Stmt> {
        let mut items = Vec::new();
        if depth > MAX_BLOCK_DEPTH {
            if let Some((loc, _)) = open {
                self.errors.push(ConfigError::at(
                    loc,
                    format!("blocks nest more than {MAX_BLOCK_DEPTH} deep here"),
                ));
            }
            // Nothing after this can be placed: stop reading.
            self.tokens.by_ref().for_each(drop);
            self.too_deep = true;
            return items;
        }
        loop {
            let Some(token) = self.tokens.next() else {
                if let (Some((loc, owner)), false) = (open, self.too_deep) {
                    self.errors.push(ConfigError::at(
                        loc,
                        format!("this block of `{owner}` is never closed; add `}}`"),
                    ));
                }
                return items;
            };
            match token.kind {
                Kind::Close if open.is_some() => return items,
                Kind::Close => self.errors.push(ConfigError::at(
                    &token.loc,
                    "unexpected `}`: no block is open here; remove it",
                )),
                Kind::Open => {
                    self.errors.push(ConfigError::at(
                        &token.loc,
                        "unexpected `{`: a block must follow a keyword, e.g. `vrrp_instance VI_1 {`",
                    ));
                    // Skip the stray block so that its `}` does not close ours.
                    self.items(Some((&token.loc, "a stray `{`")), depth + 1);
                }
                Kind::Word(text) => {
                    let mut words = vec![Word {
                        text,
                        loc: token.loc,
                    }];
                    while let Some(next) = self
                        .tokens
                        .next_if(|t| t.line == token.line && matches!(t.kind, Kind::Word(_)))
                    {
                        if let Kind::Word(text) = next.kind {
                            words.push(Word {
                                text,
                                loc: next.loc,
                            });
                        }
                    }
                    let block = match self.tokens.next_if(|t| t.kind == Kind::Open) {
                        Some(open_token) => {
                            let owner = &words[0].text;
                            let inner = self.items(Some((&open_token.loc, owner)), depth + 1);
                            Some(Block {
                                open: open_token.loc,
                                items: inner,
                            })
                        }
                        None => None,
                    };
                    items.push(Stmt { words, block });
                }
            }
        }
    }
}
