//! Depfiles: the files a command says it read, written to `$TROVE_DEPFILE`.
//!
//! Two forms are accepted. Which one a file is in is decided by its first *logical* line
//! (backslash-newline joins lines) that holds a name, blank lines and `#` comments
//! skipped: when a name on that line ends in an unescaped `:` — followed by whitespace,
//! the end of the line or the end of the file — the file is in **make form**, otherwise
//! it is **one path a line**.
//!
//! - One path a line: each line is a path exactly as written, spaces included; blank lines
//!   are skipped and a trailing `\r` dropped.
//! - Make form, as compilers write it (`gcc -MD -MF "$TROVE_DEPFILE"`): rules
//!   `target [target..]: prerequisite [prerequisite..]`. The inputs are the prerequisites
//!   of every rule, deduplicated, in first-seen order; targets are not inputs (so the
//!   phony `header.h:` rules of `-MP` add nothing). Every logical line that holds a name
//!   must have the `:`.
//!
//! A one-path-a-line file whose first path ends in `:` or holds `: ` is read as make form:
//! if it has more lines they lack the `:` and the file is refused, so only a file of that
//! single line is misread.
//!
//! Escapes in make form follow ninja's depfile parser (`src/depfile_parser.in.cc`), which
//! follows what GCC and Clang write:
//! - a newline (`\n` or `\r\n`) ends a rule; a backslash right before it continues the
//!   rule on the next line instead;
//! - spaces and tabs separate names; `2N+1` backslashes before a space or tab stand for
//!   `N` backslashes and that space or tab inside the name (`a\ b.h` is `a b.h`); `2N`
//!   backslashes before one are kept as they are and end the name;
//! - backslashes before `#` lose one (`\#` is `#`); an unescaped `#` starts a comment that
//!   runs to the end of the line;
//! - backslashes before `:` lose one (`c\:\x.h` is `c:\x.h`), except when whitespace or
//!   the end follows the `:`: then they stay and the `:` ends the targets;
//! - `$$` is `$`;
//! - any other backslash is kept as written (Windows paths: `\\server\share`);
//! - a prerequisite that is exactly `|` starts order-only prerequisites: it is dropped,
//!   and what follows it is still an input.
//!
//! Where ninja differs: it also splits names at bytes such as `|`, `;`, `*` or a lone `$`,
//! which GCC writes unescaped inside names; here only whitespace, a newline and an
//! unescaped `#` end a name. A tab is escaped like a space, as GCC writes it. A second
//! unescaped `:` in one rule is refused (ninja would drop it and keep the name).

use std::collections::HashSet;
use std::fmt;

/// Depfiles larger than this are refused (a depfile lists paths, not data).
pub(crate) const MAX_BYTES: usize = 64 << 20;

/// Why a depfile was refused. Lines count from 1.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DepfileError {
    /// Over [`MAX_BYTES`].
    TooLarge { len: usize },
    /// Not UTF-8 from this byte (counted from 0) on.
    NotUtf8 { line: usize, byte: usize },
    /// A NUL byte: no path holds one.
    Nul { line: usize },
    /// Make form, but a rule without a `:` after its targets.
    NoSeparator { line: usize },
    /// Make form, and a second `:` after a rule's targets.
    SecondSeparator { line: usize, name: String },
}

impl fmt::Display for DepfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DepfileError::TooLarge { len } => {
                write!(f, "depfile is {len} bytes; the limit is {MAX_BYTES}")
            }
            DepfileError::NotUtf8 { line, byte } => {
                write!(f, "line {line}: not UTF-8 (byte {byte})")
            }
            DepfileError::Nul { line } => write!(f, "line {line}: contains a NUL byte"),
            DepfileError::NoSeparator { line } => write!(
                f,
                "line {line}: expected `targets: prerequisites` (the first rule makes this \
                 a make-form depfile) but found no `:` followed by whitespace or the end of \
                 the line"
            ),
            DepfileError::SecondSeparator { line, name } => write!(
                f,
                "line {line}: `{name}:` is a second `:` in one rule (a `:` inside a name is \
                 written `\\:`)"
            ),
        }
    }
}

impl std::error::Error for DepfileError {}

/// Parses a depfile in either form (see the module documentation): the input paths, as
/// written (relative ones are relative to where the command started).
pub(crate) fn parse(bytes: &[u8]) -> Result<Vec<String>, DepfileError> {
    if bytes.len() > MAX_BYTES {
        return Err(DepfileError::TooLarge { len: bytes.len() });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| DepfileError::NotUtf8 {
        line: line_at(bytes, e.valid_up_to()),
        byte: e.valid_up_to(),
    })?;
    if let Some(at) = bytes.iter().position(|&b| b == 0) {
        return Err(DepfileError::Nul {
            line: line_at(bytes, at),
        });
    }
    let mut lexer = Lexer::new(text.as_bytes());
    let first = loop {
        match lexer.next_line() {
            None => return Ok(Vec::new()),
            Some(words) if words.is_empty() => continue,
            Some(words) => break words,
        }
    };
    if !first.iter().any(|w| w.separator) {
        return Ok(one_path_a_line(text));
    }
    let mut inputs = Inputs::default();
    let mut rule = Some(first);
    while let Some(words) = rule {
        inputs.add_rule(&words)?;
        rule = lexer.next_line();
    }
    Ok(inputs.paths)
}

/// The line (from 1) that byte `at` is on.
fn line_at(bytes: &[u8], at: usize) -> usize {
    bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1
}

/// The one-path-a-line form: every non-blank line, exactly as written, once.
fn one_path_a_line(text: &str) -> Vec<String> {
    let mut inputs = Inputs::default();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if !line.trim().is_empty() {
            inputs.add(line);
        }
    }
    inputs.paths
}

/// Input paths in first-seen order, each once.
#[derive(Default)]
struct Inputs {
    paths: Vec<String>,
    seen: HashSet<String>,
}

impl Inputs {
    fn add(&mut self, path: &str) {
        if !self.seen.contains(path) {
            self.seen.insert(path.to_owned());
            self.paths.push(path.to_owned());
        }
    }

    /// Adds the prerequisites of one make rule: the names after its separator.
    fn add_rule(&mut self, words: &[Word]) -> Result<(), DepfileError> {
        if words.is_empty() {
            return Ok(());
        }
        let Some(separator) = words.iter().position(|w| w.separator) else {
            return Err(DepfileError::NoSeparator {
                line: words[0].line,
            });
        };
        for word in &words[separator + 1..] {
            if word.separator {
                return Err(DepfileError::SecondSeparator {
                    line: word.line,
                    name: word.text.clone(),
                });
            }
            if word.text != "|" && !word.text.is_empty() {
                self.add(&word.text);
            }
        }
        Ok(())
    }
}

/// One name of a make-form line, unescaped.
#[derive(Debug)]
struct Word {
    text: String,
    /// The name ended in an unescaped `:` (stripped from `text`): it ends the targets.
    separator: bool,
    /// The physical line it is on.
    line: usize,
}

/// Splits make-form text into logical lines of names.
struct Lexer<'a> {
    bytes: &'a [u8],
    at: usize,
    /// The physical line `at` is on.
    line: usize,
    words: Vec<Word>,
    word: Vec<u8>,
    /// The word so far ends in an unescaped `:`.
    colon: bool,
}

impl<'a> Lexer<'a> {
    fn new(bytes: &'a [u8]) -> Lexer<'a> {
        Lexer {
            bytes,
            at: 0,
            line: 1,
            words: Vec::new(),
            word: Vec::new(),
            colon: false,
        }
    }

    fn peek(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.at + ahead).copied()
    }

    fn push(&mut self, bytes: &[u8], colon: bool) {
        self.word.extend_from_slice(bytes);
        self.colon = colon;
    }

    fn end_word(&mut self) {
        let separator = self.colon;
        if separator {
            self.word.pop();
        }
        if !self.word.is_empty() || separator {
            // Only ASCII bytes are ever dropped or inserted, so the word is still UTF-8.
            let text = String::from_utf8_lossy(&self.word).into_owned();
            self.words.push(Word {
                text,
                separator,
                line: self.line,
            });
        }
        self.word.clear();
        self.colon = false;
    }

    /// The next logical line's names (empty for a blank or comment line); `None` at the end.
    fn next_line(&mut self) -> Option<Vec<Word>> {
        if self.at >= self.bytes.len() {
            return None;
        }
        let mut newline = false;
        while let Some(c) = self.peek(0) {
            match c {
                b' ' | b'\t' => {
                    self.end_word();
                    self.at += 1;
                }
                b'\n' => {
                    self.at += 1;
                    newline = true;
                    break;
                }
                b'\r' if self.peek(1) == Some(b'\n') => {
                    self.at += 2;
                    newline = true;
                    break;
                }
                b'#' => {
                    self.end_word();
                    self.skip_comment();
                }
                b'$' if self.peek(1) == Some(b'$') => {
                    self.push(b"$", false);
                    self.at += 2;
                }
                b'\\' => self.backslashes(),
                b':' => {
                    self.push(b":", true);
                    self.at += 1;
                }
                _ => {
                    self.push(&[c], false);
                    self.at += 1;
                }
            }
        }
        self.end_word();
        if newline {
            self.line += 1;
        }
        Some(std::mem::take(&mut self.words))
    }

    /// A run of backslashes at `at` and what it escapes.
    fn backslashes(&mut self) {
        let n = self.bytes[self.at..]
            .iter()
            .take_while(|&&b| b == b'\\')
            .count();
        let after = self.peek(n);
        let run = |k: usize| vec![b'\\'; k];
        match after {
            Some(b' ' | b'\t') if n % 2 == 1 => {
                // 2N+1 backslashes: N of them, and the space inside the name.
                let mut bytes = run(n / 2);
                bytes.push(self.bytes[self.at + n]);
                self.push(&bytes, false);
                self.at += n + 1;
            }
            Some(b' ' | b'\t') => {
                // 2N backslashes: kept, and the space ends the name.
                self.push(&run(n), false);
                self.end_word();
                self.at += n + 1;
            }
            Some(b'#') => {
                let mut bytes = run(n - 1);
                bytes.push(b'#');
                self.push(&bytes, false);
                self.at += n + 1;
            }
            Some(b':') => {
                let ends = matches!(self.peek(n + 1), None | Some(b' ' | b'\t' | b'\r' | b'\n'));
                if ends {
                    // `x\:` then whitespace: a name ending in backslashes, then the `:`.
                    self.push(&run(n), false);
                    self.push(b":", true);
                } else {
                    let mut bytes = run(n - 1);
                    bytes.push(b':');
                    self.push(&bytes, false);
                }
                self.at += n + 1;
            }
            Some(b'\n') if n == 1 => {
                self.end_word();
                self.at += 2;
                self.line += 1;
            }
            Some(b'\r') if n == 1 && self.peek(2) == Some(b'\n') => {
                self.end_word();
                self.at += 3;
                self.line += 1;
            }
            None if n == 1 => {
                // A lone backslash at the very end continues onto nothing.
                self.end_word();
                self.at += 1;
            }
            _ => {
                // Kept as written; what follows is read on its own.
                self.push(&run(n), false);
                self.at += n;
            }
        }
    }

    /// Skips a comment up to (not including) the newline that ends it; a backslash right
    /// before a newline continues the comment, as in make.
    fn skip_comment(&mut self) {
        while let Some(c) = self.peek(0) {
            match c {
                b'\n' => return,
                b'\r' if self.peek(1) == Some(b'\n') => return,
                b'\\' if self.peek(1) == Some(b'\n') => {
                    self.at += 2;
                    self.line += 1;
                }
                b'\\' if self.peek(1) == Some(b'\r') && self.peek(2) == Some(b'\n') => {
                    self.at += 3;
                    self.line += 1;
                }
                _ => self.at += 1,
            }
        }
    }
}
