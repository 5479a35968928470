//! Deserialising the configuration straight from the YAML parser's events,
//! exactly as if from the `serde_yaml::Value` tree of the same text, but
//! without building that tree.
//!
//! Why: the tree of a large configuration costs memory on top of the
//! parser's events (at the peak, 33 times the text through the tree, 27
//! without it; tests/config_memory.rs) and a second walk. Why not
//! serde_yaml's own deserialiser: it reads what a type asks for rather than
//! what the YAML says, so `args: [-m, 512]` would make `"512"` of the
//! integer and `eal: ~` an empty mapping, where the rules (and the
//! messages pinned by the config tests) are the tree's: a plain `512` is an
//! integer, `~` is null.
//!
//! [`Tree`] wraps a deserialiser and answers every request as
//! `serde_yaml::Value`'s deserialiser would: it asks the YAML what the node
//! is (`deserialize_any`, which resolves plain scalars as the tree does)
//! and then serves or refuses the request by the tree's rules, with the
//! tree's error for a mismatch. It also keeps the first error message as
//! raised, before serde_yaml prefixes the path and appends the position:
//! the config's errors place both themselves.

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IgnoredAny, IntoDeserializer, MapAccess,
    SeqAccess, Unexpected, VariantAccess, Visitor,
};
use std::cell::RefCell;
use std::fmt;

/// The first error raised while deserialising: a visitor's message, bare,
/// or the parser's own error (syntax, recursion limit), which the caller
/// reads from the error serde_yaml returns.
#[derive(Default)]
pub(crate) struct FirstError(RefCell<First>);

#[derive(Default)]
enum First {
    #[default]
    None,
    Message(String),
    Parser,
}

impl FirstError {
    /// Keeps the error of a visitor, unless one came first.
    fn keep<T, E: de::Error>(&self, result: Result<T, E>) -> Result<T, E> {
        if let Err(err) = &result {
            let mut first = self.0.borrow_mut();
            if matches!(*first, First::None) {
                *first = First::Message(err.to_string());
            }
        }
        result
    }

    /// Notes an error out of the parser itself, unless one came first: an
    /// error of the deserialiser that no visitor below raised.
    fn parser<T, E>(&self, result: Result<T, E>) -> Result<T, E> {
        if result.is_err() {
            let mut first = self.0.borrow_mut();
            if matches!(*first, First::None) {
                *first = First::Parser;
            }
        }
        result
    }

    /// The message of the visitor that refused first; none when the parser
    /// did.
    pub(crate) fn take(&self) -> Option<String> {
        match std::mem::take(&mut *self.0.borrow_mut()) {
            First::Message(message) => Some(message),
            First::None | First::Parser => None,
        }
    }
}

/// A deserialiser that serves requests by the rules of `serde_yaml::Value`.
pub(crate) struct Tree<'f, D> {
    de: D,
    first: &'f FirstError,
}

impl<'f, D> Tree<'f, D> {
    pub(crate) fn new(de: D, first: &'f FirstError) -> Self {
        Tree { de, first }
    }
}

/// What was asked of a node, by the tree's dispatch.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ask {
    Any,
    Bool,
    Number,
    String,
    /// Bytes: a string or a sequence.
    Bytes,
    Unit,
    Seq,
    Map,
    Enum,
}

impl<'f, D> Tree<'f, D> {
    fn ask<'de, V: Visitor<'de>>(self, ask: Ask, visitor: V) -> Result<V::Value, D::Error>
    where
        D: Deserializer<'de>,
    {
        let first = self.first;
        first.parser(self.de.deserialize_any(Node {
            ask,
            visitor,
            first,
        }))
    }
}

macro_rules! ask {
    ($($method:ident => $ask:ident),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.ask(Ask::$ask, visitor)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Tree<'_, D> {
    type Error = D::Error;

    ask!(
        deserialize_any => Any,
        deserialize_bool => Bool,
        deserialize_i8 => Number,
        deserialize_i16 => Number,
        deserialize_i32 => Number,
        deserialize_i64 => Number,
        deserialize_i128 => Number,
        deserialize_u8 => Number,
        deserialize_u16 => Number,
        deserialize_u32 => Number,
        deserialize_u64 => Number,
        deserialize_u128 => Number,
        deserialize_f32 => Number,
        deserialize_f64 => Number,
        deserialize_char => String,
        deserialize_str => String,
        deserialize_string => String,
        deserialize_identifier => String,
        deserialize_bytes => Bytes,
        deserialize_byte_buf => Bytes,
        deserialize_unit => Unit,
        deserialize_seq => Seq,
        deserialize_map => Map,
    );

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        // serde_yaml's own test for null is the tree's `Value::Null`.
        let first = self.first;
        first.parser(self.de.deserialize_option(Optional { visitor, first }))
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.ask(Ask::Unit, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let first = self.first;
        first.keep(visitor.visit_newtype_struct(self))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.ask(Ask::Seq, visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.ask(Ask::Seq, visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.ask(Ask::Map, visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.ask(Ask::Enum, visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.first.parser(self.de.deserialize_ignored_any(visitor))
    }
}

/// A node as the YAML resolves it, served to `visitor` as `ask` asked.
struct Node<'f, V> {
    ask: Ask,
    visitor: V,
    first: &'f FirstError,
}

impl<'f, V> Node<'f, V> {
    /// The tree's refusal of a node it cannot serve as asked.
    fn refuse<'de, T, E: de::Error>(self, found: Unexpected<'_>) -> Result<T, E>
    where
        V: Visitor<'de>,
    {
        let err = if self.ask == Ask::Enum {
            E::invalid_type(found, &"a Value::Tagged enum")
        } else {
            E::invalid_type(found, &self.visitor)
        };
        self.first.keep(Err(err))
    }
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Node<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        let first = self.first;
        match self.ask {
            Ask::Any | Ask::Unit => first.keep(self.visitor.visit_unit()),
            // The tree reads null as an empty list or mapping.
            Ask::Seq => first.keep(self.visitor.visit_seq(Empty(std::marker::PhantomData))),
            Ask::Map => first.keep(self.visitor.visit_map(Empty(std::marker::PhantomData))),
            _ => self.refuse(Unexpected::Unit),
        }
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.visit_unit()
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<V::Value, E> {
        match self.ask {
            Ask::Any | Ask::Bool => self.first.keep(self.visitor.visit_bool(value)),
            _ => self.refuse(Unexpected::Bool(value)),
        }
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<V::Value, E> {
        match self.ask {
            Ask::Any | Ask::Number => self.first.keep(self.visitor.visit_u64(value)),
            _ => self.refuse(Unexpected::Unsigned(value)),
        }
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<V::Value, E> {
        match self.ask {
            Ask::Any | Ask::Number => self.first.keep(self.visitor.visit_i64(value)),
            _ => self.refuse(Unexpected::Signed(value)),
        }
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<V::Value, E> {
        match self.ask {
            Ask::Any | Ask::Number => self.first.keep(self.visitor.visit_f64(value)),
            _ => self.refuse(Unexpected::Float(value)),
        }
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<V::Value, E> {
        let first = self.first;
        match self.ask {
            Ask::Any | Ask::String | Ask::Bytes => first.keep(self.visitor.visit_str(value)),
            Ask::Enum => first.keep(self.visitor.visit_enum(value.into_deserializer())),
            _ => self.refuse(Unexpected::Str(value)),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        let first = self.first;
        match self.ask {
            Ask::Any | Ask::Seq | Ask::Bytes => {
                first.keep(self.visitor.visit_seq(Elements { seq, first }))
            }
            _ => self.refuse(Unexpected::Seq),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        let first = self.first;
        match self.ask {
            Ask::Any | Ask::Map => first.keep(self.visitor.visit_map(Entries { map, first })),
            _ => self.refuse(Unexpected::Map),
        }
    }

    /// A tagged node (`!tag value`): the tree serves its value for any
    /// request but `deserialize_any` and `deserialize_enum`, which take the
    /// tag as the variant.
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        let first = self.first;
        if matches!(self.ask, Ask::Any | Ask::Enum) {
            return first.keep(self.visitor.visit_enum(data));
        }
        let (_tag, value) = data.variant::<IgnoredAny>()?;
        value.newtype_variant_seed(Seed {
            ask: self.ask,
            visitor: self.visitor,
            first,
        })
    }
}

/// Serves a node to a visitor, for a tagged node's value.
struct Seed<'f, V> {
    ask: Ask,
    visitor: V,
    first: &'f FirstError,
}

impl<'de, V: Visitor<'de>> DeserializeSeed<'de> for Seed<'_, V> {
    type Value = V::Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        Tree::new(de, self.first).ask(self.ask, self.visitor)
    }
}

/// `deserialize_option`'s answer, the value inside served by the tree.
struct Optional<'f, V> {
    visitor: V,
    first: &'f FirstError,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Optional<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.first.keep(self.visitor.visit_none())
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.first.keep(self.visitor.visit_none())
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        let first = self.first;
        first.keep(self.visitor.visit_some(Tree::new(de, first)))
    }
}

/// A sequence whose elements are served by the tree.
struct Elements<'f, A> {
    seq: A,
    first: &'f FirstError,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Elements<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.first.parser(self.seq.next_element_seed(Wrapped {
            seed,
            first: self.first,
        }))
    }

    fn size_hint(&self) -> Option<usize> {
        self.seq.size_hint()
    }
}

/// A mapping whose keys and values are served by the tree.
struct Entries<'f, A> {
    map: A,
    first: &'f FirstError,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Entries<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.first.parser(self.map.next_key_seed(Wrapped {
            seed,
            first: self.first,
        }))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.first.parser(self.map.next_value_seed(Wrapped {
            seed,
            first: self.first,
        }))
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

/// A seed given a [`Tree`] instead of the deserialiser it is handed.
struct Wrapped<'f, T> {
    seed: T,
    first: &'f FirstError,
}

impl<'de, T: DeserializeSeed<'de>> DeserializeSeed<'de> for Wrapped<'_, T> {
    type Value = T::Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<T::Value, D::Error> {
        self.seed.deserialize(Tree::new(de, self.first))
    }
}

/// The empty list or mapping the tree makes of null.
struct Empty<E>(std::marker::PhantomData<E>);

impl<'de, E: de::Error> SeqAccess<'de> for Empty<E> {
    type Error = E;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, _: T) -> Result<Option<T::Value>, E> {
        Ok(None)
    }
}

impl<'de, E: de::Error> MapAccess<'de> for Empty<E> {
    type Error = E;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, _: K) -> Result<Option<K::Value>, E> {
        Ok(None)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, _: T) -> Result<T::Value, E> {
        Err(E::custom("a value without a key"))
    }
}

/// What reading `text` into a `serde_yaml::Value` would refuse (a syntax
/// error anywhere, a key given twice in a mapping, more than one
/// document), with the same error, without keeping the tree. The tree
/// finds these before deserialising anything, so a refusal reports them
/// first whatever else is wrong.
pub(crate) fn check_document(text: &str) -> Result<(), serde_yaml::Error> {
    <Checked as de::Deserialize>::deserialize(serde_yaml::Deserializer::from_str(text)).map(drop)
}

/// A node walked as `serde_yaml::Value` reads it, keeping nothing.
struct Checked;

impl<'de> de::Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_any(Checked)
    }
}

/// A mapping key as the tree compares keys; lists and mappings as keys are
/// not compared.
#[derive(PartialEq)]
enum Key {
    Null,
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    Float(u64),
    String(String),
    Complex,
}

impl fmt::Display for Key {
    /// As serde_yaml's duplicate-key error words it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Null => f.write_str("with null key"),
            Key::Bool(value) => write!(f, "with key `{value}`"),
            Key::Unsigned(value) => write!(f, "with key {value}"),
            Key::Signed(value) => write!(f, "with key {value}"),
            Key::Float(bits) => write!(f, "with key {}", f64::from_bits(*bits)),
            Key::String(value) => write!(f, "with key {value:?}"),
            Key::Complex => f.write_str("in YAML map"),
        }
    }
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_any(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Key, E> {
        Ok(Key::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Key, E> {
        Ok(Key::Null)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Key, E> {
        Ok(Key::Bool(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Key, E> {
        Ok(Key::Unsigned(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Key, E> {
        Ok(Key::Signed(value))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Key, E> {
        Ok(Key::Float(value.to_bits()))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Key, E> {
        Ok(Key::String(value.to_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Key, A::Error> {
        Checked.visit_seq(seq).map(|_| Key::Complex)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Key, A::Error> {
        Checked.visit_map(map).map(|_| Key::Complex)
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Key, A::Error> {
        Checked.visit_enum(data).map(|_| Key::Complex)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_none<E: de::Error>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        let mut keys = Vec::new();
        while let Some(key) = map.next_key::<Key>()? {
            if key != Key::Complex && keys.contains(&key) {
                return Err(de::Error::custom(format_args!("duplicate entry {key}")));
            }
            map.next_value::<Checked>()?;
            keys.push(key);
        }
        Ok(Checked)
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Checked, A::Error> {
        let (_tag, value) = data.variant::<IgnoredAny>()?;
        value.newtype_variant::<Checked>()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{error, parse_on, Config, ConfigError, CpuList, HostCpus};

    /// What `parse_on` said when it went through `serde_yaml::Value`: the
    /// reference [`Tree`] must agree with.
    fn through_the_tree(text: &str, file: &str, cpus: &HostCpus) -> Result<Config, ConfigError> {
        let tree: serde_yaml::Value = serde_yaml::from_str(text).map_err(|err| {
            let (reason, position) = error::yaml_syntax(&err);
            ConfigError::new(file, String::new(), reason).at(position)
        })?;
        if tree.is_null() {
            return Err(ConfigError::new(
                file,
                String::new(),
                "the file is empty; it needs at least `ports` and `workers`".to_owned(),
            ));
        }
        let config: Config = serde_path_to_error::deserialize(tree).map_err(|err| {
            let reworded = error::reword(error::key_path(err.path()), &err.inner().to_string());
            let position = error::locate(text, &reworded.position_of, reworded.at_key);
            ConfigError::new(file, reworded.key_path, reworded.reason).at(position)
        })?;
        config.validate_on(cpus).map_err(|err| {
            let position = error::locate(text, &err.key_path, false);
            ConfigError::new(file, err.key_path, err.reason).at(position)
        })?;
        Ok(config)
    }

    const REFERENCE: &str = include_str!("../../../conf/rvs.yaml");

    /// Values put in place of every scalar of the reference config in turn:
    /// each YAML kind, in and out of every key's range.
    const VALUES: &[&str] = &[
        "~",
        "null",
        "",
        "\"\"",
        "512",
        "-1",
        "1.5",
        "70000",
        "4294967296",
        "true",
        "off",
        "[1, 2]",
        "[]",
        "{}",
        "{ a: 1 }",
        "!tag 5",
        "!!str 5",
        "\"quoted\"",
        "'80'",
        "0x10",
        "10.99.2.300",
        "10.99.1.0/24",
        "tcp",
        "rr",
        "&a 1",
        "*a",
        "[",
        "{ x",
        ": :",
    ];

    #[test]
    fn events_are_read_as_the_value_tree_reads_them() {
        let list = CpuList::parse("0-3").unwrap();
        let cpus = HostCpus {
            online: list.clone(),
            allowed: list,
        };
        let mut texts = vec![
            REFERENCE.to_owned(),
            String::new(),
            "# nothing\n".to_owned(),
            "~\n".to_owned(),
            "[]\n".to_owned(),
            "5\n".to_owned(),
            "a: 1\n---\nb: 2\n".to_owned(),
        ];
        // Every key of the reference, without its comments.
        let lines: Vec<&str> = REFERENCE
            .lines()
            .filter(|line| !line.trim().is_empty() && !line.trim().starts_with('#'))
            .collect();
        for (index, line) in lines.iter().enumerate() {
            let Some((key, _)) = line.split_once(": ") else {
                continue;
            };
            let mut edit = |replacement: String| {
                let mut changed = lines.clone();
                changed[index] = &replacement;
                texts.push(changed.join("\n") + "\n");
            };
            for value in VALUES {
                edit(format!("{key}: {value}"));
            }
            // The same key twice, and a key no mapping takes.
            edit(format!("{line}\n{line}"));
            edit(format!("{key}_typo: 1"));
            edit(format!(
                "{}1: 1",
                &key[..key.len() - key.trim_start().len()]
            ));
        }
        let mut differences = Vec::new();
        for text in &texts {
            let events = parse_on(text, "x.yaml", &cpus);
            let tree = through_the_tree(text, "x.yaml", &cpus);
            let same = match (&events, &tree) {
                (Ok(a), Ok(b)) => a == b,
                (Err(a), Err(b)) => a.to_string() == b.to_string(),
                _ => false,
            };
            if !same {
                let show = |r: &Result<Config, ConfigError>| match r {
                    Ok(_) => "accepted".to_owned(),
                    Err(err) => err.to_string(),
                };
                differences.push(format!(
                    "events: {}\ntree:   {}\n",
                    show(&events),
                    show(&tree)
                ));
            }
        }
        assert!(texts.len() > 1000, "{} texts", texts.len());
        assert!(
            differences.is_empty(),
            "{} of {} differ:\n{}",
            differences.len(),
            texts.len(),
            differences.join("\n")
        );
    }
}
