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

/// A JSON object read into [`Leaf`] slots by name (a JWT's claims, a JWS header, a JWK):
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
