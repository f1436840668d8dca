//! A configuration file read in pieces of whole lines, through one buffer that is used
//! again for every piece. keepalived.conf is read line by line and once: at 10,000 virtual
//! servers it is 5-10 MB, and reading it whole first wrote it into that many fresh pages,
//! a fifth of the page faults of a load (each one dear in a VM without hardware help).

use std::io::{self, Read};

/// How much is read at a time (a piece is this, cut back to its last line's end).
const PIECE: usize = 256 * 1024;

/// Text handed over in pieces, each ending at a line's end but the last.
pub(crate) trait Pieces {
    /// The next piece; `None` after the last.
    fn next_piece(&mut self) -> io::Result<Option<&str>>;
}

/// A text already in memory, as one piece.
pub(crate) struct Whole<'t>(pub(crate) Option<&'t str>);

impl Pieces for Whole<'_> {
    fn next_piece(&mut self) -> io::Result<Option<&str>> {
        Ok(self.0.take())
    }
}

/// A reader's text in pieces of whole lines. Invalid UTF-8 is an error of the piece
/// holding it (pieces end at a `\n`, so a character is never cut in two).
pub(crate) struct LinePieces<R> {
    source: R,
    buffer: Vec<u8>,
    /// `buffer[..handed]` is the piece handed out last.
    handed: usize,
    /// Hand the last piece out again ([`LinePieces::hand_again`]).
    again: bool,
    /// The source has nothing more.
    ended: bool,
}

impl<R: Read> LinePieces<R> {
    pub(crate) fn new(source: R) -> Self {
        LinePieces {
            source,
            buffer: Vec::with_capacity(PIECE),
            handed: 0,
            again: false,
            ended: false,
        }
    }

    /// The next [`Pieces::next_piece`] hands out the last piece again (for a look at the
    /// first piece before the reading proper).
    pub(crate) fn hand_again(&mut self) {
        self.again = true;
    }

    /// The rest of the text, from the last piece handed out if [`LinePieces::hand_again`]
    /// was called, in one string.
    pub(crate) fn rest(&mut self) -> io::Result<String> {
        let mut text = String::new();
        while let Some(piece) = self.next_piece()? {
            text.push_str(piece);
        }
        Ok(text)
    }

    fn piece(&self) -> io::Result<Option<&str>> {
        if self.handed == 0 {
            return Ok(None);
        }
        std::str::from_utf8(&self.buffer[..self.handed])
            .map(Some)
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "stream did not contain valid UTF-8",
                )
            })
    }
}

impl<R: Read> Pieces for LinePieces<R> {
    fn next_piece(&mut self) -> io::Result<Option<&str>> {
        if std::mem::take(&mut self.again) {
            return self.piece();
        }
        self.buffer.drain(..self.handed);
        self.handed = 0;
        // Fill the buffer, and past it while it holds no line's end (a line longer than a
        // piece).
        while !self.ended {
            if self.buffer.len() >= PIECE {
                if memchr::memrchr(b'\n', &self.buffer).is_some() {
                    break;
                }
                self.buffer.reserve(PIECE);
            }
            let room = (self.buffer.capacity() - self.buffer.len()).max(PIECE / 4);
            let read = (&mut self.source)
                .take(room as u64)
                .read_to_end(&mut self.buffer)?;
            if read < room {
                self.ended = true;
            }
        }
        self.handed = if self.ended {
            self.buffer.len()
        } else {
            memchr::memrchr(b'\n', &self.buffer).map_or(self.buffer.len(), |end| end + 1)
        };
        self.piece()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that gives at most `step` bytes a read, as a pipe or a slow disk may.
    struct Trickle<'t> {
        text: &'t [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.text.len());
            buf[..n].copy_from_slice(&self.text[..n]);
            self.text = &self.text[n..];
            Ok(n)
        }
    }

    fn pieces_of(text: &str, step: usize) -> Vec<String> {
        let mut pieces = LinePieces::new(Trickle {
            text: text.as_bytes(),
            step,
        });
        let mut out = Vec::new();
        while let Some(piece) = pieces.next_piece().unwrap() {
            out.push(piece.to_owned());
        }
        out
    }

    #[test]
    fn pieces_end_at_line_ends_and_together_are_the_text() {
        // Lines of 1-99 characters, several pieces' worth, the last without its newline.
        let mut text = String::new();
        for n in 0..20_000 {
            text.push_str(&"é".repeat(n % 50));
            text.push_str(&format!(" line {n}\n"));
        }
        text.push_str("the end");
        for step in [7, 4096, usize::MAX] {
            let pieces = pieces_of(&text, step);
            assert!(pieces.len() > 2, "{} pieces", pieces.len());
            let (last, whole_lines) = pieces.split_last().unwrap();
            assert!(whole_lines.iter().all(|p| p.ends_with('\n')));
            assert!(whole_lines.iter().all(|p| p.len() <= PIECE));
            assert_eq!(last.rsplit('\n').next(), Some("the end"));
            assert_eq!(pieces.concat(), text);
        }
        assert!(pieces_of("", 10).is_empty());
    }

    #[test]
    fn a_line_longer_than_a_piece_is_one_piece() {
        let long = "x".repeat(PIECE * 2 + 5);
        let text = format!("a\n{long}\nb\n");
        let pieces = pieces_of(&text, 100_000);
        assert!(pieces.iter().any(|p| p.contains(&long)));
        assert_eq!(pieces.concat(), text);
    }

    #[test]
    fn invalid_utf8_is_an_error_and_a_piece_can_be_handed_again() {
        let mut bytes = b"ok\n".repeat(PIECE);
        bytes.extend_from_slice(b"bad \xff\n");
        let mut pieces = LinePieces::new(&bytes[..]);
        let first = pieces.next_piece().unwrap().unwrap().to_owned();
        pieces.hand_again();
        assert_eq!(pieces.next_piece().unwrap().unwrap(), first);
        let error = loop {
            match pieces.next_piece() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the invalid byte was not reported"),
                Err(e) => break e,
            }
        };
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }
}
