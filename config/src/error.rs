//! Error types for configuration loading: a source location ([`Loc`]), one
//! user-facing error ([`ConfigError`]) and the list of all errors found in one
//! file ([`ConfigErrors`]), plus the byte-offset → line:col conversion.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock, RwLock};

/// A configuration file's name as the loader was given it (shown verbatim in messages),
/// interned: a copy is a number. Every token and every value read carries the location it
/// came from (over 600,000 tokens at 10,000 virtual servers), and a shared string there
/// cost two atomic counter updates a copy. Equal names are the same `FileName`. The names
/// stay for the life of the process; a daemon reads the same few files again and again.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileName(u32);

/// The interned names, in the order first seen, and where each is.
#[derive(Default)]
struct FileNames {
    names: Vec<Arc<str>>,
    index: HashMap<Arc<str>, u32>,
}

fn file_names() -> &'static RwLock<FileNames> {
    static NAMES: OnceLock<RwLock<FileNames>> = OnceLock::new();
    NAMES.get_or_init(RwLock::default)
}

impl FileName {
    /// The `FileName` of `name`.
    pub fn new(name: &str) -> FileName {
        if let Some(&n) = file_names()
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .index
            .get(name)
        {
            return FileName(n);
        }
        let mut names = file_names()
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(&n) = names.index.get(name) {
            return FileName(n);
        }
        let n = u32::try_from(names.names.len()).expect("fewer than 2^32 file names");
        let name: Arc<str> = Arc::from(name);
        names.names.push(name.clone());
        names.index.insert(name, n);
        FileName(n)
    }

    /// The name.
    pub fn name(self) -> Arc<str> {
        file_names()
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .names
            .get(self.0 as usize)
            .cloned()
            .unwrap_or_else(|| Arc::from(""))
    }
}

impl From<&str> for FileName {
    fn from(name: &str) -> FileName {
        FileName::new(name)
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl fmt::Debug for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.name())
    }
}

/// A position in a configuration file. `line` and `col` are 1-based; `col`
/// counts characters (Unicode scalar values), not bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Loc {
    /// The file name as given to the loader (shown verbatim in messages).
    pub file: FileName,
    /// 1-based line number.
    pub line: u32,
    /// 1-based column, in characters.
    pub col: u32,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// One problem with a configuration file, phrased so that it says what to change.
///
/// Displays as `file:line:col: message`, or `file: message` when the problem has
/// no position (an unreadable file, a missing section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the error is about (also present in `loc` when there is one).
    pub file: FileName,
    /// Where in the file, when the error points at a particular place.
    pub loc: Option<Loc>,
    /// What is wrong and what to change.
    pub message: String,
}

impl ConfigError {
    /// An error at a position in the file.
    pub fn at(loc: &Loc, message: impl Into<String>) -> Self {
        ConfigError {
            file: loc.file,
            loc: Some(*loc),
            message: message.into(),
        }
    }

    /// The file could not be read (opened, read through, or it is not UTF-8).
    pub(crate) fn unreadable(file: FileName, error: &std::io::Error) -> Self {
        ConfigError::whole_file(file, format!("cannot read the configuration file: {error}"))
    }

    /// An error about the file as a whole.
    pub fn whole_file(file: FileName, message: impl Into<String>) -> Self {
        ConfigError {
            file,
            loc: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.loc {
            Some(loc) => write!(f, "{loc}: {}", self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every error found in one configuration file, in file order.
///
/// Displays one error per line (no trailing newline). Never empty when returned
/// by the loaders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// Sorts by position; errors without a position go last. The sort is stable,
    /// so errors at the same place keep the order they were found in. Errors
    /// in several files (a keepalived.conf and its includes) are grouped by
    /// file, in the order each file's first error was found.
    pub(crate) fn sorted(mut errors: Vec<ConfigError>) -> Self {
        let mut files: Vec<FileName> = Vec::new();
        for error in &errors {
            if !files.contains(&error.file) {
                files.push(error.file);
            }
        }
        errors.sort_by_key(|e| match &e.loc {
            Some(loc) => (
                0,
                files.iter().position(|f| *f == loc.file).unwrap_or(0),
                loc.line,
                loc.col,
            ),
            None => (1, 0, 0, 0),
        });
        ConfigErrors(errors)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Converts byte offsets into a text to [`Loc`]s.
#[derive(Debug)]
pub(crate) struct LineIndex<'a> {
    file: FileName,
    text: &'a str,
    /// Byte offset of the first character of each line.
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(file: FileName, text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex {
            file,
            text,
            line_starts,
        }
    }

    pub(crate) fn file(&self) -> FileName {
        self.file
    }

    /// The location of byte `offset` (clamped to the text; snapped back to a
    /// character boundary).
    pub(crate) fn loc(&self, offset: usize) -> Loc {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_starts.partition_point(|&start| start <= offset) - 1;
        let col = self.text[self.line_starts[line]..offset].chars().count();
        Loc {
            file: self.file,
            line: to_u32(line + 1),
            col: to_u32(col + 1),
        }
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(text: &str, offset: usize) -> (u32, u32) {
        let loc = LineIndex::new("f".into(), text).loc(offset);
        (loc.line, loc.col)
    }

    #[test]
    fn a_file_name_is_one_number_per_name_and_shows_the_name() {
        let a = FileName::new("/etc/keepalived/keepalived.conf");
        let b = FileName::new("/etc/keepalived/conf.d/vs.conf");
        assert_ne!(a, b);
        // Interned from another thread, the same name is the same number.
        let again = std::thread::spawn(|| FileName::new("/etc/keepalived/keepalived.conf"))
            .join()
            .unwrap();
        assert_eq!(a, again);
        assert_eq!(a.to_string(), "/etc/keepalived/keepalived.conf");
        assert_eq!(format!("{b:?}"), "\"/etc/keepalived/conf.d/vs.conf\"");
        let loc = Loc {
            file: b,
            line: 3,
            col: 7,
        };
        assert_eq!(loc.to_string(), "/etc/keepalived/conf.d/vs.conf:3:7");
    }

    #[test]
    fn offsets_become_one_based_line_and_column() {
        let text = "ab\ncd\n\nx";
        assert_eq!(pos(text, 0), (1, 1));
        assert_eq!(pos(text, 1), (1, 2));
        assert_eq!(pos(text, 2), (1, 3)); // the newline itself
        assert_eq!(pos(text, 3), (2, 1));
        assert_eq!(pos(text, 6), (3, 1));
        assert_eq!(pos(text, 7), (4, 1));
        assert_eq!(pos(text, 100), (4, 2));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        // "é" is two bytes; "x" is the third character.
        assert_eq!(pos("#é x", 4), (1, 4));
    }

    #[test]
    fn error_display_with_and_without_location() {
        let file = FileName::new("haldir.toml");
        let loc = Loc {
            file,
            line: 12,
            col: 12,
        };
        let errors = ConfigErrors(vec![
            ConfigError::at(&loc, "bad"),
            ConfigError::whole_file(file, "unreadable"),
        ]);
        assert_eq!(
            errors.to_string(),
            "haldir.toml:12:12: bad\nhaldir.toml: unreadable"
        );
    }
}
