//! RFC 5322 address lists (with RFC 822's obsolete forms) as qmail-inject
//! reads them: mailboxes bare (`a@b (Name)`) or in angle brackets
//! (`Name <a@b>`, with an obsolete source route `<@r1,@r2:a@b>`), groups
//! (`list: a@b, c@d;`), comments anywhere, quoted strings, domain literals,
//! spaces around dots (`a . b @ c`), empty list elements (`a,,b`).
//!
//! Like qmail-inject it forgives rather than refuses: words separated only
//! by a space are two addresses (`djb fred` is `djb, fred`), a group missing
//! its `;` ends at the end of the list, and comments inside or after a bare
//! address move behind it. It refuses what has no reading at all: an
//! unbalanced quote, bracket or parenthesis, `>` without `<`, a `;` outside
//! a group, a group inside a group.

use thiserror::Error;

use super::token::{Folder, LexError, Tok, render, tokenize};

/// A parsed address list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddrList(pub Vec<Entry>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Mailbox(Mailbox),
    Group(Group),
}

/// `phrase: members;` followed by comments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub phrase: Vec<Tok>,
    pub members: Vec<Mailbox>,
    pub comments: Vec<Tok>,
}

/// One address. `addr` holds the address proper (words, dots, `@` and, in
/// angle brackets, a source route); it may be empty (`<>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// `Some(phrase)` for the angle form `phrase <addr>` (the phrase may be
    /// empty), `None` for a bare `addr`.
    pub phrase: Option<Vec<Tok>>,
    pub addr: Vec<Tok>,
    /// Comments written inside or after the address, kept behind it.
    pub comments: Vec<Tok>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error(transparent)]
    Lex(#[from] LexError),
    #[error("'<' without '>'")]
    UnclosedAngle,
    #[error("'>' without '<'")]
    StrayGt,
    #[error("';' outside a group")]
    StraySemi,
    #[error("a group inside a group")]
    NestedGroup,
    #[error("unexpected {0:?}")]
    Unexpected(String),
}

impl AddrList {
    pub fn parse(s: &[u8]) -> Result<AddrList, ParseError> {
        Parser {
            toks: tokenize(s)?,
            i: 0,
        }
        .list()
    }

    /// Every mailbox, those in groups included, in order.
    pub fn mailboxes(&self) -> impl Iterator<Item = &Mailbox> {
        self.0.iter().flat_map(|e| match e {
            Entry::Mailbox(m) => std::slice::from_ref(m).iter(),
            Entry::Group(g) => g.members.iter(),
        })
    }

    /// Applies `f` to every mailbox's address.
    pub fn rewrite(&mut self, mut f: impl FnMut(&mut Vec<Tok>)) {
        for e in &mut self.0 {
            match e {
                Entry::Mailbox(m) => f(&mut m.addr),
                Entry::Group(g) => g.members.iter_mut().for_each(|m| f(&mut m.addr)),
            }
        }
    }

    /// The list as tokens, ready for [`render`].
    pub fn tokens(&self) -> Vec<Tok> {
        let mut out = Vec::new();
        for (n, e) in self.0.iter().enumerate() {
            if n > 0 {
                out.push(Tok::Comma);
            }
            match e {
                Entry::Mailbox(m) => m.tokens(&mut out),
                Entry::Group(g) => {
                    out.extend(g.phrase.iter().cloned());
                    out.push(Tok::Colon);
                    for (k, m) in g.members.iter().enumerate() {
                        if k > 0 {
                            out.push(Tok::Comma);
                        }
                        m.tokens(&mut out);
                    }
                    out.push(Tok::Semi);
                    out.extend(g.comments.iter().cloned());
                }
            }
        }
        out
    }

    /// A whole header field `NAME: list\n`, folded as qmail-inject folds.
    pub fn field(&self, name: &[u8]) -> Vec<u8> {
        let mut f = Folder::new();
        f.push(name);
        f.push(b":");
        let toks = self.tokens();
        if !toks.is_empty() {
            f.push(b" ");
            render(&toks, &mut f);
        }
        f.finish()
    }
}

impl Mailbox {
    fn tokens(&self, out: &mut Vec<Tok>) {
        match &self.phrase {
            Some(p) => {
                out.extend(p.iter().cloned());
                out.push(Tok::Lt);
                out.extend(self.addr.iter().cloned());
                out.push(Tok::Gt);
            }
            None => out.extend(self.addr.iter().cloned()),
        }
        out.extend(self.comments.iter().cloned());
    }

    /// The address as the envelope has it: quotes and comments gone.
    pub fn envelope_bytes(addr: &[Tok]) -> Vec<u8> {
        let mut v = Vec::new();
        for t in addr {
            match t {
                Tok::Atom(a) | Tok::Quoted(a) => v.extend_from_slice(a),
                Tok::Literal(l) => {
                    v.push(b'[');
                    v.extend_from_slice(l);
                    v.push(b']');
                }
                Tok::Dot => v.push(b'.'),
                Tok::At => v.push(b'@'),
                Tok::Comma => v.push(b','),
                Tok::Colon => v.push(b':'),
                Tok::Semi => v.push(b';'),
                Tok::Lt => v.push(b'<'),
                Tok::Gt => v.push(b'>'),
                Tok::Comment(_) => {}
            }
        }
        v
    }
}

struct Parser {
    toks: Vec<Tok>,
    i: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i)
    }

    fn list(mut self) -> Result<AddrList, ParseError> {
        let mut entries = Vec::new();
        loop {
            match self.peek() {
                None => break,
                Some(Tok::Comma) => self.i += 1,
                Some(Tok::Semi) => return Err(ParseError::StraySemi),
                Some(Tok::Gt) => return Err(ParseError::StrayGt),
                Some(_) if self.starts_group() => entries.push(Entry::Group(self.group()?)),
                Some(_) => entries.push(Entry::Mailbox(self.mailbox(false)?)),
            }
        }
        Ok(AddrList(entries))
    }

    /// A group starts here if a `:` comes before any `<`, `,`, `;` or `@`.
    fn starts_group(&self) -> bool {
        for t in &self.toks[self.i..] {
            match t {
                Tok::Colon => return true,
                Tok::Lt | Tok::Comma | Tok::Semi | Tok::At | Tok::Gt => return false,
                _ => {}
            }
        }
        false
    }

    fn group(&mut self) -> Result<Group, ParseError> {
        let mut phrase = Vec::new();
        while let Some(t) = self.peek() {
            if *t == Tok::Colon {
                break;
            }
            phrase.push(t.clone());
            self.i += 1;
        }
        self.i += 1; // the colon
        let mut members = Vec::new();
        loop {
            match self.peek() {
                // Obsolete and common: `undisclosed-recipients:` with no `;`.
                None => break,
                Some(Tok::Semi) => {
                    self.i += 1;
                    break;
                }
                Some(Tok::Comma) => self.i += 1,
                Some(Tok::Gt) => return Err(ParseError::StrayGt),
                Some(_) if self.starts_group() => return Err(ParseError::NestedGroup),
                Some(_) => members.push(self.mailbox(true)?),
            }
        }
        let mut comments = Vec::new();
        while let Some(c @ Tok::Comment(_)) = self.peek() {
            comments.push(c.clone());
            self.i += 1;
        }
        Ok(Group {
            phrase,
            members,
            comments,
        })
    }

    /// One mailbox, up to (not including) the `,` or `;` that ends it, or up
    /// to the word that starts the next one (a missing comma).
    fn mailbox(&mut self, in_group: bool) -> Result<Mailbox, ParseError> {
        if self.angle_ahead(in_group) {
            return self.angle_mailbox();
        }
        let mut addr: Vec<Tok> = Vec::new();
        let mut comments = Vec::new();
        while let Some(t) = self.peek() {
            match t {
                Tok::Comma | Tok::Semi => break,
                Tok::Comment(_) => comments.push(t.clone()),
                Tok::Gt => return Err(ParseError::StrayGt),
                Tok::Colon | Tok::Lt => return Err(ParseError::Unexpected(format!("{t:?}"))),
                t if t.is_word() && addr.last().is_some_and(Tok::is_word) => break,
                t => addr.push(t.clone()),
            }
            self.i += 1;
        }
        Ok(Mailbox {
            phrase: None,
            addr,
            comments,
        })
    }

    /// Whether a `<` comes before the end of this element.
    fn angle_ahead(&self, in_group: bool) -> bool {
        for t in &self.toks[self.i..] {
            match t {
                Tok::Lt => return true,
                Tok::Comma => return false,
                Tok::Semi if in_group => return false,
                _ => {}
            }
        }
        false
    }

    fn angle_mailbox(&mut self) -> Result<Mailbox, ParseError> {
        let mut phrase = Vec::new();
        while let Some(t) = self.peek() {
            if *t == Tok::Lt {
                break;
            }
            if !(t.is_word() || matches!(t, Tok::Comment(_) | Tok::Dot | Tok::At)) {
                return Err(ParseError::Unexpected(format!("{t:?}")));
            }
            phrase.push(t.clone());
            self.i += 1;
        }
        self.i += 1; // the '<'
        let mut addr = Vec::new();
        let mut comments = Vec::new();
        loop {
            match self.peek() {
                None => return Err(ParseError::UnclosedAngle),
                Some(Tok::Gt) => break,
                Some(Tok::Lt) => return Err(ParseError::Unexpected("<".into())),
                Some(Tok::Semi) => return Err(ParseError::UnclosedAngle),
                Some(c @ Tok::Comment(_)) => comments.push(c.clone()),
                Some(t) => addr.push(t.clone()),
            }
            self.i += 1;
        }
        self.i += 1; // the '>'
        while let Some(c @ Tok::Comment(_)) = self.peek() {
            comments.push(c.clone());
            self.i += 1;
        }
        Ok(Mailbox {
            phrase: Some(phrase),
            addr,
            comments,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn atom(s: &str) -> Tok {
        Tok::Atom(s.as_bytes().to_vec())
    }

    fn env(list: &AddrList) -> Vec<String> {
        list.mailboxes()
            .map(|m| String::from_utf8(Mailbox::envelope_bytes(&m.addr)).unwrap())
            .collect()
    }

    fn round(s: &str) -> String {
        let l = AddrList::parse(s.as_bytes()).unwrap();
        String::from_utf8(l.field(b"To")).unwrap()
    }

    #[test]
    fn the_forms_of_qmail_header_5() {
        let l = AddrList::parse(
            b"a@b, c@d (Somebody), A Person <e@f>,\n   random group: g@h, i@j;, k@l",
        )
        .unwrap();
        assert_eq!(env(&l), ["a@b", "c@d", "e@f", "g@h", "i@j", "k@l"]);
        assert_eq!(
            round("a@b, c@d (Somebody), A Person <e@f>,\n   random group: g@h, i@j;, k@l"),
            "To: a@b, c@d (Somebody), A Person <e@f>, random group: g@h, i@j;, k@l\n"
        );
    }

    #[test]
    fn obsolete_and_odd_forms() {
        // Spaces around dots, a source route, quoted local parts, literals.
        let l = AddrList::parse(br#"a . b @ c . d, <@r1,@r2:x@y>, "j q"@e, u@[1.2.3.4]"#).unwrap();
        assert_eq!(env(&l), ["a.b@c.d", "@r1,@r2:x@y", "j q@e", "u@[1.2.3.4]"]);
        // Illegal spaces become commas; empty elements vanish.
        assert_eq!(round("djb fred"), "To: djb, fred\n");
        assert_eq!(round("a,,b, ,"), "To: a, b\n");
        // Comments move behind a bare address.
        assert_eq!(round("(x) a (y) @ b"), "To: a@b (x) (y)\n");
        // A phrase may hold dots (John Q. Public) and a quoted string.
        assert_eq!(
            round(r#"John Q. Public <jqp@x>, "Doe, J" <d@x>"#),
            r#"To: John Q.Public <jqp@x>, "Doe, J" <d@x>"#.to_string() + "\n"
        );
        assert_eq!(round("<>"), "To: <>\n");
        assert_eq!(
            round("undisclosed-recipients:"),
            "To: undisclosed-recipients: ;\n"
        );
        assert_eq!(round(""), "To:\n");
    }

    #[test]
    fn refusals() {
        for bad in [
            ")a",
            "<a@b",
            "a@b>",
            "a;b",
            "g: h: x;;",
            "\"open",
            "a <b <c>>",
        ] {
            assert!(AddrList::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    // --- property tests -------------------------------------------------

    fn word() -> impl Strategy<Value = Tok> {
        prop_oneof![
            4 => "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,8}".prop_map(|s| atom(&s)),
            1 => "[a-zé]{1,4}ö".prop_map(|s| atom(&s)),
            1 => proptest::collection::vec(any::<u8>().prop_filter("no CR/LF", |c| *c != b'\r' && *c != b'\n'), 0..8)
                .prop_map(Tok::Quoted),
        ]
    }

    fn comment() -> impl Strategy<Value = Tok> {
        "[a-z ]{0,6}".prop_map(|s| Tok::Comment(s.into_bytes()))
    }

    fn addr() -> impl Strategy<Value = Vec<Tok>> {
        (
            proptest::collection::vec(word(), 1..3),
            proptest::option::of(prop_oneof![
                "[a-z]{1,6}(\\.[a-z]{1,6}){0,2}".prop_map(|d| {
                    let mut v = Vec::new();
                    for (k, part) in d.split('.').enumerate() {
                        if k > 0 {
                            v.push(Tok::Dot);
                        }
                        v.push(atom(part));
                    }
                    v
                }),
                "[0-9.]{1,9}".prop_map(|l| vec![Tok::Literal(l.into_bytes())]),
            ]),
        )
            .prop_map(|(local, domain)| {
                let mut v = Vec::new();
                for (k, w) in local.into_iter().enumerate() {
                    if k > 0 {
                        v.push(Tok::Dot);
                    }
                    v.push(w);
                }
                if let Some(d) = domain {
                    v.push(Tok::At);
                    v.extend(d);
                }
                v
            })
    }

    fn mailbox() -> impl Strategy<Value = Mailbox> {
        (
            proptest::option::of(proptest::collection::vec(
                prop_oneof![3 => word(), 1 => comment()],
                0..3,
            )),
            prop_oneof![4 => addr(), 1 => Just(Vec::new())],
            proptest::collection::vec(comment(), 0..2),
        )
            .prop_map(|(phrase, addr, comments)| {
                // `<>` needs its brackets.
                let phrase = if addr.is_empty() {
                    Some(phrase.unwrap_or_default())
                } else {
                    phrase
                };
                Mailbox {
                    phrase,
                    addr,
                    comments,
                }
            })
    }

    fn entry() -> impl Strategy<Value = Entry> {
        prop_oneof![
            4 => mailbox().prop_map(Entry::Mailbox),
            1 => (
                proptest::collection::vec(word(), 1..3),
                proptest::collection::vec(mailbox(), 0..3),
                proptest::collection::vec(comment(), 0..2),
            )
                .prop_map(|(phrase, members, comments)| Entry::Group(Group {
                    phrase,
                    members,
                    comments
                })),
        ]
    }

    proptest! {
        /// Writing a list and reading it back gives the same list.
        #[test]
        fn round_trip(entries in proptest::collection::vec(entry(), 0..6)) {
            let list = AddrList(entries);
            let field = list.field(b"To");
            let value = &field[3..];
            let back = AddrList::parse(value);
            prop_assert_eq!(back.as_ref(), Ok(&list), "{}", String::from_utf8_lossy(&field));
            // And the field is folded: no line past 80 columns unless one
            // address alone is that long.
            let longest = list.tokens().iter().map(|t| match t {
                Tok::Atom(a) | Tok::Quoted(a) | Tok::Literal(a) | Tok::Comment(a) => a.len() * 2 + 2,
                _ => 1,
            }).sum::<usize>();
            for line in field.split(|c| *c == b'\n') {
                prop_assert!(line.len() <= 80 || line.len() <= longest + 4);
            }
        }

        /// Arbitrary bytes never panic the parser, and whatever it accepts
        /// it can write out and read back the same.
        #[test]
        fn arbitrary_bytes(s in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(list) = AddrList::parse(&s) {
                let field = list.field(b"To");
                prop_assert_eq!(AddrList::parse(&field[3..]), Ok(list));
            }
        }

        /// Bytes drawn mostly from the specials hit the parser's corners.
        #[test]
        fn arbitrary_specials(s in "[a@<>:;,.()\"\\[\\] \\\\]{0,40}") {
            if let Ok(list) = AddrList::parse(s.as_bytes()) {
                let field = list.field(b"To");
                prop_assert_eq!(AddrList::parse(&field[3..]), Ok(list));
            }
        }
    }
}
