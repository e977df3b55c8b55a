//! Recorded headers, held as the JSON text the ledger stores.
//!
//! The proxy records two header lists per exchange. Built as `Vec<(String, String)>` they cost
//! two allocations per header on the proxy's workers, freed again on the ledger's thread after
//! serialisation; built straight into their JSON text they cost one.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Ordered `[name, value]` pairs, duplicates kept, as their JSON text `[["name","value"],...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderList(String);

impl Default for HeaderList {
    fn default() -> Self {
        Self("[]".to_string())
    }
}

impl HeaderList {
    /// The list of `pairs`, in order.
    pub fn from_pairs<N: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        let mut b = Builder::with_capacity(256);
        for (n, v) in pairs {
            b.push(n.as_ref(), v.as_ref());
        }
        b.finish()
    }

    /// The list stored as `text`, checked to be an array of `[name, value]` string pairs.
    pub fn from_json(text: String) -> Result<Self, serde_json::Error> {
        serde_json::from_str::<Vec<(String, String)>>(&text)?;
        Ok(Self(text))
    }

    /// The JSON text.
    pub fn as_json(&self) -> &str {
        &self.0
    }

    /// The pairs, in order.
    pub fn pairs(&self) -> Vec<(String, String)> {
        serde_json::from_str(&self.0).expect("a header list holds valid JSON")
    }
}

/// Builds a [`HeaderList`] one pair at a time.
pub struct Builder(Vec<u8>);

impl Builder {
    /// An empty list with room for `bytes` of JSON.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(bytes);
        buf.push(b'[');
        Self(buf)
    }

    /// Appends one pair.
    pub fn push(&mut self, name: &str, value: &str) {
        if self.0.len() > 1 {
            self.0.push(b',');
        }
        self.0.push(b'[');
        self.string(name);
        self.0.push(b',');
        self.string(value);
        self.0.push(b']');
    }

    fn string(&mut self, s: &str) {
        push_json_str(&mut self.0, s);
    }

    /// The finished list.
    pub fn finish(mut self) -> HeaderList {
        self.0.push(b']');
        HeaderList(String::from_utf8(self.0).expect("JSON text is UTF-8"))
    }
}

/// Appends `s` to `out` as a JSON string, exactly as serde_json writes it; copied as is when
/// nothing in it needs escaping, as in nearly every header and request field (no control
/// character, `"` or `\`).
pub fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // A fold without early exit, so the compiler can check many bytes at a time.
    let needs_escape = s.bytes().fold(false, |acc, b| {
        acc | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if !needs_escape {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
    }
}

impl Serialize for HeaderList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.pairs().serialize(s)
    }
}

impl<'de> Deserialize<'de> for HeaderList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::from_pairs(Vec::<(String, String)>::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip_through_the_json_text_with_escapes() {
        let pairs = vec![
            ("content-type".to_string(), "text/plain".to_string()),
            ("x-quote".to_string(), "a \"b\" \\ c\u{1}".to_string()),
            ("x-quote".to_string(), "ünïcode".to_string()),
            ("x-tab".to_string(), "a\tb".to_string()),
            (
                "x-plain".to_string(),
                "visible ASCII ~!#$%&'()*+,-./:;<=>?@[]^_`{|}".to_string(),
            ),
        ];
        let list = HeaderList::from_pairs(pairs.clone());
        assert_eq!(list.pairs(), pairs);
        let parsed: serde_json::Value = serde_json::from_str(list.as_json()).unwrap();
        assert_eq!(parsed[1][1], "a \"b\" \\ c\u{1}");
        assert_eq!(
            HeaderList::from_json(list.as_json().to_string()).unwrap(),
            list
        );
    }

    #[test]
    fn empty_list_and_bad_text() {
        assert_eq!(HeaderList::default().as_json(), "[]");
        assert!(HeaderList::default().pairs().is_empty());
        assert_eq!(
            HeaderList::from_pairs(Vec::<(&str, &str)>::new()),
            HeaderList::default()
        );
        assert!(HeaderList::from_json("{\"a\":1}".to_string()).is_err());
        assert!(HeaderList::from_json("[[\"a\"]]".to_string()).is_err());
    }

    #[test]
    fn serialises_as_the_pairs() {
        let list = HeaderList::from_pairs([("a", "1"), ("b", "2")]);
        assert_eq!(
            serde_json::to_value(&list).unwrap(),
            serde_json::json!([["a", "1"], ["b", "2"]])
        );
        let back: HeaderList = serde_json::from_str("[[\"a\",\"1\"],[\"b\",\"2\"]]").unwrap();
        assert_eq!(back, list);
    }
}
