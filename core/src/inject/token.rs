//! The lexical layer of RFC 5322 header fields as qmail-inject reads them:
//! atoms, quoted strings, domain literals, comments and the specials
//! `. , @ < > : ;`. Whitespace (and line folding) only separates tokens.
//!
//! Bytes above 127 are ordinary atom characters, so UTF-8 names and
//! addresses (RFC 6532) stay atoms and come out as they went in; qmail 1.03
//! quoted them. An atom holding a control character, `)`, `]` or a
//! backslash escape cannot be written back as an atom and becomes a quoted
//! string, as in qmail.

use thiserror::Error;

/// One token. Word contents are stored decoded (without quotes, brackets or
/// backslash escapes) except a comment's, kept as written between its outer
/// parentheses so nested comments and escapes survive unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    Atom(Vec<u8>),
    Quoted(Vec<u8>),
    Literal(Vec<u8>),
    Comment(Vec<u8>),
    Dot,
    Comma,
    At,
    Lt,
    Gt,
    Colon,
    Semi,
}

impl Tok {
    /// A word: something an address or a phrase is made of.
    pub fn is_word(&self) -> bool {
        matches!(self, Tok::Atom(_) | Tok::Quoted(_) | Tok::Literal(_))
    }

    fn spaced(&self) -> bool {
        self.is_word() || matches!(self, Tok::Comment(_))
    }
}

/// Why a field could not be split into tokens.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LexError {
    #[error("unbalanced {0:?}")]
    Unbalanced(char),
    #[error("unterminated {0}")]
    Unterminated(&'static str),
}

fn special(c: u8) -> Option<Tok> {
    Some(match c {
        b'.' => Tok::Dot,
        b',' => Tok::Comma,
        b'@' => Tok::At,
        b'<' => Tok::Lt,
        b'>' => Tok::Gt,
        b':' => Tok::Colon,
        b';' => Tok::Semi,
        _ => return None,
    })
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Ends an atom (besides the specials).
fn ends_atom(c: u8) -> bool {
    is_space(c) || special(c).is_some() || matches!(c, b'(' | b'[' | b'"')
}

/// Splits `s` into tokens.
pub fn tokenize(s: &[u8]) -> Result<Vec<Tok>, LexError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if is_space(c) {
            i += 1;
        } else if let Some(t) = special(c) {
            out.push(t);
            i += 1;
        } else if c == b')' || c == b']' {
            return Err(LexError::Unbalanced(c as char));
        } else if c == b'(' {
            let start = i + 1;
            let mut depth = 1;
            i += 1;
            while depth > 0 {
                match s.get(i) {
                    None => return Err(LexError::Unterminated("comment")),
                    Some(b'\\') => i += 1,
                    Some(b'(') => depth += 1,
                    Some(b')') => depth -= 1,
                    Some(_) => {}
                }
                i += 1;
            }
            if i > s.len() {
                return Err(LexError::Unterminated("comment"));
            }
            out.push(Tok::Comment(s[start..i - 1].to_vec()));
        } else if c == b'"' || c == b'[' {
            let close = if c == b'"' { b'"' } else { b']' };
            let mut content = Vec::new();
            i += 1;
            loop {
                match s.get(i) {
                    None => {
                        return Err(LexError::Unterminated(if c == b'"' {
                            "quoted string"
                        } else {
                            "domain literal"
                        }));
                    }
                    Some(&b) if b == close => break,
                    Some(b'\\') => {
                        i += 1;
                        match s.get(i) {
                            Some(&e) => content.push(e),
                            None => return Err(LexError::Unterminated("escape")),
                        }
                    }
                    Some(&b) => content.push(b),
                }
                i += 1;
            }
            i += 1;
            out.push(if c == b'"' {
                Tok::Quoted(content)
            } else {
                Tok::Literal(content)
            });
        } else {
            let mut content = Vec::new();
            let mut escaped = false;
            while i < s.len() && !ends_atom(s[i]) {
                if s[i] == b'\\' {
                    escaped = true;
                    i += 1;
                    if i >= s.len() {
                        break;
                    }
                }
                content.push(s[i]);
                i += 1;
            }
            if escaped || !atom_safe(&content) {
                out.push(Tok::Quoted(content));
            } else {
                out.push(Tok::Atom(content));
            }
        }
    }
    Ok(out)
}

/// Whether `a` can be written as a bare atom and read back as the same atom.
pub fn atom_safe(a: &[u8]) -> bool {
    !a.is_empty()
        && a.iter().all(|&c| {
            c >= 128 || (c > 32 && c < 127 && !matches!(c, b')' | b']' | b'\\')) && !ends_atom(c)
        })
}

/// Writes tokens as qmail-inject does: one space after `:` and `,`, one
/// before `<`, one between adjacent words and comments, nothing elsewhere.
/// A comma is followed by a fold point (see [`Folder`]).
pub fn render(toks: &[Tok], out: &mut Folder) {
    let mut last: Option<&Tok> = None;
    for t in toks {
        if let Some(l) = last {
            let space =
                matches!(l, Tok::Colon) || matches!(t, Tok::Lt) || (l.spaced() && t.spaced());
            // After a comma the fold point supplies the space.
            if space && !matches!(l, Tok::Comma) {
                out.push(b" ");
            }
        }
        match t {
            Tok::Dot => out.push(b"."),
            Tok::Comma => out.comma(),
            Tok::At => out.push(b"@"),
            Tok::Lt => out.push(b"<"),
            Tok::Gt => out.push(b">"),
            Tok::Colon => out.push(b":"),
            Tok::Semi => out.push(b";"),
            Tok::Atom(a) => out.push(a),
            Tok::Quoted(q) => out.push(&escaped(b'"', q, b'"')),
            Tok::Literal(l) => out.push(&escaped(b'[', l, b']')),
            Tok::Comment(c) => {
                out.push(b"(");
                out.push(c);
                out.push(b")");
            }
        }
        last = Some(t);
    }
}

fn escaped(open: u8, s: &[u8], close: u8) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 2);
    v.push(open);
    for &c in s {
        if matches!(c, b'"' | b'[' | b']' | b'\\' | b'\r' | b'\n') {
            v.push(b'\\');
        }
        v.push(c);
    }
    v.push(close);
    v
}

/// qmail-inject's line width for the address fields it rewrites.
pub const LINE_LEN: usize = 80;

/// Builds a header field, folding after commas as qmail-inject does: every
/// comma is followed by a line break, and a break is taken back (the two
/// lines joined with a space) whenever the joined line still fits in
/// [`LINE_LEN`] columns. The result is greedy filling with breaks only after
/// commas; a single address longer than the line stays whole.
pub struct Folder {
    buf: Vec<u8>,
    line_start: usize,
    /// Where the last break (`\n `) we may still take back was written.
    open_break: Option<usize>,
}

impl Folder {
    pub fn new() -> Folder {
        Folder {
            buf: Vec::new(),
            line_start: 0,
            open_break: None,
        }
    }

    pub fn push(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    fn comma(&mut self) {
        self.buf.push(b',');
        self.fold_point();
        self.buf.push(b' ');
    }

    fn fold_point(&mut self) {
        let here = self.buf.len();
        // The measure counts the pending break's two bytes, as qmail's does.
        match self.open_break {
            Some(b) if here - self.line_start <= LINE_LEN => {
                // Join: the previous break becomes nothing (the space that
                // follows every comma stays).
                self.buf.drain(b..b + 2);
                self.buf.extend_from_slice(b"\n ");
                self.open_break = Some(self.buf.len() - 2);
            }
            prev => {
                if let Some(b) = prev {
                    self.line_start = b + 1;
                }
                self.buf.extend_from_slice(b"\n ");
                self.open_break = Some(here);
            }
        }
    }

    /// Ends the field with its newline.
    pub fn finish(mut self) -> Vec<u8> {
        self.fold_point();
        self.buf.pop();
        self.buf
    }
}

impl Default for Folder {
    fn default() -> Self {
        Folder::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(s: &str) -> String {
        let mut f = Folder::new();
        render(&tokenize(s.as_bytes()).unwrap(), &mut f);
        String::from_utf8(f.finish()).unwrap()
    }

    #[test]
    fn lexes_every_kind() {
        let t = tokenize(br#"Jo "Q. \"x\"" (a (b) \) c) <j@[1.2.3.4]>, a\@b"#).unwrap();
        assert_eq!(
            t,
            vec![
                Tok::Atom(b"Jo".to_vec()),
                Tok::Quoted(br#"Q. "x""#.to_vec()),
                Tok::Comment(br"a (b) \) c".to_vec()),
                Tok::Lt,
                Tok::Atom(b"j".to_vec()),
                Tok::At,
                Tok::Literal(b"1.2.3.4".to_vec()),
                Tok::Gt,
                Tok::Comma,
                Tok::Quoted(b"a@b".to_vec()),
            ]
        );
    }

    #[test]
    fn refuses_unbalanced() {
        assert_eq!(tokenize(b")a"), Err(LexError::Unbalanced(')')));
        assert_eq!(tokenize(b"a ]"), Err(LexError::Unbalanced(']')));
        // Inside an atom they are atom characters (the atom gets quoted).
        assert_eq!(tokenize(b"a)"), Ok(vec![Tok::Quoted(b"a)".to_vec())]));
        assert!(tokenize(b"(a").is_err());
        assert!(tokenize(b"\"a").is_err());
        assert!(tokenize(b"[a").is_err());
        assert!(tokenize(b"\"a\\").is_err());
    }

    #[test]
    fn utf8_stays_an_atom() {
        assert_eq!(
            tokenize("Jörg".as_bytes()).unwrap(),
            vec![Tok::Atom("Jörg".as_bytes().to_vec())]
        );
        assert_eq!(rendered("Jörg Müller <j@x>"), "Jörg Müller <j@x>\n");
    }

    #[test]
    fn spacing_like_qmail() {
        assert_eq!(rendered("a . b @ c ( x )"), "a.b@c ( x )\n");
        assert_eq!(rendered("g:a,b;"), "g: a, b;\n");
        assert_eq!(rendered("list: ;"), "list: ;\n");
    }

    #[test]
    fn folds_after_commas_at_80_columns() {
        let list: Vec<String> = (0..12).map(|i| format!("user{i}@example.com")).collect();
        let out = rendered(&list.join(","));
        for line in out.lines() {
            assert!(line.len() <= LINE_LEN, "{line:?}");
        }
        assert!(out.contains(",\n  user"), "{out}");
        assert_eq!(out.replace("\n ", ""), list.join(", ") + "\n");
    }
}
