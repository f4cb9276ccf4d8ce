//! One page of an API answer: the records in it, and where the next page is.

use super::settings::{Endpoint, Pagination};
use reqwest::Url;
use serde_json::{Map, Value};

/// Why a page cannot be used; the page is dead-lettered with this reason.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PageError {
    #[error("the body is not valid JSON: {0}")]
    Json(String),
    #[error("the records path {0:?} is missing from the body")]
    MissingPath(String),
    #[error("the records path {path:?} holds {found}, not an array or an object")]
    NotRecords { path: String, found: &'static str },
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The value at a dotted path (`data.items`; an empty path is the value itself; a
/// numeric segment indexes an array).
pub fn at_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        cur = match cur {
            Value::Object(m) => m.get(seg)?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn at_path_mut<'a>(v: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    let mut cur = v;
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        cur = match cur {
            Value::Object(m) => m.get_mut(seg)?,
            Value::Array(a) => a.get_mut(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// A parsed page.
#[derive(Debug)]
pub struct Page {
    pub body: Value,
    /// The records, each a JSON value (an object, unless the API serves something else:
    /// those are dead-lettered one by one).
    pub records: Vec<Value>,
}

/// Parses a body and extracts its records as configured.
pub fn parse_page(ep: &Endpoint, bytes: &[u8]) -> Result<Page, PageError> {
    let mut body: Value =
        serde_json::from_slice(bytes).map_err(|e| PageError::Json(e.to_string()))?;
    let at =
        at_path(&body, &ep.records).ok_or_else(|| PageError::MissingPath(ep.records.clone()))?;
    let records = match at {
        // Moved out of the body (the rest of it, e.g. a next cursor, stays), not copied.
        Value::Array(_) => match at_path_mut(&mut body, &ep.records).map(std::mem::take) {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        },
        Value::Object(m) if ep.map_key_field.is_some() => explode(ep, m),
        // A single object where records are expected: one record (e.g. `/latest`).
        Value::Object(_) => vec![at.clone()],
        Value::Null if !ep.records.is_empty() => Vec::new(),
        other => {
            return Err(PageError::NotRecords {
                path: ep.records.clone(),
                found: kind(other),
            })
        }
    };
    let records = if ep.parent_fields.is_empty() {
        records
    } else {
        records
            .into_iter()
            .map(|mut r| {
                if let Value::Object(m) = &mut r {
                    for f in &ep.parent_fields {
                        if let Some(v) = at_path(&body, f) {
                            m.entry(f.clone()).or_insert_with(|| v.clone());
                        }
                    }
                }
                r
            })
            .collect()
    };
    Ok(Page { body, records })
}

/// `{"USD": 1.08, "GBP": {"rate": 0.85}}` -> `[{"currency": "USD", "value": 1.08},
/// {"currency": "GBP", "rate": 0.85}]` with `map_key_field = "currency"`.
fn explode(ep: &Endpoint, m: &Map<String, Value>) -> Vec<Value> {
    let key_field = ep.map_key_field.as_deref().unwrap_or("key");
    m.iter()
        .map(|(k, v)| {
            let mut rec = Map::new();
            rec.insert(key_field.to_string(), Value::String(k.clone()));
            match v {
                Value::Object(inner) => {
                    for (ik, iv) in inner {
                        rec.entry(ik.clone()).or_insert_with(|| iv.clone());
                    }
                }
                other => {
                    rec.insert(ep.map_value_field.clone(), other.clone());
                }
            }
            Value::Object(rec)
        })
        .collect()
}

/// The primary key of a record: its key fields' values, as (name, value) pairs, or the
/// name of the first missing one.
pub fn record_key<'a>(
    ep: &'a Endpoint,
    rec: &'a Value,
) -> Result<Vec<(&'a str, &'a Value)>, String> {
    if !rec.is_object() {
        return Err(format!("the record is {}, not an object", kind(rec)));
    }
    let mut out = Vec::with_capacity(ep.key.len());
    for k in &ep.key {
        match at_path(rec, k) {
            None | Some(Value::Null) => return Err(format!("the record has no key field {k:?}")),
            Some(Value::String(s)) if s.trim().is_empty() => {
                return Err(format!("the record's key field {k:?} is empty"))
            }
            Some(Value::Object(_) | Value::Array(_)) => {
                return Err(format!("the record's key field {k:?} is not a scalar"))
            }
            Some(v) => out.push((k.as_str(), v)),
        }
    }
    Ok(out)
}

/// The text of a scalar as it would be sent in a URL or compared.
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Canonical JSON (object members sorted, no whitespace): equal content gives equal
/// bytes whatever the server's member order or formatting.
pub fn canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(m) => {
            out.push(b'{');
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k).expect("string serializes");
                out.push(b':');
                canonical(&m[k], out);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(x, out);
            }
            out.push(b']');
        }
        other => serde_json::to_writer(&mut *out, other).expect("scalar serializes"),
    }
}

/// 64-bit FNV-1a of `bytes`, twice with different offsets: 128 bits as 32 hex digits.
pub fn content_hash(bytes: &[u8]) -> String {
    let mut a: u64 = 0xcbf29ce484222325;
    let mut b: u64 = 0x84222325cbf29ce4;
    for &x in bytes {
        a ^= x as u64;
        a = a.wrapping_mul(0x100000001b3);
        b ^= x as u64;
        b = b.wrapping_mul(0x100000001b3).rotate_left(5);
    }
    format!("{a:016x}{b:016x}")
}

/// Sets (replaces) a query parameter.
pub fn set_param(url: &mut Url, name: &str, value: &str) {
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut q = url.query_pairs_mut();
    q.clear();
    for (k, v) in &pairs {
        q.append_pair(k, v);
    }
    q.append_pair(name, value);
}

/// The URL of the first page of a poll.
pub fn first_url(ep: &Endpoint, since: Option<(&str, &str)>) -> Result<Url, String> {
    let mut url = Url::parse(&ep.url).map_err(|e| format!("url {}: {e}", ep.url))?;
    for (k, v) in &ep.query {
        set_param(&mut url, k, v);
    }
    if let Some((param, value)) = since {
        set_param(&mut url, param, value);
    }
    match &ep.pagination {
        Pagination::Page {
            param,
            start,
            size_param,
            size,
        } => {
            set_param(&mut url, param, &start.to_string());
            if let (Some(p), Some(s)) = (size_param, size) {
                set_param(&mut url, p, &s.to_string());
            }
        }
        Pagination::Offset {
            offset_param,
            limit_param,
            limit,
        } => {
            set_param(&mut url, offset_param, "0");
            set_param(&mut url, limit_param, &limit.to_string());
        }
        _ => {}
    }
    Ok(url)
}

fn param_u64(url: &Url, name: &str) -> Option<u64> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.parse().ok())
}

/// The next page's URL, or `None` at the end. `records` is how many records this page
/// had; `link` the response's `Link` header, if any.
pub fn next_url(
    ep: &Endpoint,
    url: &Url,
    body: Option<&Value>,
    records: usize,
    link: Option<&str>,
) -> Option<Url> {
    match &ep.pagination {
        Pagination::None => None,
        Pagination::Page { param, start, .. } => {
            if records == 0 {
                return None;
            }
            let cur = param_u64(url, param).unwrap_or(*start);
            let mut next = url.clone();
            set_param(&mut next, param, &(cur + 1).to_string());
            Some(next)
        }
        Pagination::Offset { offset_param, .. } => {
            if records == 0 {
                return None;
            }
            let cur = param_u64(url, offset_param).unwrap_or(0);
            let mut next = url.clone();
            set_param(&mut next, offset_param, &(cur + records as u64).to_string());
            Some(next)
        }
        Pagination::Cursor { param, next_path } => {
            let c = at_path(body?, next_path)?;
            let c = match c {
                Value::Null | Value::Bool(false) => return None,
                other => scalar_text(other)?,
            };
            if c.is_empty() {
                return None;
            }
            let mut next = url.clone();
            set_param(&mut next, param, &c);
            Some(next)
        }
        Pagination::NextLink { next_path } => {
            let s = scalar_text(at_path(body?, next_path)?)?;
            if s.is_empty() {
                return None;
            }
            url.join(&s).ok()
        }
        Pagination::LinkHeader => {
            let target = link_next(link?)?;
            url.join(&target).ok()
        }
    }
}

/// The `rel="next"` target of a `Link` header (RFC 8288), e.g.
/// `<https://api.test/items?page=3>; rel="next", <...>; rel="last"`.
pub fn link_next(header: &str) -> Option<String> {
    let mut rest = header;
    loop {
        let open = rest.find('<')?;
        let close = open + rest[open..].find('>')?;
        let target = &rest[open + 1..close];
        let after = &rest[close + 1..];
        // Parameters run until the next link (a comma outside quotes).
        let mut end = after.len();
        let mut quoted = false;
        for (i, c) in after.char_indices() {
            match c {
                '"' => quoted = !quoted,
                ',' if !quoted => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let params = &after[..end];
        for p in params.split(';') {
            let Some((k, v)) = p.split_once('=') else {
                continue;
            };
            if k.trim().eq_ignore_ascii_case("rel") {
                let v = v.trim().trim_matches('"');
                if v.split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"))
                {
                    return Some(target.trim().to_string());
                }
            }
        }
        rest = &after[end..];
        if rest.is_empty() {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(pagination: Pagination, records: &str) -> Endpoint {
        serde_json::from_value::<Endpoint>(serde_json::json!({
            "name": "t", "url": "https://api.test/v1/items?fixed=1", "key": ["id"], "records": records,
        }))
        .map(|mut e| {
            e.pagination = pagination;
            e
        })
        .unwrap()
    }

    #[test]
    fn records_path_and_errors() {
        let e = ep(Pagination::None, "data.items");
        let p = parse_page(&e, br#"{"data":{"items":[{"id":1},{"id":2}]}}"#).unwrap();
        assert_eq!(p.records.len(), 2);
        assert!(matches!(
            parse_page(&e, b"{\"data\":"),
            Err(PageError::Json(_))
        ));
        assert_eq!(
            parse_page(&e, br#"{"data":{}}"#).unwrap_err(),
            PageError::MissingPath("data.items".into())
        );
        assert!(matches!(
            parse_page(&e, br#"{"data":{"items":3}}"#),
            Err(PageError::NotRecords { .. })
        ));
        // The body itself as the array.
        let e = ep(Pagination::None, "");
        assert_eq!(parse_page(&e, b"[{\"id\":1}]").unwrap().records.len(), 1);
    }

    #[test]
    fn object_of_rates_becomes_records() {
        let mut e = ep(Pagination::None, "rates");
        e.map_key_field = Some("currency".into());
        e.map_value_field = "rate".into();
        e.parent_fields = vec!["date".into(), "base".into()];
        let p = parse_page(
            &e,
            br#"{"amount":1.0,"base":"EUR","date":"2024-03-05","rates":{"USD":1.0823,"GBP":0.8541}}"#,
        )
        .unwrap();
        assert_eq!(p.records.len(), 2);
        let usd = p.records.iter().find(|r| r["currency"] == "USD").unwrap();
        assert_eq!(usd["rate"], serde_json::json!(1.0823));
        assert_eq!(usd["date"], "2024-03-05");
        assert_eq!(usd["base"], "EUR");
    }

    #[test]
    fn keys() {
        let mut e = ep(Pagination::None, "");
        e.key = vec!["a".into(), "b.c".into()];
        let r = serde_json::json!({"a": "x", "b": {"c": 7}});
        let k = record_key(&e, &r).unwrap();
        assert_eq!(
            k,
            vec![
                ("a", &serde_json::json!("x")),
                ("b.c", &serde_json::json!(7))
            ]
        );
        assert!(record_key(&e, &serde_json::json!({"a": "x"}))
            .unwrap_err()
            .contains("b.c"));
        assert!(record_key(&e, &serde_json::json!({"a": " ", "b": {"c": 1}})).is_err());
        assert!(record_key(&e, &serde_json::json!([1])).is_err());
    }

    #[test]
    fn canonical_hash_ignores_order_and_spacing() {
        let a: Value = serde_json::from_str(r#"{"b": 1, "a": [1, {"y": 2, "x": 3}]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":[1,{"x":3,"y":2}],"b":1}"#).unwrap();
        let c: Value = serde_json::from_str(r#"{"a":[1,{"x":3,"y":2}],"b":2}"#).unwrap();
        let h = |v: &Value| {
            let mut o = Vec::new();
            canonical(v, &mut o);
            content_hash(&o)
        };
        assert_eq!(h(&a), h(&b));
        assert_ne!(h(&a), h(&c));
        assert_eq!(h(&a).len(), 32);
    }

    #[test]
    fn page_number_pagination() {
        let e = ep(
            Pagination::Page {
                param: "page".into(),
                start: 1,
                size_param: Some("per_page".into()),
                size: Some(50),
            },
            "",
        );
        let u = first_url(&e, None).unwrap();
        assert_eq!(
            u.as_str(),
            "https://api.test/v1/items?fixed=1&page=1&per_page=50"
        );
        let n = next_url(&e, &u, None, 50, None).unwrap();
        assert_eq!(
            n.as_str(),
            "https://api.test/v1/items?fixed=1&per_page=50&page=2"
        );
        // A short page is not the end (the server may have shrunk its page size); an empty one is.
        assert!(next_url(&e, &n, None, 7, None).is_some());
        assert!(next_url(&e, &n, None, 0, None).is_none());
    }

    #[test]
    fn offset_pagination_advances_by_records_received() {
        let e = ep(
            Pagination::Offset {
                offset_param: "offset".into(),
                limit_param: "limit".into(),
                limit: 100,
            },
            "",
        );
        let u = first_url(&e, Some(("since", "2024-01-01"))).unwrap();
        assert!(u.as_str().contains("since=2024-01-01"));
        let n = next_url(&e, &u, None, 80, None).unwrap();
        assert_eq!(param_u64(&n, "offset"), Some(80));
        let n = next_url(&e, &n, None, 100, None).unwrap();
        assert_eq!(param_u64(&n, "offset"), Some(180));
        assert!(next_url(&e, &n, None, 0, None).is_none());
    }

    #[test]
    fn cursor_and_next_link_pagination() {
        let e = ep(
            Pagination::Cursor {
                param: "cursor".into(),
                next_path: "meta.next".into(),
            },
            "items",
        );
        let u = first_url(&e, None).unwrap();
        let body = serde_json::json!({"items": [], "meta": {"next": "abc=="}});
        let n = next_url(&e, &u, Some(&body), 0, None).unwrap();
        assert_eq!(
            n.query_pairs().find(|(k, _)| k == "cursor").unwrap().1,
            "abc=="
        );
        for end in [
            serde_json::json!({"meta": {"next": null}}),
            serde_json::json!({"meta": {"next": ""}}),
            serde_json::json!({}),
        ] {
            assert!(next_url(&e, &u, Some(&end), 5, None).is_none());
        }
        let e = ep(
            Pagination::NextLink {
                next_path: "links.next".into(),
            },
            "items",
        );
        let body = serde_json::json!({"links": {"next": "/v1/items?page=2"}});
        assert_eq!(
            next_url(&e, &u, Some(&body), 1, None).unwrap().as_str(),
            "https://api.test/v1/items?page=2"
        );
        let body = serde_json::json!({"links": {"next": "https://other.test/p3"}});
        assert_eq!(
            next_url(&e, &u, Some(&body), 1, None).unwrap().as_str(),
            "https://other.test/p3"
        );
    }

    #[test]
    fn link_header() {
        let h = r#"<https://api.test/items?page=1>; rel="prev", <https://api.test/items?page=3>; rel="next", <https://api.test/items?page=9>; rel="last""#;
        assert_eq!(link_next(h).unwrap(), "https://api.test/items?page=3");
        assert_eq!(
            link_next(r#"</p/2>; title="a, b"; rel="next""#).unwrap(),
            "/p/2"
        );
        assert_eq!(link_next(r#"</p/2>; rel="prev next""#).unwrap(), "/p/2");
        assert!(link_next(r#"<https://api.test/items?page=1>; rel="prev""#).is_none());
        assert!(link_next("garbage").is_none());
        let e = ep(Pagination::LinkHeader, "");
        let u = first_url(&e, None).unwrap();
        assert_eq!(
            next_url(&e, &u, None, 3, Some(h)).unwrap().as_str(),
            "https://api.test/items?page=3"
        );
        assert!(next_url(&e, &u, None, 3, None).is_none());
    }
}
