//! `baton admin topic consume --format`: kcat's `-f` format strings, parsed
//! once and applied to each record.
//!
//! Tokens (kcat's): `%t` topic, `%p` partition, `%o` offset, `%T` timestamp
//! (ms), `%k` key, `%K` key length, `%s` value, `%S` value length, `%h`
//! headers as `name=value,...`, `%%` a percent sign; escapes `\n`, `\r`,
//! `\t` and `\\`. A null key or value prints as nothing, its length as -1,
//! as kcat does. Keys, values and headers are written as their bytes.

use bytes::Bytes;

/// One piece of a parsed format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// Text copied as is.
    Literal(Vec<u8>),
    /// A record field.
    Field(Field),
}

/// The record fields a format can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `%t`
    Topic,
    /// `%p`
    Partition,
    /// `%o`
    Offset,
    /// `%T`
    Timestamp,
    /// `%k`
    Key,
    /// `%K`
    KeyLength,
    /// `%s`
    Value,
    /// `%S`
    ValueLength,
    /// `%h`
    Headers,
}

/// The default format: one line per record, topic, partition, offset,
/// key and value separated by spaces (easy to read and to `awk`).
pub const DEFAULT: &str = "%t %p %o %k %s\\n";

/// The parts of a record a format prints.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Create time, ms.
    pub timestamp: i64,
    /// Key.
    pub key: Option<&'a Bytes>,
    /// Value.
    pub value: Option<&'a Bytes>,
    /// Headers.
    pub headers: &'a [(String, Option<Bytes>)],
}

/// Parses a kcat format string; an unknown `%` or `\` sequence is an error
/// naming it, as kcat refuses an unsupported formatter.
pub fn parse(format: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut literal = Vec::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        let (escaped, next) = match c {
            '%' | '\\' => (c, chars.next()),
            _ => {
                let mut buf = [0u8; 4];
                literal.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                continue;
            }
        };
        let Some(next) = next else {
            return Err(format!("format ends in a lone {escaped:?}"));
        };
        let field = match (escaped, next) {
            ('%', '%') => Err(b'%'),
            ('\\', 'n') => Err(b'\n'),
            ('\\', 'r') => Err(b'\r'),
            ('\\', 't') => Err(b'\t'),
            ('\\', '\\') => Err(b'\\'),
            ('%', 't') => Ok(Field::Topic),
            ('%', 'p') => Ok(Field::Partition),
            ('%', 'o') => Ok(Field::Offset),
            ('%', 'T') => Ok(Field::Timestamp),
            ('%', 'k') => Ok(Field::Key),
            ('%', 'K') => Ok(Field::KeyLength),
            ('%', 's') => Ok(Field::Value),
            ('%', 'S') => Ok(Field::ValueLength),
            ('%', 'h') => Ok(Field::Headers),
            _ => return Err(format!("unsupported formatter {escaped}{next} in --format")),
        };
        match field {
            Err(byte) => literal.push(byte),
            Ok(field) => {
                if !literal.is_empty() {
                    tokens.push(Token::Literal(std::mem::take(&mut literal)));
                }
                tokens.push(Token::Field(field));
            }
        }
    }
    if !literal.is_empty() {
        tokens.push(Token::Literal(literal));
    }
    Ok(tokens)
}

/// The bytes `tokens` print for one record.
pub fn render(tokens: &[Token], record: &Fields) -> Vec<u8> {
    let mut out = Vec::new();
    let length = |b: Option<&Bytes>| b.map_or(-1, |b| b.len() as i64).to_string();
    for token in tokens {
        match token {
            Token::Literal(bytes) => out.extend_from_slice(bytes),
            Token::Field(field) => match field {
                Field::Topic => out.extend_from_slice(record.topic.as_bytes()),
                Field::Partition => out.extend_from_slice(record.partition.to_string().as_bytes()),
                Field::Offset => out.extend_from_slice(record.offset.to_string().as_bytes()),
                Field::Timestamp => out.extend_from_slice(record.timestamp.to_string().as_bytes()),
                Field::Key => out.extend_from_slice(record.key.map_or(&[][..], |k| k)),
                Field::KeyLength => out.extend_from_slice(length(record.key).as_bytes()),
                Field::Value => out.extend_from_slice(record.value.map_or(&[][..], |v| v)),
                Field::ValueLength => out.extend_from_slice(length(record.value).as_bytes()),
                Field::Headers => {
                    for (i, (name, value)) in record.headers.iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        out.extend_from_slice(name.as_bytes());
                        out.push(b'=');
                        out.extend_from_slice(value.as_ref().map_or(&[][..], |v| v));
                    }
                }
            },
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        use Field::*;
        let lit = |s: &str| Token::Literal(s.as_bytes().to_vec());
        let f = Token::Field;
        let cases: Vec<(&str, Result<Vec<Token>, &str>)> = vec![
            ("", Ok(vec![])),
            ("plain", Ok(vec![lit("plain")])),
            ("%s", Ok(vec![f(Value)])),
            (
                "%t %p %o %T %k %K %s %S %h",
                Ok(vec![
                    f(Topic),
                    lit(" "),
                    f(Partition),
                    lit(" "),
                    f(Offset),
                    lit(" "),
                    f(Timestamp),
                    lit(" "),
                    f(Key),
                    lit(" "),
                    f(KeyLength),
                    lit(" "),
                    f(Value),
                    lit(" "),
                    f(ValueLength),
                    lit(" "),
                    f(Headers),
                ]),
            ),
            (
                "k=%k\\tv=%s\\n",
                Ok(vec![lit("k="), f(Key), lit("\tv="), f(Value), lit("\n")]),
            ),
            ("100%% \\\\ \\r", Ok(vec![lit("100% \\ \r")])),
            ("é%s", Ok(vec![lit("é"), f(Value)])),
            ("%x", Err("unsupported formatter %x in --format")),
            ("\\q", Err("unsupported formatter \\q in --format")),
            ("%s%", Err("format ends in a lone '%'")),
            ("\\", Err("format ends in a lone '\\\\'")),
        ];
        for (format, expected) in cases {
            assert_eq!(
                parse(format),
                expected.map_err(str::to_string),
                "{format:?}"
            );
        }
    }

    #[test]
    fn render_table() {
        let key = Bytes::from_static(b"k1");
        let value = Bytes::from_static(b"hello");
        let headers = vec![
            ("h1".to_string(), Some(Bytes::from_static(b"v1"))),
            ("h2".to_string(), None),
        ];
        let full = Fields {
            topic: "orders",
            partition: 2,
            offset: 41,
            timestamp: 1_700_000_000_000,
            key: Some(&key),
            value: Some(&value),
            headers: &headers,
        };
        let nulls = Fields {
            key: None,
            value: None,
            headers: &[],
            ..full
        };
        let cases = [
            (DEFAULT, full, "orders 2 41 k1 hello\n"),
            (DEFAULT, nulls, "orders 2 41  \n"),
            ("%K:%S %k|%s|%h", full, "2:5 k1|hello|h1=v1,h2="),
            ("%K:%S [%k] [%s] [%h]", nulls, "-1:-1 [] [] []"),
            ("%T %%", full, "1700000000000 %"),
        ];
        for (format, record, expected) in cases {
            let tokens = parse(format).expect("valid format");
            let out = String::from_utf8(render(&tokens, &record)).expect("utf-8");
            assert_eq!(out, expected, "{format:?}");
        }
    }
}
