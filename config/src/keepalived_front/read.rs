//! Reading keepalived.conf text into tokens: comments (`#` and `!`, anywhere
//! outside quotes; `\#` and `\!` are literal), double-quoted strings, braces
//! as tokens of their own, and `include PATTERN` lines spliced in place,
//! as keepalived does. Every token carries the file:line:col it came from, so
//! an error in an included file names that file.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use compact_str::CompactString;

use crate::error::{ConfigError, FileName, Loc};
use crate::pieces::Pieces;

/// How deep `include` may nest (the main file is depth 0). keepalived has no
/// limit; this one only stops runaway chains (loops are caught separately).
pub(crate) const MAX_INCLUDE_DEPTH: usize = 16;

/// One token of keepalived.conf syntax.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Kind {
    /// A word or a quoted string (quotes removed).
    Word(CompactString),
    /// `{`
    Open,
    /// `}`
    Close,
}

#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) kind: Kind,
    pub(super) loc: Loc,
    /// Which physical line the token is on, unique across all files read:
    /// the words of one line (up to a brace) make one statement.
    pub(super) line: usize,
}

/// What reading the main file and its includes found besides the tokens.
pub(super) struct Source {
    /// Unterminated quotes, unsupported preprocessor lines, include failures.
    pub(super) errors: Vec<ConfigError>,
    /// Every included file read, with the `include` line that named it (for
    /// `enable_script_security`).
    pub(super) included: Vec<(PathBuf, Loc)>,
}

/// Reads the main file (called `file`, at `canonical` on disk if known) from `input`,
/// handing each token to `sink` in order; relative includes are resolved against `dir`.
/// `Err` is a failure to read the main file (the tokens handed over so far are then only
/// a part of it).
pub(super) fn read(
    input: &mut dyn Pieces,
    file: FileName,
    canonical: Option<PathBuf>,
    dir: &Path,
    sink: &mut dyn FnMut(Token),
) -> std::io::Result<Source> {
    let mut reader = Reader {
        sink,
        errors: Vec::new(),
        stack: Vec::new(),
        line: 0,
        included: Vec::new(),
        parameters: std::collections::HashMap::new(),
        config_id: config_id(),
        raws: Vec::new(),
    };
    reader
        .stack
        .push(canonical.unwrap_or_else(|| PathBuf::from(&*file.name())));
    let mut feed = LineFeed::default();
    while let Some(piece) = input.next_piece()? {
        // A UTF-8 byte-order mark, as some editors write, is not part of the text.
        let piece = match feed.lines {
            0 => piece.strip_prefix('\u{feff}').unwrap_or(piece),
            _ => piece,
        };
        reader.lines(piece, &mut feed, file, dir, 0);
    }
    reader.end_lines(feed);
    Ok(Source {
        errors: reader.errors,
        included: reader.included,
    })
}

/// Where the reading of one file is between two pieces of it.
#[derive(Default)]
struct LineFeed {
    /// The lines read so far.
    lines: usize,
    /// A `$NAME=VALUE` definition continued on the next line (its value so far ended in
    /// `\`, dropped).
    definition: Option<(String, String)>,
}

struct Reader<'s> {
    sink: &'s mut dyn FnMut(Token),
    errors: Vec<ConfigError>,
    /// The files being read, outermost first (canonical paths), for loop detection.
    stack: Vec<PathBuf>,
    line: usize,
    included: Vec<(PathBuf, Loc)>,
    /// `$NAME=value` definitions so far (keepalived's are global, included
    /// files too).
    parameters: std::collections::HashMap<String, String>,
    /// Which `@ID` lines apply (keepalived's `-i ID`, by default the host name).
    config_id: String,
    /// The words of the line being read (kept to be reused by the next line).
    raws: Vec<Raw>,
}

/// The configuration id `@ID` lines are matched against: `HALDIR_CONFIG_ID`
/// if set, else, as keepalived's default, the host name up to its first dot.
fn config_id() -> String {
    if let Ok(id) = std::env::var("HALDIR_CONFIG_ID") {
        return id;
    }
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    name.trim().split('.').next().unwrap_or_default().to_owned()
}

/// `$NAME=VALUE`: the name and the value, if `line` is a definition.
fn definition(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim_start().strip_prefix('$')?;
    let (name, value) = rest.split_once('=')?;
    let is_name = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    is_name.then(|| (name, value.trim()))
}

/// A word as scanned from one line: its text and 0-based character column.
struct Raw {
    kind: Kind,
    col: usize,
    /// Whether any part of the word was quoted.
    quoted: bool,
}

impl Reader<'_> {
    /// Reads an included file's whole `text`.
    fn text(&mut self, text: &str, file: FileName, dir: &Path, depth: usize) {
        let mut feed = LineFeed::default();
        self.lines(text, &mut feed, file, dir, depth);
        self.end_lines(feed);
    }

    /// Reads `piece`, whole lines of one file after the lines `feed` has seen, line by
    /// line as keepalived's parser does: a `$NAME=VALUE` line defines a parameter (a value
    /// ending in `\` continues on the next line, giving several lines), `$NAME` and
    /// `${NAME}` are replaced by the value, and an `@ID` / `@^ID` line is kept (without
    /// its prefix) only when ID is / is not the configuration id.
    fn lines(
        &mut self,
        piece: &str,
        feed: &mut LineFeed,
        file: FileName,
        dir: &Path,
        depth: usize,
    ) {
        // Lines are taken one at a time (a 10,000-service file has 160,000 of them). A
        // piece ends at a line's end: nothing follows its last `\n`.
        let mut starts = 0;
        let mut ends = memchr::memchr_iter(b'\n', piece.as_bytes()).chain([piece.len()]);
        let lines = std::iter::from_fn(|| {
            let end = ends.next()?;
            if end == piece.len() && starts == end {
                return None;
            }
            let line = &piece[starts..end];
            starts = end + 1;
            Some(line.strip_suffix('\r').unwrap_or(line))
        });
        // A piece without `$` defines and uses no parameter: its lines are not looked
        // through for one.
        let has_parameters = piece.contains('$');
        for line in lines {
            feed.lines += 1;
            let line_no = u32::try_from(feed.lines).unwrap_or(u32::MAX);
            if let Some((name, mut value)) = feed.definition.take() {
                value.push('\n');
                value.push_str(line.trim());
                self.define(feed, name, value);
                continue;
            }
            // Most lines start with neither `$` nor `@`: one look at the first byte.
            let first = match line.bytes().find(|b| !is_ascii_space(*b)) {
                // Perhaps a Unicode space.
                Some(0x80..) => line.trim_start().bytes().next(),
                first => first,
            };
            if first == Some(b'$') {
                if let Some((name, value)) = definition(line) {
                    self.define(feed, name.to_owned(), value.to_owned());
                    continue;
                }
            }
            let line = match first {
                Some(b'@') => match self.conditional(line) {
                    Some(line) => line,
                    None => continue,
                },
                _ => line,
            };
            if !has_parameters {
                self.line_of(line, line_no, file, dir, depth);
                continue;
            }
            let expanded = match self.substitute(line) {
                Ok(Cow::Borrowed(line)) => {
                    self.line_of(line, line_no, file, dir, depth);
                    continue;
                }
                Ok(expanded) => expanded,
                Err((col, name)) => {
                    let at = Loc {
                        file,
                        line: line_no,
                        col: u32::try_from(col + 1).unwrap_or(u32::MAX),
                    };
                    self.errors.push(ConfigError::at(
                        &at,
                        format!(
                            "`${name}` is not defined; define it first with a `${name}=VALUE` line"
                        ),
                    ));
                    continue;
                }
            };
            for part in expanded.split('\n') {
                self.line_of(part, line_no, file, dir, depth);
            }
        }
    }

    /// A `$NAME=VALUE` definition as read so far: defined, or, when its value ends in `\`,
    /// kept in `feed` to go on with the next line.
    fn define(&mut self, feed: &mut LineFeed, name: String, value: String) {
        match value.strip_suffix('\\') {
            Some(head) => feed.definition = Some((name, head.trim_end().to_owned())),
            None => {
                self.parameters.insert(name, value);
            }
        }
    }

    /// The end of a file: a definition still continuing is defined as it is.
    fn end_lines(&mut self, feed: LineFeed) {
        if let Some((name, value)) = feed.definition {
            self.parameters.insert(name, value);
        }
    }

    /// An `@ID` / `@^ID` line's rest if it applies here, `None` if not; other
    /// lines as they are.
    fn conditional<'l>(&self, line: &'l str) -> Option<&'l str> {
        let trimmed = line.trim_start();
        let Some(rest) = trimmed.strip_prefix('@') else {
            return Some(line);
        };
        let (negated, rest) = match rest.strip_prefix('^') {
            Some(rest) => (true, rest),
            None => (false, rest),
        };
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let applies = (rest[..end] == self.config_id) != negated;
        applies.then(|| &rest[end..])
    }

    /// `line` with `$NAME` and `${NAME}` replaced (borrowed as it is when it has
    /// no `$`); `Err` names the first undefined parameter and its column.
    fn substitute<'l>(&self, line: &'l str) -> Result<Cow<'l, str>, (usize, String)> {
        if !line.contains('$') {
            return Ok(Cow::Borrowed(line));
        }
        let mut out = String::with_capacity(line.len());
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            if chars[i] != '$' {
                out.push(chars[i]);
                i += 1;
                continue;
            }
            let braced = chars.get(i + 1) == Some(&'{');
            let start = if braced { i + 2 } else { i + 1 };
            let mut end = start;
            while end < chars.len() && (chars[end].is_ascii_alphanumeric() || chars[end] == '_') {
                end += 1;
            }
            let name: String = chars[start..end].iter().collect();
            if name.is_empty() || (braced && chars.get(end) != Some(&'}')) {
                out.push('$');
                i += 1;
                continue;
            }
            match self.parameters.get(&name) {
                Some(value) => out.push_str(value),
                None => return Err((i, name)),
            }
            i = if braced { end + 1 } else { end };
        }
        Ok(Cow::Owned(out))
    }

    /// One line, after definitions, conditions and substitutions.
    fn line_of(&mut self, line: &str, line_no: u32, file: FileName, dir: &Path, depth: usize) {
        self.line += 1;
        // The line's words go into one buffer kept across lines, not a list per line.
        let mut raws = std::mem::take(&mut self.raws);
        raws.clear();
        self.words_of(line, &mut raws, line_no, file, dir, depth);
        self.raws = raws;
    }

    /// [`line_of`](Self::line_of) with the word buffer `raws`, empty.
    fn words_of(
        &mut self,
        line: &str,
        raws: &mut Vec<Raw>,
        line_no: u32,
        file: FileName,
        dir: &Path,
        depth: usize,
    ) {
        let loc = |col: usize| Loc {
            file,
            line: line_no,
            col: u32::try_from(col + 1).unwrap_or(u32::MAX),
        };
        if let Err(col) = scan_into(line, true, raws) {
            self.errors.push(ConfigError::at(
                &loc(col),
                "this quote is never closed; end the string with `\"` on the same line",
            ));
            return;
        }
        let Some(first) = raws.first() else { return };
        if let (Kind::Word(word), false) = (&first.kind, first.quoted) {
            if word == "include" {
                // Braces belong to the pattern here ("{a,b}.conf"), as in keepalived,
                // which handles include lines before splitting out braces.
                let words = scan(line, false).unwrap_or_default();
                match words.as_slice() {
                        [_, Raw {
                            kind: Kind::Word(pattern),
                            col,
                            ..
                        }] => self.include(pattern, &loc(*col), dir, depth),
                        _ => self.errors.push(ConfigError::at(
                            &loc(first.col),
                            "include takes exactly one file name or pattern, e.g. `include /etc/keepalived/conf.d/*.conf`",
                        )),
                    }
                return;
            }
            if word.starts_with('~') {
                self.errors.push(ConfigError::at(
                    &loc(first.col),
                    "`~SEQ` sequences are not supported by haldir; write the lines out",
                ));
                return;
            }
        }
        for raw in raws.drain(..) {
            (self.sink)(Token {
                kind: raw.kind,
                loc: loc(raw.col),
                line: self.line,
            });
        }
    }

    /// Splices in every file `pattern` names, in sorted order.
    fn include(&mut self, pattern: &str, at: &Loc, dir: &Path, depth: usize) {
        if depth + 1 > MAX_INCLUDE_DEPTH {
            self.errors.push(ConfigError::at(
                at,
                format!(
                    "include {pattern}: includes nest more than {MAX_INCLUDE_DEPTH} deep; flatten them"
                ),
            ));
            return;
        }
        let Some(alternatives) = expand_braces(pattern) else {
            self.errors.push(ConfigError::at(
                at,
                format!(
                    "include {pattern}: its braces expand to too many names; use fewer alternatives or a wildcard"
                ),
            ));
            return;
        };
        let mut files = Vec::new();
        for alternative in alternatives {
            let path = dir.join(&alternative);
            if has_wildcard(&alternative) {
                // Like keepalived, a pattern that matches nothing (an empty
                // conf.d) includes nothing, and only regular files are read.
                files.extend(glob(&path).into_iter().filter(|p| p.is_file()));
            } else {
                files.push(path);
            }
        }
        for path in files {
            let name = FileName::new(&path.display().to_string());
            // Only regular files (as keepalived): never a directory, a FIFO or /dev/zero.
            let text = match std::fs::metadata(&path) {
                Ok(meta) if !meta.is_file() => Err("not a regular file".to_owned()),
                Ok(_) => std::fs::read_to_string(&path).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let text = match text {
                Ok(text) => text,
                Err(why) => {
                    self.errors.push(ConfigError::at(
                        at,
                        format!("include {pattern}: cannot read {name}: {why}"),
                    ));
                    continue;
                }
            };
            let canonical = path.canonicalize().unwrap_or_else(|_| path.clone());
            if let Some(position) = self.stack.iter().position(|p| *p == canonical) {
                let chain: Vec<String> = self.stack[position..]
                    .iter()
                    .chain(std::iter::once(&canonical))
                    .map(|p| p.display().to_string())
                    .collect();
                self.errors.push(ConfigError::at(
                    at,
                    format!(
                        "include {pattern}: include loop ({}); remove one of these includes",
                        chain.join(" → ")
                    ),
                ));
                continue;
            }
            let sub_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            self.included.push((path.clone(), *at));
            self.stack.push(canonical);
            self.text(&text, name, &sub_dir, depth + 1);
            self.stack.pop();
        }
    }
}

/// Scans one line into words and (if `braces`) `{` / `}` tokens, dropping the
/// comment. `Err(col)` is the column of a quote that is never closed. Columns
/// count characters; the line is walked once, without a copy.
fn scan(line: &str, braces: bool) -> Result<Vec<Raw>, usize> {
    let mut out = Vec::new();
    scan_into(line, braces, &mut out).map(|()| out)
}

/// [`scan`] into `out`, which the reader keeps from line to line.
fn scan_into(line: &str, braces: bool, out: &mut Vec<Raw>) -> Result<(), usize> {
    if scan_plain(line, braces, out) {
        return Ok(());
    }
    out.extend(scan_general(line, braces)?);
    Ok(())
}

/// [`scan`] of any line: quotes, `\#` and `\!` escapes, non-ASCII text.
fn scan_general(line: &str, braces: bool) -> Result<Vec<Raw>, usize> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut start: Option<usize> = None;
    let mut quoted = false;
    let mut open_quote: Option<usize> = None;
    let mut chars = line.chars().enumerate().peekable();
    let finish =
        |out: &mut Vec<Raw>, word: &mut String, start: &mut Option<usize>, quoted: &mut bool| {
            if let Some(col) = start.take() {
                out.push(Raw {
                    kind: Kind::Word(CompactString::from(std::mem::take(word))),
                    col,
                    quoted: std::mem::take(quoted),
                });
            }
        };
    while let Some((i, c)) = chars.next() {
        if open_quote.is_some() {
            if c == '"' {
                open_quote = None;
            } else {
                word.push(c);
            }
            continue;
        }
        match c {
            '"' => {
                start.get_or_insert(i);
                quoted = true;
                open_quote = Some(i);
            }
            '\\' if matches!(chars.peek(), Some((_, '#' | '!'))) => {
                start.get_or_insert(i);
                if let Some((_, escaped)) = chars.next() {
                    word.push(escaped);
                }
            }
            '#' | '!' => break,
            '{' | '}' if braces => {
                finish(&mut out, &mut word, &mut start, &mut quoted);
                out.push(Raw {
                    kind: if c == '{' { Kind::Open } else { Kind::Close },
                    col: i,
                    quoted: false,
                });
            }
            c if c.is_whitespace() => finish(&mut out, &mut word, &mut start, &mut quoted),
            c => {
                start.get_or_insert(i);
                word.push(c);
            }
        }
    }
    if let Some(col) = open_quote {
        return Err(col);
    }
    finish(&mut out, &mut word, &mut start, &mut quoted);
    Ok(out)
}

/// `char::is_whitespace` on ASCII: space, \t, \n, \x0b, \x0c, \r (`u8::is_ascii_whitespace`
/// leaves out \x0b).
const fn is_ascii_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// What a byte is to [`scan_plain`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum ByteClass {
    /// Part of a word.
    Word,
    /// `char::is_whitespace` on ASCII: space, \t, \n, \x0b, \x0c, \r.
    Space,
    /// `#` or `!`: the rest of the line is a comment.
    Comment,
    /// `{` or `}`: a token of its own where braces are, else part of a word.
    Brace,
    /// A quote, a backslash or a non-ASCII byte: the line is [`scan_general`]'s.
    General,
}

/// Every byte's class, looked up rather than matched: a `match` on the byte compiled
/// to a jump through a table for every byte, mispredicted at nearly every change of
/// class, and it was the reading's largest cost.
const BYTE_CLASSES: [ByteClass; 256] = {
    let mut classes = [ByteClass::Word; 256];
    let mut byte = 0;
    while byte < 256 {
        classes[byte] = match byte as u8 {
            byte if is_ascii_space(byte) => ByteClass::Space,
            b'#' | b'!' => ByteClass::Comment,
            b'{' | b'}' => ByteClass::Brace,
            b'"' | b'\\' | 0x80.. => ByteClass::General,
            _ => ByteClass::Word,
        };
        byte += 1;
    }
    classes
};

/// [`scan`] of an ASCII line without quotes or escapes (nearly every line): each
/// word is one slice of the line, copied once; columns are byte offsets. On the first
/// quote, backslash or non-ASCII byte before a comment it stops, leaves `out` as it
/// found it and returns false: the line is [`scan_general`]'s. One pass over the line
/// both checks and splits it, a run of one class at a time.
fn scan_plain(line: &str, braces: bool, out: &mut Vec<Raw>) -> bool {
    let bytes = line.as_bytes();
    let class = |at: usize| BYTE_CLASSES[usize::from(bytes[at])];
    let in_word =
        |class: ByteClass| class == ByteClass::Word || (class == ByteClass::Brace && !braces);
    let words_before = out.len();
    let mut at = 0;
    while at < bytes.len() {
        match class(at) {
            ByteClass::Space => {
                // The whole run (a line's indentation): one pass of the `match` a run.
                at += 1;
                while at < bytes.len() && class(at) == ByteClass::Space {
                    at += 1;
                }
            }
            ByteClass::Comment => return true,
            ByteClass::General => {
                out.truncate(words_before);
                return false;
            }
            ByteClass::Brace if braces => {
                out.push(Raw {
                    kind: if bytes[at] == b'{' {
                        Kind::Open
                    } else {
                        Kind::Close
                    },
                    col: at,
                    quoted: false,
                });
                at += 1;
            }
            ByteClass::Word | ByteClass::Brace => {
                let start = at;
                at += 1;
                while at < bytes.len() && in_word(class(at)) {
                    at += 1;
                }
                out.push(Raw {
                    kind: Kind::Word(CompactString::new(&line[start..at])),
                    col: start,
                    quoted: false,
                });
            }
        }
    }
    true
}

fn has_wildcard(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// How many expansion steps (one per brace group per alternative) an include
/// pattern may take: `{a,b}` repeated grows exponentially, so a short line
/// could otherwise take minutes and gigabytes (found by fuzzing).
const MAX_BRACE_STEPS: usize = 1024;

/// csh-style brace expansion: "a{b,c}d" → ["abd", "acd"], nested allowed;
/// an unmatched brace is literal. `None` past [`MAX_BRACE_STEPS`].
fn expand_braces(pattern: &str) -> Option<Vec<String>> {
    let mut budget = MAX_BRACE_STEPS;
    expand_braces_within(pattern, &mut budget)
}

fn expand_braces_within(pattern: &str, budget: &mut usize) -> Option<Vec<String>> {
    *budget = budget.checked_sub(1)?;
    let chars: Vec<char> = pattern.chars().collect();
    let Some(open) = chars.iter().position(|&c| c == '{') else {
        return Some(vec![pattern.to_owned()]);
    };
    let mut depth = 0;
    let mut commas = Vec::new();
    let mut close = None;
    for (i, &c) in chars.iter().enumerate().skip(open) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(i);
                    break;
                }
            }
            ',' if depth == 1 => commas.push(i),
            _ => {}
        }
    }
    let Some(close) = close else {
        return Some(vec![pattern.to_owned()]);
    };
    let prefix: String = chars[..open].iter().collect();
    let suffix: String = chars[close + 1..].iter().collect();
    let mut bounds = vec![open];
    bounds.extend(&commas);
    bounds.push(close);
    let mut out = Vec::new();
    for pair in bounds.windows(2) {
        let middle: String = chars[pair[0] + 1..pair[1]].iter().collect();
        out.extend(expand_braces_within(
            &format!("{prefix}{middle}{suffix}"),
            budget,
        )?);
    }
    Some(out)
}

/// The paths matching `pattern` (wildcards `*`, `?`, `[...]` in any
/// component), sorted per directory. Names starting with `.` match only a
/// pattern component that starts with `.`.
fn glob(pattern: &Path) -> Vec<PathBuf> {
    let mut current = vec![PathBuf::new()];
    for component in pattern.components() {
        let text = component.as_os_str().to_string_lossy();
        if !has_wildcard(&text) {
            for path in &mut current {
                path.push(component);
            }
            continue;
        }
        let pattern: Vec<char> = text.chars().collect();
        let mut next = Vec::new();
        for base in &current {
            let dir = if base.as_os_str().is_empty() {
                Path::new(".")
            } else {
                base.as_path()
            };
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|name| !name.starts_with('.') || pattern.first() == Some(&'.'))
                .filter(|name| wildcard_match(&pattern, &name.chars().collect::<Vec<_>>()))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|name| base.join(name)));
        }
        current = next;
    }
    current.retain(|p| p.exists());
    current
}

/// Matches one path component against a pattern with `*`, `?` and `[...]`
/// (`[!...]` / `[^...]` negate, `a-z` ranges). Backtracks only to the last `*`,
/// so it is linear in practice.
fn wildcard_match(pattern: &[char], name: &[char]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        let step = match pattern.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
                continue;
            }
            Some('?') => Some(1),
            Some('[') => match class(&pattern[p..], name[n]) {
                Some((len, true)) => Some(len),
                Some((_, false)) => None,
                None => (name[n] == '[').then_some(1),
            },
            Some(&c) => (c == name[n]).then_some(1),
            None => None,
        };
        match (step, star) {
            (Some(len), _) => {
                p += len;
                n += 1;
            }
            (None, Some((star_p, star_n))) => {
                p = star_p + 1;
                n = star_n + 1;
                star = Some((star_p, star_n + 1));
            }
            (None, None) => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// A `[...]` class at the start of `pattern`: (its length, whether `c` is in
/// it), or `None` if the bracket is never closed (then it is literal).
fn class(pattern: &[char], c: char) -> Option<(usize, bool)> {
    let mut i = 1;
    let negate = matches!(pattern.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let &member = pattern.get(i)?;
        if member == ']' && !first {
            return Some((i + 1, matched != negate));
        }
        first = false;
        if pattern.get(i + 1) == Some(&'-') && pattern.get(i + 2).is_some_and(|&e| e != ']') {
            matched |= (member..=pattern[i + 2]).contains(&c);
            i += 3;
        } else {
            matched |= member == c;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        scan(line, true)
            .unwrap()
            .into_iter()
            .map(|raw| match raw.kind {
                Kind::Word(w) => w.into_string(),
                Kind::Open => "{".into(),
                Kind::Close => "}".into(),
            })
            .collect()
    }

    /// Every line its own piece, the way a piece boundary can fall anywhere between lines.
    struct LineByLine<'t>(std::str::SplitInclusive<'t, char>);

    impl Pieces for LineByLine<'_> {
        fn next_piece(&mut self) -> std::io::Result<Option<&str>> {
            Ok(self.0.next())
        }
    }

    /// The tokens (kind and place) and the errors of reading `input`.
    fn tokens_of(input: &mut dyn Pieces) -> (Vec<(Kind, Loc, usize)>, Vec<String>) {
        let mut tokens = Vec::new();
        let source = read(
            input,
            "p.conf".into(),
            None,
            Path::new("/nonexistent"),
            &mut |token| tokens.push((token.kind, token.loc, token.line)),
        )
        .unwrap();
        let errors = source.errors.iter().map(|e| e.to_string()).collect();
        (tokens, errors)
    }

    #[test]
    fn a_file_read_in_pieces_gives_the_tokens_of_the_whole_text() {
        let id = config_id();
        let text = format!(
            "\u{feff}global_defs {{\r\n  router_id a # comment\r\n}}\n\
             $ADDRESSES=10.0.0.1 \\\n   10.0.0.2 \\\n 10.0.0.3\n\
             $PORT=80\n\
             virtual_server 10.9.9.9 $PORT {{\n\
             @{id} lb_algo rr\n\
             @^{id} lb_algo wrr\n\
             real_server ${{ADDRESSES}} {{ }}\n\
             weight $UNDEFINED\n\
             }}\n\
             $LAST=x \\"
        );
        let whole = tokens_of(&mut crate::pieces::Whole(Some(&text)));
        let pieces = tokens_of(&mut LineByLine(text.split_inclusive('\n')));
        assert_eq!(pieces, whole);
        let (tokens, errors) = whole;
        let words: Vec<String> = tokens
            .iter()
            .map(|(kind, loc, _)| match kind {
                Kind::Word(w) => format!("{w}@{}:{}", loc.line, loc.col),
                Kind::Open => "{".into(),
                Kind::Close => "}".into(),
            })
            .collect();
        // The byte-order mark is dropped, the continued definition spans lines 4-6, the
        // conditional lines keep their columns, and the substituted words their line.
        assert_eq!(words[0], "global_defs@1:1");
        assert!(words.contains(&"80@8:25".to_owned()), "{words:?}");
        assert!(words.contains(&"rr@9:10".to_owned()), "{words:?}");
        assert!(!words.iter().any(|w| w.starts_with("wrr")), "{words:?}");
        for address in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
            assert!(
                words
                    .iter()
                    .any(|w| w.starts_with(&format!("{address}@11:"))),
                "{address} in {words:?}"
            );
        }
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("p.conf:12:8: `$UNDEFINED`"),
            "{errors:?}"
        );
    }

    #[test]
    fn the_plain_line_scanner_agrees_with_the_general_one() {
        for line in [
            "    real_server 10.31.0.1 80 {",
            "\tweight 1 # a comment",
            "vrrp_instance VI_1{}",
            "priority 100! the master",
            "a\x0bb\x0cc\rd",
            "",
            "   ",
            "}}{",
            "a{b}c d{",
            "path /a#b",
            "x\x01y  \x7f ~z!",
            "{",
        ] {
            for braces in [true, false] {
                let mut plain = Vec::new();
                assert!(scan_plain(line, braces, &mut plain), "{line:?} is plain");
                let plain: Vec<(Kind, usize)> =
                    plain.into_iter().map(|r| (r.kind, r.col)).collect();
                // The general scanner on the same line (`scan` would take the fast path).
                let general: Vec<(Kind, usize)> = scan_general(line, braces)
                    .unwrap()
                    .into_iter()
                    .map(|r| (r.kind, r.col))
                    .collect();
                assert_eq!(plain, general, "{line:?} braces {braces}");
            }
        }
    }

    #[test]
    fn the_plain_scanner_hands_quotes_escapes_and_non_ascii_to_the_general_one() {
        for line in [
            "auth_pass \"a b\"",
            "notify \\#x",
            "router_id zürich",
            "a b c \"",
        ] {
            let mut out = vec![Raw {
                kind: Kind::Open,
                col: 0,
                quoted: false,
            }];
            assert!(!scan_plain(line, true, &mut out), "{line:?}");
            // What it had read of the line is taken back; what was there stays.
            assert_eq!(out.len(), 1, "{line:?}");
        }
        // After a comment anything goes: the line is still plain.
        assert_eq!(words("weight 1 # \"zürich\" \\#"), ["weight", "1"]);
        let mut out = Vec::new();
        assert!(scan_plain("weight 1 # \"zürich\"", true, &mut out));
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn comments_start_anywhere_outside_quotes() {
        assert_eq!(words("priority 100 # the master"), ["priority", "100"]);
        assert_eq!(words("priority 100! the master"), ["priority", "100"]);
        assert_eq!(words("! a whole-line comment"), Vec::<String>::new());
        assert_eq!(words("auth_pass \"a#b!c d\""), ["auth_pass", "a#b!c d"]);
        assert_eq!(words("auth_pass a\\#b"), ["auth_pass", "a#b"]);
    }

    #[test]
    fn braces_are_tokens_even_when_attached() {
        assert_eq!(words("vrrp_instance VI_1{"), ["vrrp_instance", "VI_1", "{"]);
        assert_eq!(
            words("virtual_ipaddress {192.0.2.1}"),
            ["virtual_ipaddress", "{", "192.0.2.1", "}"]
        );
        assert_eq!(words("x \"{ }\""), ["x", "{ }"]);
    }

    #[test]
    fn an_unclosed_quote_reports_its_column() {
        assert!(matches!(scan("auth_pass \"abc", true), Err(10)));
    }

    #[test]
    fn brace_expansion() {
        assert_eq!(expand_braces("a{b,c}d").unwrap(), ["abd", "acd"]);
        assert_eq!(
            expand_braces("{x,{y,z}}.conf").unwrap(),
            ["x.conf", "y.conf", "z.conf"]
        );
        assert_eq!(expand_braces("a{b").unwrap(), ["a{b"]);
        assert_eq!(expand_braces("plain.conf").unwrap(), ["plain.conf"]);
        // Exponential patterns are cut off, not expanded (found by fuzzing).
        assert_eq!(expand_braces(&"{a,b}".repeat(8)).unwrap().len(), 256);
        assert_eq!(expand_braces(&"{a,b}".repeat(20)), None);
        assert_eq!(expand_braces(&"{a}".repeat(5000)), None);
    }

    #[test]
    fn wildcards() {
        let m = |p: &str, n: &str| {
            wildcard_match(
                &p.chars().collect::<Vec<_>>(),
                &n.chars().collect::<Vec<_>>(),
            )
        };
        assert!(m("*.conf", "a.conf"));
        assert!(m("*.conf", ".conf"));
        assert!(!m("*.conf", "a.conf.bak"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[!a-c]x", "bx"));
        assert!(m("[]]", "]"));
        assert!(m("[", "["));
        assert!(m("*a*b", "xxaxxb"));
        assert!(!m("*a*b", "xxaxxbc"));
    }
}
