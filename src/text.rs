//! What the crate's JSON readers keep of a value, on miniserde's own parser: `Leaf`, a
//! JSON value as the parsers that read only the fields they know (the token response, JWT
//! claims, a JWS header, a JWK) keep it, and `Skip` for what they don't.

use miniserde::de::{Map, Seq, Visitor};

/// A JSON value as far as the parsers look at it (the token response, JWT claims): strings,
/// numbers and arrays of strings are kept; other arrays and objects are skipped without
/// being stored, so no `BTreeMap` and no deep structure is built, and miniserde drives it
/// without recursion.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Leaf {
    Null,
    Bool,
    Str(String),
    U64(u64),
    I64(i64),
    F64(f64),
    /// An array whose elements are all strings (a JWT's `aud`).
    Strs(Vec<String>),
    /// Any other array, or an object.
    Nested,
}

/// A `Leaf` is its own visitor: the slot is filled with `Null` first and overwritten by
/// whatever value comes.
impl Visitor for Leaf {
    fn null(&mut self) -> miniserde::Result<()> {
        *self = Leaf::Null;
        Ok(())
    }

    fn boolean(&mut self, _: bool) -> miniserde::Result<()> {
        *self = Leaf::Bool;
        Ok(())
    }

    fn string(&mut self, s: &str) -> miniserde::Result<()> {
        *self = Leaf::Str(s.to_owned());
        Ok(())
    }

    fn negative(&mut self, n: i64) -> miniserde::Result<()> {
        *self = Leaf::I64(n);
        Ok(())
    }

    fn nonnegative(&mut self, n: u64) -> miniserde::Result<()> {
        *self = Leaf::U64(n);
        Ok(())
    }

    fn float(&mut self, n: f64) -> miniserde::Result<()> {
        *self = Leaf::F64(n);
        Ok(())
    }

    fn seq(&mut self) -> miniserde::Result<Box<dyn Seq + '_>> {
        Ok(Box::new(Strings {
            leaf: self,
            list: Vec::new(),
            element: None,
            all_strings: true,
        }))
    }

    fn map(&mut self) -> miniserde::Result<Box<dyn Map + '_>> {
        *self = Leaf::Nested;
        Ok(Box::new(Skip))
    }
}

/// The elements of an array, kept while they are all strings; the array becomes `Strs` or
/// `Nested` when it ends.
struct Strings<'a> {
    leaf: &'a mut Leaf,
    list: Vec<String>,
    /// The element being read, once the first has begun (an element that is an array or
    /// object itself is skipped as `Nested`, never stored).
    element: Option<Leaf>,
    all_strings: bool,
}

impl Strings<'_> {
    /// Moves the element just read, if any, into the list.
    fn take_element(&mut self) {
        match self.element.take() {
            None => {}
            Some(Leaf::Str(s)) if self.all_strings => self.list.push(s),
            Some(_) => {
                self.all_strings = false;
                self.list = Vec::new();
            }
        }
    }
}

impl Seq for Strings<'_> {
    fn element(&mut self) -> miniserde::Result<&mut dyn Visitor> {
        self.take_element();
        Ok(self.element.insert(Leaf::Null))
    }

    fn finish(&mut self) -> miniserde::Result<()> {
        self.take_element();
        *self.leaf = if self.all_strings {
            Leaf::Strs(std::mem::take(&mut self.list))
        } else {
            Leaf::Nested
        };
        Ok(())
    }
}

/// A JSON object read into [`Leaf`] slots by name (a JWS header, a JWK):
/// a name `slot` does not know is skipped; one that comes again keeps its first value, and
/// `repeated` is told.
pub(crate) trait LeafFields {
    fn slot(&mut self, name: &str) -> Option<&mut Option<Leaf>>;

    fn repeated(&mut self) {}
}

/// The `Map` that fills a [`LeafFields`]: what its `Visitor::map` returns.
pub(crate) struct LeafFieldsMap<'a, T>(pub(crate) &'a mut T);

impl<T: LeafFields> Map for LeafFieldsMap<'_, T> {
    fn key(&mut self, name: &str) -> miniserde::Result<&mut dyn Visitor> {
        if self.0.slot(name).is_some_and(|slot| slot.is_some()) {
            self.0.repeated();
            return Ok(<dyn Visitor>::ignore());
        }
        Ok(match self.0.slot(name) {
            Some(slot) => slot.insert(Leaf::Null),
            None => <dyn Visitor>::ignore(),
        })
    }

    fn finish(&mut self) -> miniserde::Result<()> {
        Ok(())
    }
}

/// Declares the names a [`Members`] reader keeps, as the array `$names`, and for each a
/// constant holding its place in that array: the places can't drift from the names.
macro_rules! member_names {
    ($names:ident: $($place:ident = $name:literal),+ $(,)?) => {
        const $names: [&str; [$($name),+].len()] = [$($name),+];
        $crate::text::member_names!(@place 0, $($place),+);
    };
    (@place $at:expr, $first:ident $(, $rest:ident)*) => {
        const $first: usize = $at;
        $crate::text::member_names!(@place $at + 1, $($rest),*);
    };
    (@place $at:expr,) => {};
}
pub(crate) use member_names;

/// The members of a JSON object that a reader keeps, by name (the token response's fields,
/// a JWT's claims): each name's value as a [`Leaf`] at that name's place in `names`, and
/// the first name that came twice. A name not in `names` is skipped; with `others_are`, its
/// name is noted, so that it coming twice counts too. Each reader names its members with
/// constants, their places in its `names`.
///
/// One reader for them all: each with a struct and a visitor of its own linked its own
/// copy of the visitor and of the drop of its nine `Leaf`s, 3 KB in all. Both read nine
/// names, so `N` makes one copy.
pub(crate) struct Members<const N: usize> {
    names: &'static [&'static str; N],
    values: [Option<Leaf>; N],
    /// What `twice` says of another member that comes twice; `None`: they are not noted.
    others_are: Option<&'static str>,
    /// The names of the other members, to see one come again: made at the first one.
    others: Option<std::collections::HashSet<String>>,
    /// The first member that came twice: its name, or `others_are` for another one.
    pub(crate) twice: Option<&'static str>,
}

impl<const N: usize> Members<N> {
    /// Nothing read yet of the members `names`; with `others_are`, the other members'
    /// names are noted, and one twice is `twice` as `others_are`.
    pub(crate) fn new(names: &'static [&'static str; N], others_are: Option<&'static str>) -> Self {
        Members {
            names,
            values: [const { None }; N],
            others_are,
            others: None,
            twice: None,
        }
    }

    /// The value of the member at `i` in `names`, if it came.
    pub(crate) fn get(&self, i: usize) -> &Option<Leaf> {
        &self.values[i]
    }

    /// The value of the member at `i` in `names`, taken out.
    pub(crate) fn take(&mut self, i: usize) -> Option<Leaf> {
        self.values[i].take()
    }
}

impl<const N: usize> Visitor for Members<N> {
    fn map(&mut self) -> miniserde::Result<Box<dyn Map + '_>> {
        Ok(Box::new(MembersMap(self)))
    }
}

/// The `Map` that fills [`Members`]: a member we keep into its slot, every other one
/// skipped once its name is noted (miniserde hands over each name unescaped, so
/// `"\u0065xp"` is `exp` here too).
struct MembersMap<'a, const N: usize>(&'a mut Members<N>);

impl<const N: usize> Map for MembersMap<'_, N> {
    fn key(&mut self, name: &str) -> miniserde::Result<&mut dyn Visitor> {
        let m = &mut *self.0;
        let again = match m.names.iter().position(|known| *known == name) {
            Some(i) if m.values[i].is_none() => return Ok(m.values[i].insert(Leaf::Null)),
            Some(i) => Some(m.names[i]),
            None => m
                .others_are
                .filter(|_| !m.others.get_or_insert_default().insert(name.to_owned())),
        };
        m.twice = m.twice.or(again);
        Ok(<dyn Visitor>::ignore())
    }

    fn finish(&mut self) -> miniserde::Result<()> {
        Ok(())
    }
}

/// The inside of an array or object we don't look into. miniserde drives it without
/// recursion, so no depth of nesting can overflow the stack.
pub(crate) struct Skip;

impl Seq for Skip {
    fn element(&mut self) -> miniserde::Result<&mut dyn Visitor> {
        Ok(<dyn Visitor>::ignore())
    }

    fn finish(&mut self) -> miniserde::Result<()> {
        Ok(())
    }
}

impl Map for Skip {
    fn key(&mut self, _: &str) -> miniserde::Result<&mut dyn Visitor> {
        Ok(<dyn Visitor>::ignore())
    }

    fn finish(&mut self) -> miniserde::Result<()> {
        Ok(())
    }
}
