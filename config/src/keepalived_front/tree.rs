//! keepalived.conf tokens → statements: the words of one line (up to a
//! brace) are one statement, and a `{ ... }` right after it (on the same
//! line or a later one, as keepalived allows) is that statement's block.

use compact_str::CompactString;

use crate::error::{ConfigError, Loc};

use super::read::{Kind, Token};

/// Blocks nest at most this deep (keepalived's deepest is 4: virtual_server,
/// real_server, a checker, its url); the limit only stops hostile input.
const MAX_BLOCK_DEPTH: usize = 16;

/// A statement's words.
pub(super) type Words = smallvec::SmallVec<[Word; 3]>;

/// A word and where it was written.
#[derive(Debug, Clone)]
pub(super) struct Word {
    pub(super) text: CompactString,
    pub(super) loc: Loc,
}

/// One keyword line with its arguments and, if present, its block.
#[derive(Debug)]
pub(super) struct Stmt {
    /// The keyword and its arguments; never empty. Up to three are held inline: nearly
    /// every line is a keyword and one or two arguments (460,000 lines at 10,000 virtual
    /// servers with `HTTP_GET`s, each a list of its own before).
    pub(super) words: Words,
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
                    w.text.as_str().to_owned()
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

/// Builds statements from tokens as the reader produces them, so that the whole token
/// list never exists at once (at 10,000 virtual servers it was a third of the reading's
/// peak memory). Each top-level statement is handed to `emit` when it is complete (its
/// block closed, or the next token started another statement), so the caller can turn it
/// into values and drop it before the next one is built. The errors are unbalanced braces
/// and misplaced `{`.
pub(super) struct Builder<F: FnMut(Stmt)> {
    /// The blocks open now, outermost first.
    open: Vec<OpenBlock>,
    /// The statement whose words are being read: it ends at a token on another line or a
    /// brace, and takes a block if the token after its words is `{`.
    pending: Option<Pending>,
    errors: Vec<ConfigError>,
    /// Blocks nested past the limit: the rest of the input is dropped.
    too_deep: bool,
    emit: F,
}

struct Pending {
    words: Words,
    /// The physical line of its first word (see [`Token::line`]).
    line: usize,
}

struct OpenBlock {
    /// Where the `{` is.
    open: Loc,
    /// The words of the statement owning the block; empty for a stray `{`, whose block is
    /// read only to keep its `}` from closing another, then dropped.
    words: Words,
    items: Vec<Stmt>,
}

impl<F: FnMut(Stmt)> Builder<F> {
    pub(super) fn new(emit: F) -> Builder<F> {
        Builder {
            open: Vec::new(),
            pending: None,
            errors: Vec::new(),
            too_deep: false,
            emit,
        }
    }

    /// The next token of the input.
    pub(super) fn push(&mut self, token: Token) {
        if self.too_deep {
            return;
        }
        match token.kind {
            Kind::Word(text) => {
                let word = Word {
                    text,
                    loc: token.loc,
                };
                match &mut self.pending {
                    Some(pending) if pending.line == token.line => pending.words.push(word),
                    _ => {
                        self.end_pending();
                        let mut words = Words::new();
                        words.push(word);
                        self.pending = Some(Pending {
                            words,
                            line: token.line,
                        });
                    }
                }
            }
            Kind::Open => match self.pending.take() {
                Some(pending) => self.open_block(token.loc, pending.words),
                None => {
                    self.errors.push(ConfigError::at(
                        &token.loc,
                        "unexpected `{`: a block must follow a keyword, e.g. `vrrp_instance VI_1 {`",
                    ));
                    self.open_block(token.loc, Words::new());
                }
            },
            Kind::Close => {
                self.end_pending();
                match self.open.pop() {
                    Some(block) => self.close_block(block),
                    None => self.errors.push(ConfigError::at(
                        &token.loc,
                        "unexpected `}`: no block is open here; remove it",
                    )),
                }
            }
        }
    }

    /// The end of the input: blocks still open are errors, innermost first.
    pub(super) fn finish(mut self) -> Vec<ConfigError> {
        self.end_pending();
        while let Some(block) = self.open.pop() {
            if !self.too_deep {
                let owner = block
                    .words
                    .first()
                    .map_or("a stray `{`", |word| word.text.as_str());
                self.errors.push(ConfigError::at(
                    &block.open,
                    format!("this block of `{owner}` is never closed; add `}}`"),
                ));
            }
            self.close_block(block);
        }
        self.errors
    }

    fn open_block(&mut self, open: Loc, words: Words) {
        if self.open.len() + 1 > MAX_BLOCK_DEPTH {
            self.errors.push(ConfigError::at(
                &open,
                format!("blocks nest more than {MAX_BLOCK_DEPTH} deep here"),
            ));
            // Nothing after this can be placed: the rest of the input is dropped.
            self.too_deep = true;
            self.close_block(OpenBlock {
                open,
                words,
                items: Vec::new(),
            });
            return;
        }
        self.open.push(OpenBlock {
            open,
            words,
            items: Vec::new(),
        });
    }

    fn close_block(&mut self, block: OpenBlock) {
        if block.words.is_empty() {
            return;
        }
        self.place(Stmt {
            words: block.words,
            block: Some(Block {
                open: block.open,
                items: block.items,
            }),
        });
    }

    fn end_pending(&mut self) {
        if let Some(pending) = self.pending.take() {
            self.place(Stmt {
                words: pending.words,
                block: None,
            });
        }
    }

    fn place(&mut self, stmt: Stmt) {
        match self.open.last_mut() {
            Some(block) => block.items.push(stmt),
            None => (self.emit)(stmt),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Each top-level statement as "keyword args… [n items]", in the order emitted, with
    /// how many tokens had been read when it was, and the structure errors.
    fn build(text: &str) -> (Vec<(String, usize)>, Vec<String>) {
        let mut emitted = Vec::new();
        // Shared with the emitting closure, which the builder holds.
        let tokens_read = std::cell::Cell::new(0);
        let mut builder = Builder::new(|stmt: Stmt| {
            let items = stmt.block.as_ref().map(|b| b.items.len());
            let shown = match items {
                Some(n) => format!("{} [{n}]", stmt.text()),
                None => stmt.text(),
            };
            emitted.push((shown, tokens_read.get()));
        });
        let source = super::super::read::read(
            &mut crate::pieces::Whole(Some(text)),
            "t.conf".into(),
            None,
            Path::new("/nonexistent"),
            &mut |token| {
                tokens_read.set(tokens_read.get() + 1);
                builder.push(token);
            },
        )
        .unwrap();
        assert!(source.errors.is_empty());
        let errors = builder.finish();
        (emitted, errors.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn top_level_statements_are_handed_over_as_soon_as_they_are_complete() {
        let (emitted, errors) = build("a 1\nb {\n  c 2\n  d\n  {\n    e\n  }\n}\nf 3 4\n");
        assert!(errors.is_empty(), "{errors:?}");
        let shown: Vec<&str> = emitted.iter().map(|(s, _)| s.as_str()).collect();
        // `{` on the line after `d` is d's block, as keepalived reads it.
        assert_eq!(shown, ["a 1", "b [2]", "f 3 4"]);
        // `a 1` is complete once the next statement starts (token 3, `b`), b's block once
        // its `}` (token 11) is read; the last statement at the end of the input.
        let when: Vec<usize> = emitted.iter().map(|(_, n)| *n).collect();
        assert_eq!(when, [3, 11, 14]);
    }

    #[test]
    fn stray_and_unclosed_braces_are_errors_innermost_first() {
        let (emitted, errors) = build("}\n{\n x\n}\na {\n b {\n");
        let shown: Vec<&str> = emitted.iter().map(|(s, _)| s.as_str()).collect();
        // The stray block is dropped; the unclosed ones are kept with what they hold.
        assert_eq!(shown, ["a [1]"]);
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].contains("t.conf:1:1") && errors[0].contains("unexpected `}`"));
        assert!(errors[1].contains("t.conf:2:1") && errors[1].contains("unexpected `{`"));
        assert!(errors[2].contains("t.conf:6:4") && errors[2].contains("block of `b`"));
        assert!(errors[3].contains("t.conf:5:3") && errors[3].contains("block of `a`"));
    }

    #[test]
    fn blocks_past_the_depth_limit_stop_the_reading_with_one_error() {
        let deep = "x {\n".repeat(MAX_BLOCK_DEPTH + 1) + "y\n" + &"}\n".repeat(MAX_BLOCK_DEPTH + 1);
        let (emitted, errors) = build(&(deep + "after 1\n"));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains(&format!("t.conf:{}:3", MAX_BLOCK_DEPTH + 1)));
        assert!(errors[0].contains("nest more than"));
        // Nothing after the limit is read, and the outer blocks are kept as they were.
        assert_eq!(emitted.len(), 1);
        assert_eq!(emitted[0].0, "x [1]");
    }
}
