//! Config errors for people: the file, where in it (line and column when
//! known), the key path and the reason.
//!
//! Deserialisation reads the YAML as its value tree would (see `tree`, which
//! does so without building the tree) so that each error gets all three:
//! what the YAML itself breaks (syntax, a key twice) comes with the
//! parser's position; anything else comes through `serde_path_to_error`
//! (the key path) with serde's bare message, which [`reword`] turns into
//! something a person can act on. The position of a key path, for those
//! errors and for the semantic ones of validation, is found by [`locate`],
//! which walks the text once more down that path.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::io;

/// Why a config file was refused.
///
/// Displays as `FILE[:LINE:COLUMN]: [KEY.PATH: ]REASON`, e.g.
/// `conf/x.yaml:12:7: services[0].reals[1].address: invalid IPv4 address "10.0.0.300"`.
#[derive(Debug)]
pub struct ConfigError {
    file: String,
    line_column: Option<(usize, usize)>,
    key_path: String,
    reason: String,
    io: Option<io::Error>,
}

impl ConfigError {
    pub(crate) fn new(file: &str, key_path: String, reason: String) -> Self {
        ConfigError {
            file: file.to_owned(),
            line_column: None,
            key_path,
            reason,
            io: None,
        }
    }

    pub(crate) fn unreadable(file: &str, err: io::Error) -> Self {
        ConfigError {
            reason: format!("cannot read: {err}"),
            io: Some(err),
            ..ConfigError::new(file, String::new(), String::new())
        }
    }

    pub(crate) fn at(mut self, line_column: Option<(usize, usize)>) -> Self {
        self.line_column = line_column;
        self
    }

    /// The file as named by the caller of [`super::load`] or [`super::parse`].
    pub fn file(&self) -> &str {
        &self.file
    }

    /// 1-based line and column, where the error could be placed in the text.
    pub fn line_column(&self) -> Option<(usize, usize)> {
        self.line_column
    }

    /// Dotted key path with `[i]` list indices, e.g. `services[0].reals[1].weight`;
    /// empty for errors about the whole file (unreadable, YAML syntax).
    pub fn key_path(&self) -> &str {
        &self.key_path
    }

    /// What is wrong, without file, position or key path.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some((line, column)) = self.line_column {
            write!(f, ":{line}:{column}")?;
        }
        f.write_str(": ")?;
        if !self.key_path.is_empty() {
            write!(f, "{}: ", self.key_path)?;
        }
        f.write_str(&self.reason)
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.io.as_ref().map(|err| err as _)
    }
}

/// A semantic error found by [`super::Config::validate`]: a key path and a
/// reason, not yet tied to a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationError {
    pub(crate) key_path: String,
    pub(crate) reason: String,
}

impl ValidationError {
    pub fn key_path(&self) -> &str {
        &self.key_path
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key_path, self.reason)
    }
}

impl std::error::Error for ValidationError {}

/// The YAML parser's message without its trailing " at line L column C" (the
/// position is shown in front instead) and its position.
pub(crate) fn yaml_syntax(err: &serde_yaml::Error) -> (String, Option<(usize, usize)>) {
    let mut message = err.to_string();
    let location = err.location().map(|l| (l.line(), l.column()));
    if let Some((line, column)) = location {
        message = message.replacen(&format!(" at line {line} column {column}"), "", 1);
    }
    (message, location)
}

/// The key path of a deserialisation error, in the same notation as the
/// validation errors: `services[0].reals[1].address`.
pub(crate) fn key_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => out.push_str(if out.is_empty() { "?" } else { ".?" }),
        }
    }
    out
}

/// What an error from serde becomes: the key path it belongs to, the reason,
/// and where to point: the node at `position_of` (an empty path: nowhere),
/// at its key rather than its value when `at_key`.
pub(crate) struct Reworded {
    pub key_path: String,
    pub reason: String,
    pub position_of: String,
    pub at_key: bool,
}

/// Turns serde's generic messages ("unknown field `x`, expected one of `a`,
/// `b`", "invalid type: string \"x\", expected u16", "missing field `x`")
/// into the config's vocabulary (keys, lists, mappings, ranges). Messages
/// written by this crate's own `Deserialize` impls pass through unchanged.
pub(crate) fn reword(key_path: String, message: &str) -> Reworded {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((key, expected)) = rest.split_once('`') {
            let expected = expected.trim_start_matches(", ").replace('`', "");
            let expected = if expected == "there are no fields" {
                "this mapping takes no keys".to_owned()
            } else {
                expected
            };
            // serde_path_to_error's path ends at the mapping; the unknown key
            // is the more useful place to point at.
            let key_path = if key_path.is_empty() {
                key.to_owned()
            } else if key_path.ends_with(&format!(".{key}")) || key_path == key {
                key_path
            } else {
                format!("{key_path}.{key}")
            };
            return Reworded {
                position_of: key_path.clone(),
                key_path,
                reason: format!("unknown key `{key}`; {expected}"),
                at_key: true,
            };
        }
    }
    if let Some(key) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        // Point at the mapping that lacks the key, unless that is the whole file.
        return Reworded {
            key_path: if key_path.is_empty() {
                key.to_owned()
            } else {
                format!("{key_path}.{key}")
            },
            reason: format!("required key `{key}` is missing"),
            position_of: key_path,
            at_key: false,
        };
    }
    let reason = if let Some(rest) = message.strip_prefix("invalid type: ") {
        match rest.split_once(", expected ") {
            Some((found, expected)) => {
                let scalar = ["integer", "floating point", "boolean"]
                    .iter()
                    .any(|kind| found.starts_with(kind));
                let hint = if expected == "a string" && scalar {
                    "; put it in quotes"
                } else {
                    ""
                };
                format!(
                    "expected {}, found {}{hint}",
                    expected_words(expected),
                    found_words(found)
                )
            }
            None => message.to_owned(),
        }
    } else if let Some(rest) = message.strip_prefix("invalid value: ") {
        match rest.split_once(", expected ") {
            Some((found, expected)) if found.starts_with("integer ") => format!(
                "{} is out of range; expected {}",
                found.trim_start_matches("integer ").trim_matches('`'),
                expected_words(expected)
            ),
            Some((found, expected)) => format!(
                "expected {}, found {}",
                expected_words(expected),
                found_words(found)
            ),
            None => message.to_owned(),
        }
    } else {
        message.to_owned()
    };
    Reworded {
        position_of: key_path.clone(),
        key_path,
        reason,
        at_key: false,
    }
}

fn expected_words(expected: &str) -> String {
    match expected {
        "u8" => "an integer from 0 to 255".to_owned(),
        "u16" => "an integer from 0 to 65535".to_owned(),
        "u32" => "an integer from 0 to 4294967295".to_owned(),
        "a sequence" => "a list".to_owned(),
        "a boolean" => "true or false".to_owned(),
        _ if expected.starts_with("struct ") => "a mapping of keys to values".to_owned(),
        _ => expected.to_owned(),
    }
}

fn found_words(found: &str) -> String {
    match found {
        "unit value" => "nothing (null or an empty value)".to_owned(),
        "sequence" => "a list".to_owned(),
        "map" => "a mapping".to_owned(),
        _ => found.replace("floating point", "number").replace('`', ""),
    }
}

/// Marks the node [`locate`] is looking for; never shown to anyone.
const HERE: &str = "\u{0}rvs-locate";

/// One step of a key path.
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

fn steps(key_path: &str) -> Option<Vec<Step<'_>>> {
    let mut steps = Vec::new();
    for part in key_path.split('.') {
        let (key, mut indices) = part
            .split_once('[')
            .map_or((part, ""), |(k, _)| (k, &part[k.len()..]));
        if !key.is_empty() {
            steps.push(Step::Key(key));
        }
        while let Some(rest) = indices.strip_prefix('[') {
            let (index, after) = rest.split_once(']')?;
            steps.push(Step::Index(index.parse().ok()?));
            indices = after;
        }
        if !indices.is_empty() {
            return None;
        }
    }
    Some(steps)
}

/// The 1-based line and column of the node at `key_path` in `text` (of its key
/// when `at_key`); of the deepest node on the way if the path leads nowhere
/// (a missing key points at the mapping that lacks it). `None` for the empty
/// path (the whole document) and for text that does not parse.
pub(crate) fn locate(text: &str, key_path: &str, at_key: bool) -> Option<(usize, usize)> {
    let steps = steps(key_path)?;
    if steps.is_empty() {
        return None;
    }
    let seed = Locate {
        rest: &steps,
        at_key,
    };
    let err = seed
        .deserialize(serde_yaml::Deserializer::from_str(text))
        .err()?;
    if !err.to_string().contains(HERE) {
        return None;
    }
    err.location().map(|l| (l.line(), l.column()))
}

struct Locate<'s, 'p> {
    rest: &'s [Step<'p>],
    at_key: bool,
}

impl<'de> DeserializeSeed<'de> for Locate<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// Every visit that does not descend fails with [`HERE`]; the YAML
/// deserialiser then stamps the error with the position of that node.
macro_rules! here {
    ($($method:ident($ty:ty)),*) => {$(
        fn $method<E: de::Error>(self, _: $ty) -> Result<(), E> {
            Err(E::custom(HERE))
        }
    )*};
}

impl<'de> Visitor<'de> for Locate<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    here!(
        visit_bool(bool),
        visit_i64(i64),
        visit_u64(u64),
        visit_f64(f64),
        visit_str(&str)
    );

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(HERE))
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(HERE))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if let Some((Step::Key(want), rest)) = self.rest.split_first() {
            let point = self.at_key && rest.is_empty();
            while let Some(found) = map.next_key_seed(Key { want, point })? {
                if found {
                    return map.next_value_seed(Locate {
                        rest,
                        at_key: self.at_key,
                    });
                }
                map.next_value::<IgnoredAny>()?;
            }
        }
        Err(de::Error::custom(HERE))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if let Some((&Step::Index(want), rest)) = self.rest.split_first() {
            for _ in 0..want {
                if seq.next_element::<IgnoredAny>()?.is_none() {
                    return Err(de::Error::custom(HERE));
                }
            }
            let seed = Locate {
                rest,
                at_key: self.at_key,
            };
            if seq.next_element_seed(seed)?.is_some() {
                return Ok(());
            }
        }
        Err(de::Error::custom(HERE))
    }
}

/// A mapping key: `true` if it is the one wanted; fails with [`HERE`] on it
/// when `point`, so that the error carries the key's position.
struct Key<'a> {
    want: &'a str,
    point: bool,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        match key == self.want {
            true if self.point => Err(E::custom(HERE)),
            found => Ok(found),
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_i64<E: de::Error>(self, key: i64) -> Result<bool, E> {
        self.visit_str(&key.to_string())
    }

    fn visit_u64<E: de::Error>(self, key: u64) -> Result<bool, E> {
        self.visit_str(&key.to_string())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }
}
