//! `token.json` read in one pass: the fields the crate knows land in their
//! slots by name, every other key (in file order) in a map.
//!
//! Why not a `serde_json::Value` first: that map allocates every key and
//! then each known field is removed from it again, which was a third of a
//! cold start from a cached token.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The fields of `token.json` that [`StoredToken`](super::StoredToken) has.
#[derive(Clone, Copy)]
pub(super) enum Field {
    Token,
    RefreshToken,
    TokenUri,
    ClientId,
    ClientSecret,
    RaptToken,
    UniverseDomain,
    Account,
    Expiry,
    Scopes,
}

const NAMES: [&str; 10] = [
    "token",
    "refresh_token",
    "token_uri",
    "client_id",
    "client_secret",
    "rapt_token",
    "universe_domain",
    "account",
    "expiry",
    "scopes",
];

impl Field {
    pub(super) fn name(self) -> &'static str {
        NAMES[self as usize]
    }
}

/// An object's fields: the known ones, and the rest in file order. A key
/// given twice keeps its last value (as in a `serde_json::Value`).
#[derive(Default)]
pub(super) struct Fields {
    known: [Option<Value>; NAMES.len()],
    pub(super) extra: Map<String, Value>,
}

impl Fields {
    /// The value of `field`, taken out.
    pub(super) fn take(&mut self, field: Field) -> Option<Value> {
        self.known[field as usize].take()
    }
}

/// A JSON document: an object's fields, or (`None`) anything else.
pub(super) struct Document(pub(super) Option<Fields>);

impl<'de> de::Deserialize<'de> for Document {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DocumentVisitor)
    }
}

struct DocumentVisitor;

impl<'de> Visitor<'de> for DocumentVisitor {
    type Value = Document;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON document")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Document, A::Error> {
        let mut fields = Fields::default();
        while let Some(key) = map.next_key::<Key>()? {
            let value: Value = map.next_value()?;
            match key {
                Key::Known(i) => fields.known[i] = Some(value),
                Key::Other(name) => {
                    fields.extra.insert(name, value);
                }
            }
        }
        Ok(Document(Some(fields)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Document, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Document(None))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Document, E> {
        Ok(Document(None))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Document, E> {
        Ok(Document(None))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Document, E> {
        Ok(Document(None))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Document, E> {
        Ok(Document(None))
    }

    fn visit_str<E>(self, _: &str) -> Result<Document, E> {
        Ok(Document(None))
    }

    fn visit_unit<E>(self) -> Result<Document, E> {
        Ok(Document(None))
    }
}

/// A key: the index of a known field (no allocation), or another name.
enum Key {
    Known(usize),
    Other(String),
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<Key, E> {
        Ok(match NAMES.iter().position(|n| *n == key) {
            Some(i) => Key::Known(i),
            None => Key::Other(key.to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What a `serde_json::Value` makes of `json`: the known fields and the
    /// rest, in order (the reader this one replaced).
    /// The known fields' values and the other keys.
    type Read = (Vec<Option<Value>>, Map<String, Value>);

    fn reference(json: &str) -> Option<Read> {
        let Value::Object(mut map) = serde_json::from_str(json).ok()? else {
            return Some((Vec::new(), Map::new()));
        };
        let known = NAMES.iter().map(|n| map.shift_remove(*n)).collect();
        Some((known, map))
    }

    fn one_pass(json: &str) -> Option<Read> {
        match serde_json::from_str::<Document>(json).ok()?.0 {
            Some(f) => Some((f.known.to_vec(), f.extra)),
            None => Some((Vec::new(), Map::new())),
        }
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            // Known names, plain and with an escape that decodes to them.
            (0..NAMES.len()).prop_map(|i| format!("\"{}\"", NAMES[i])),
            Just(r#""tok\u0065n""#.to_owned()),
            Just(r#""type""#.to_owned()),
            "[a-z_]{1,6}".prop_map(|k| format!("\"{k}\"")),
        ]
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just("1.5e3".to_owned()),
            Just(r#"["a", {"b": [1]}]"#.to_owned()),
            Just(r#"{"nested": {"token": "x"}}"#.to_owned()),
            "[a-z ]{0,8}".prop_map(|s| format!("\"{s}\"")),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// Objects with repeated keys, escaped keys and nested values, and
        /// other documents: the same fields, order and errors as a `Value`.
        #[test]
        fn the_one_pass_reader_reads_what_a_value_reads(
            entries in proptest::collection::vec((key(), value()), 0..12),
            top in 0..4u8,
            tail in prop_oneof![Just(""), Just(" "), Just(" x"), Just(",")],
        ) {
            let body: Vec<String> = entries.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            let json = match top {
                0 | 1 => format!("{{{}}}{tail}", body.join(", ")),
                2 => format!("[{}]{tail}", entries.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>().join(",")),
                _ => entries.first().map_or("\"s\"".to_owned(), |(_, v)| v.clone()),
            };
            prop_assert_eq!(one_pass(&json), reference(&json), "{}", json);
        }
    }
}
