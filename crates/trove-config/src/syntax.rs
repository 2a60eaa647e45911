//! A small RON reader that keeps the byte offset of every key and value.
//!
//! `ron` itself checks the syntax first (see `load.rs`), so this reader only
//! ever sees text that is valid RON. Its job is different: serde forgets where
//! a value came from, and a person reading `error: trove.ron:7:13` needs the
//! position of the value that is wrong, not of the end of the file. It reads
//! the subset of RON that a configuration can use (structs, maps, lists,
//! strings, integers, booleans, `Some`/`None`) and keeps anything else as
//! [`Kind::Other`] so the schema layer can say "expected a string, found a
//! char" at the right place.

/// Deeper nesting than this is refused. `ron` refuses much earlier, so this is
/// only a guard that keeps the recursion bounded whatever happens.
const MAX_DEPTH: usize = 256;

/// A parsed value with the byte range it came from.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) kind: Kind,
    /// Byte offset of the value's first character.
    pub(crate) start: usize,
}

/// One `key: value` entry of a struct.
#[derive(Debug)]
pub(crate) struct Field {
    pub(crate) key: String,
    /// Byte offset of the key's first character.
    pub(crate) key_start: usize,
    pub(crate) value: Node,
}

/// The kinds of value the configuration distinguishes.
#[derive(Debug)]
pub(crate) enum Kind {
    /// `(key: value, ..)` or `Name(key: value, ..)`; `()` is an empty struct.
    Struct(Vec<Field>),
    /// `(a, b)`, a tuple (a `needs` entry with arguments: `("fx", ["EUR"])`).
    Tuple(Vec<Node>),
    /// `[a, b]`.
    List(Vec<Node>),
    /// `{k: v, ..}`.
    Map(Vec<(Node, Node)>),
    /// A string, with escapes resolved.
    Str(String),
    /// An integer; `None` when it does not fit an `i128`.
    Int(Option<i128>),
    /// A floating-point number.
    Float,
    /// `true` or `false`.
    Bool(bool),
    /// `Some(value)`.
    Some(Box<Node>),
    /// `None`.
    None,
    /// Any other bare identifier (a unit struct or enum variant).
    Ident(String),
    /// Something valid in RON that no configuration key accepts.
    Other(&'static str),
}

impl Node {
    /// The value with one `Some(..)` removed, or `None` for `None`.
    pub(crate) fn unwrap_option(&self) -> Option<&Node> {
        match &self.kind {
            Kind::Some(inner) => Some(inner),
            Kind::None => None,
            _ => Some(self),
        }
    }

    /// "a string", "an integer", ... for messages.
    pub(crate) fn describe(&self) -> String {
        match &self.kind {
            Kind::Struct(fields) if fields.is_empty() => "`()`".to_owned(),
            Kind::Struct(_) => "a struct `(key: value, ..)`".to_owned(),
            Kind::Tuple(_) => "a tuple `(..)`".to_owned(),
            Kind::List(_) => "a list `[..]`".to_owned(),
            Kind::Map(_) => "a map `{..}`".to_owned(),
            Kind::Str(s) => format!("the string {s:?}"),
            Kind::Int(_) => "an integer".to_owned(),
            Kind::Float => "a number with a fraction".to_owned(),
            Kind::Bool(_) => "a boolean".to_owned(),
            Kind::Some(_) => "`Some(..)`".to_owned(),
            Kind::None => "`None`".to_owned(),
            Kind::Ident(name) => format!("the identifier `{name}`"),
            Kind::Other(what) => (*what).to_owned(),
        }
    }
}

/// Why the reader stopped: a message and the byte offset it applies to.
#[derive(Debug)]
pub(crate) struct SyntaxError {
    pub(crate) offset: usize,
    pub(crate) message: String,
}

/// Reads one value (the whole document) from `src`.
pub(crate) fn parse(src: &str) -> Result<Node, SyntaxError> {
    let mut p = Parser { src, pos: 0 };
    p.skip_trivia()?;
    p.skip_attributes()?;
    let node = p.value(0)?;
    p.skip_trivia()?;
    if p.pos < src.len() {
        return Err(p.error("unexpected text after the configuration"));
    }
    Ok(node)
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn error(&self, message: &str) -> SyntaxError {
        SyntaxError {
            offset: self.pos,
            message: message.to_owned(),
        }
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), SyntaxError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.error(&format!("expected `{c}`")))
        }
    }

    /// Skips whitespace, `// line` and nested `/* block */` comments.
    fn skip_trivia(&mut self) -> Result<(), SyntaxError> {
        loop {
            let rest = self.rest();
            if let Some(c) = rest.chars().next().filter(|c| c.is_whitespace()) {
                self.pos += c.len_utf8();
            } else if rest.starts_with("//") {
                self.pos += rest.find('\n').unwrap_or(rest.len());
            } else if rest.starts_with("/*") {
                let mut depth = 0usize;
                loop {
                    let rest = self.rest();
                    if rest.starts_with("/*") {
                        depth += 1;
                        self.pos += 2;
                    } else if rest.starts_with("*/") {
                        depth -= 1;
                        self.pos += 2;
                        if depth == 0 {
                            break;
                        }
                    } else if self.bump().is_none() {
                        return Err(self.error("unclosed block comment"));
                    }
                }
            } else {
                return Ok(());
            }
        }
    }

    /// Skips `#![enable(..)]` attributes at the top of the document.
    fn skip_attributes(&mut self) -> Result<(), SyntaxError> {
        while self.rest().starts_with("#!") {
            self.pos += 2;
            self.skip_trivia()?;
            self.expect('[')?;
            let mut depth = 1usize;
            while depth > 0 {
                match self.bump() {
                    Some('[') => depth += 1,
                    Some(']') => depth -= 1,
                    Some(_) => {}
                    None => return Err(self.error("unclosed attribute")),
                }
            }
            self.skip_trivia()?;
        }
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        if depth > MAX_DEPTH {
            return Err(self.error("the configuration is nested too deeply"));
        }
        let start = self.pos;
        let node = |kind| Ok(Node { kind, start });
        match self.peek() {
            None => Err(self.error("unexpected end of file")),
            Some('(') => self.parenthesized(start, depth),
            Some('[') => {
                self.pos += 1;
                let items = self.sequence(']', depth)?;
                node(Kind::List(items))
            }
            Some('{') => {
                self.pos += 1;
                let mut entries = Vec::new();
                loop {
                    self.skip_trivia()?;
                    if self.eat('}') {
                        break;
                    }
                    let key = self.value(depth + 1)?;
                    self.skip_trivia()?;
                    self.expect(':')?;
                    self.skip_trivia()?;
                    let value = self.value(depth + 1)?;
                    entries.push((key, value));
                    self.skip_trivia()?;
                    if !self.eat(',') {
                        self.skip_trivia()?;
                        self.expect('}')?;
                        break;
                    }
                }
                node(Kind::Map(entries))
            }
            Some('"') => {
                let s = self.string()?;
                node(Kind::Str(s))
            }
            Some('\'') => {
                self.pos += 1;
                self.eat('\\');
                self.bump();
                self.skip_until('\'')?;
                node(Kind::Other("a char"))
            }
            Some(c) if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => self.number(start),
            Some(_) => self.word(start, depth),
        }
    }

    /// `(` starts a struct, a tuple or the unit value `()`.
    fn parenthesized(&mut self, start: usize, depth: usize) -> Result<Node, SyntaxError> {
        self.pos += 1;
        self.skip_trivia()?;
        // A struct when the first thing inside is `identifier :`.
        let save = self.pos;
        let is_struct = match self.identifier() {
            Some(_) => {
                self.skip_trivia()?;
                self.peek() == Some(':')
            }
            None => self.peek() == Some(')'),
        };
        self.pos = save;
        if !is_struct {
            let items = self.sequence(')', depth)?;
            return Ok(Node {
                kind: Kind::Tuple(items),
                start,
            });
        }
        let mut fields = Vec::new();
        loop {
            self.skip_trivia()?;
            if self.eat(')') {
                break;
            }
            let key_start = self.pos;
            let key = self
                .identifier()
                .ok_or_else(|| self.error("expected a key"))?;
            self.skip_trivia()?;
            self.expect(':')?;
            self.skip_trivia()?;
            let value = self.value(depth + 1)?;
            fields.push(Field {
                key,
                key_start,
                value,
            });
            self.skip_trivia()?;
            if !self.eat(',') {
                self.skip_trivia()?;
                self.expect(')')?;
                break;
            }
        }
        Ok(Node {
            kind: Kind::Struct(fields),
            start,
        })
    }

    /// Comma-separated values up to `close`; the opening bracket is consumed.
    fn sequence(&mut self, close: char, depth: usize) -> Result<Vec<Node>, SyntaxError> {
        let mut items = Vec::new();
        loop {
            self.skip_trivia()?;
            if self.eat(close) {
                return Ok(items);
            }
            items.push(self.value(depth + 1)?);
            self.skip_trivia()?;
            if !self.eat(',') {
                self.skip_trivia()?;
                self.expect(close)?;
                return Ok(items);
            }
        }
    }

    /// An identifier, `r#raw` or plain; `None` (and no progress) otherwise.
    fn identifier(&mut self) -> Option<String> {
        let rest = self.rest();
        let (prefix, body) = match rest.strip_prefix("r#") {
            Some(body) => (2, body),
            None => (0, rest),
        };
        let mut chars = body.char_indices();
        match chars.next() {
            Some((_, c)) if c == '_' || c.is_alphabetic() => {}
            _ => return None,
        }
        let len = chars
            .find(|&(_, c)| !(c == '_' || c.is_alphanumeric()))
            .map_or(body.len(), |(i, _)| i);
        self.pos += prefix + len;
        Some(body[..len].to_owned())
    }

    /// Identifiers and the literals that begin with a letter.
    fn word(&mut self, start: usize, depth: usize) -> Result<Node, SyntaxError> {
        let rest = self.rest();
        let raw_string = rest
            .strip_prefix('r')
            .is_some_and(|r| r.trim_start_matches('#').starts_with('"'));
        if raw_string {
            self.pos += 1;
            let s = self.raw_string()?;
            return Ok(Node {
                kind: Kind::Str(s),
                start,
            });
        }
        if rest.starts_with("b\"") || rest.starts_with("br") || rest.starts_with("b'") {
            self.pos += 1;
            if self.eat('r') {
                self.raw_string()?;
            } else if self.peek() == Some('"') {
                self.string()?;
            } else {
                self.pos += 1;
                self.eat('\\');
                self.bump();
                self.skip_until('\'')?;
            }
            return Ok(Node {
                kind: Kind::Other("a byte string"),
                start,
            });
        }
        let Some(name) = self.identifier() else {
            return Err(self.error("expected a value"));
        };
        let kind = match name.as_str() {
            "true" => Kind::Bool(true),
            "false" => Kind::Bool(false),
            "None" => Kind::None,
            "inf" | "NaN" => Kind::Float,
            "Some" => {
                self.skip_trivia()?;
                self.expect('(')?;
                self.skip_trivia()?;
                let inner = self.value(depth + 1)?;
                self.skip_trivia()?;
                self.eat(',');
                self.skip_trivia()?;
                self.expect(')')?;
                Kind::Some(Box::new(inner))
            }
            _ => {
                // `Name(..)`: a named struct or tuple; the name is not used.
                let save = self.pos;
                self.skip_trivia()?;
                if self.peek() == Some('(') {
                    let inner_start = self.pos;
                    return Ok(Node {
                        kind: self.parenthesized(inner_start, depth)?.kind,
                        start,
                    });
                }
                self.pos = save;
                Kind::Ident(name)
            }
        };
        Ok(Node { kind, start })
    }

    fn skip_until(&mut self, end: char) -> Result<(), SyntaxError> {
        loop {
            match self.bump() {
                Some(c) if c == end => return Ok(()),
                Some(_) => {}
                None => return Err(self.error("unexpected end of file")),
            }
        }
    }

    /// A `"..."` string; the cursor is on the opening quote.
    fn string(&mut self) -> Result<String, SyntaxError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err(self.error("unclosed string")),
                Some('"') => return Ok(out),
                Some('\\') => {
                    let escaped = match self.bump() {
                        Some('n') => '\n',
                        Some('r') => '\r',
                        Some('t') => '\t',
                        Some('0') => '\0',
                        Some('b') => '\u{8}',
                        Some('f') => '\u{c}',
                        Some('u') => self.unicode_escape()?,
                        Some('x') => {
                            let hex = self.rest().get(..2).unwrap_or("");
                            let c = u8::from_str_radix(hex, 16)
                                .map_err(|_| self.error("invalid `\\x` escape"))?;
                            self.pos += 2;
                            char::from(c)
                        }
                        Some('\n') => {
                            // A line continuation: skip the next line's indentation.
                            while self.peek().is_some_and(char::is_whitespace) {
                                self.bump();
                            }
                            continue;
                        }
                        Some(c) => c,
                        None => return Err(self.error("unclosed string")),
                    };
                    out.push(escaped);
                }
                Some(c) => out.push(c),
            }
        }
    }

    /// `\u{1F600}` or `\u00e9`; the cursor is after the `u`.
    fn unicode_escape(&mut self) -> Result<char, SyntaxError> {
        let hex: String = if self.eat('{') {
            let end = self
                .rest()
                .find('}')
                .ok_or_else(|| self.error("invalid `\\u` escape"))?;
            let hex = self.rest()[..end].to_owned();
            self.pos += end + 1;
            hex
        } else {
            let hex = self.rest().get(..4).unwrap_or("").to_owned();
            self.pos += hex.len();
            hex
        };
        u32::from_str_radix(&hex, 16)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| self.error("invalid `\\u` escape"))
    }

    /// `#"..."#` after the `r`.
    fn raw_string(&mut self) -> Result<String, SyntaxError> {
        let hashes = self.rest().bytes().take_while(|&b| b == b'#').count();
        self.pos += hashes;
        self.expect('"')?;
        let terminator = format!("\"{}", "#".repeat(hashes));
        let end = self
            .rest()
            .find(&terminator)
            .ok_or_else(|| self.error("unclosed raw string"))?;
        let s = self.rest()[..end].to_owned();
        self.pos += end + terminator.len();
        Ok(s)
    }

    fn number(&mut self, start: usize) -> Result<Node, SyntaxError> {
        let rest = self.rest();
        let mut len = 0;
        let bytes = rest.as_bytes();
        if matches!(bytes.first(), Some(b'-' | b'+')) {
            len += 1;
        }
        let radix_prefixed = rest[len..].starts_with("0x")
            || rest[len..].starts_with("0b")
            || rest[len..].starts_with("0o");
        while len < bytes.len() {
            let b = bytes[len];
            let exponent_sign = !radix_prefixed
                && matches!(b, b'+' | b'-')
                && matches!(bytes[len - 1], b'e' | b'E');
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || exponent_sign {
                len += 1;
            } else {
                break;
            }
        }
        let text = &rest[..len];
        self.pos += len;
        if text.len() == 1 && matches!(text, "-" | "+" | ".") {
            return Err(SyntaxError {
                offset: start,
                message: "expected a number".to_owned(),
            });
        }
        let clean: String = text.chars().filter(|&c| c != '_').collect();
        let (negative, digits) = match clean.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, clean.strip_prefix('+').unwrap_or(&clean)),
        };
        let (radix, digits) = if let Some(d) = digits.strip_prefix("0x") {
            (16, d)
        } else if let Some(d) = digits.strip_prefix("0b") {
            (2, d)
        } else if let Some(d) = digits.strip_prefix("0o") {
            (8, d)
        } else {
            (10, digits)
        };
        let is_float = radix == 10
            && (digits.contains('.')
                || digits.contains(['e', 'E'])
                || digits.ends_with("f32")
                || digits.ends_with("f64"));
        let kind = if is_float {
            Kind::Float
        } else {
            // A typed suffix (`5u8`) is valid RON; drop it.
            let digits = [
                "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128",
                "isize",
            ]
            .iter()
            .find_map(|suffix| digits.strip_suffix(suffix))
            .unwrap_or(digits);
            match i128::from_str_radix(digits, radix) {
                Ok(n) => Kind::Int(Some(if negative { -n } else { n })),
                Err(e) if matches!(e.kind(), std::num::IntErrorKind::PosOverflow) => {
                    Kind::Int(None)
                }
                Err(_) => {
                    return Err(SyntaxError {
                        offset: start,
                        message: format!("invalid number `{text}`"),
                    });
                }
            }
        };
        Ok(Node { kind, start })
    }
}

#[cfg(test)]
mod tests;
