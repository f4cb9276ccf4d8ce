//! The HTTP source's page handling (`ingest/src/sources/http/page.rs`): a response body
//! parsed as an endpoint is configured, its records hashed and keyed, the next page found.
//!
//! Input: byte 0 picks one of the endpoint configurations below (records path, records as
//! an array, a map exploded with `map_key_field`, a single object, parent fields; cursor,
//! page, offset, next-link and Link-header pagination); the rest is the body. For the
//! Link-header endpoint the rest's first line is the `Link` header, the body follows it.
//!
//! Checked:
//! * no panic, whatever the body or header;
//! * the error kinds are right: `Json` exactly when the body is not JSON, `MissingPath`
//!   when nothing is at the records path, `NotRecords` for a scalar there;
//! * the records are as many as the array's elements or the map's members (each with its
//!   member name in `map_key_field`), one for an object, none for a null; parent fields
//!   present in the body are in every object record;
//! * a record's canonical form is JSON that reads back to the same record; its hash has
//!   32 hex digits; a key found has one scalar, non-null value per key field;
//! * the next page's URL (if any) is computed without panicking; a Link-header target
//!   comes from the header.
#![no_main]

use ingest::sources::http::page::{
    at_path, canonical, content_hash, first_url, link_next, next_url, parse_page, record_key,
    PageError,
};
use ingest::sources::http::settings::Endpoint;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

/// The endpoint configurations; the first two are those of config/etl.toml.
fn endpoints() -> Vec<Endpoint> {
    let base = "http://127.0.0.1:9103/v1";
    let eps = [
        json!({"name": "rates", "url": format!("{base}/rates"), "query": {"limit": "500"},
            "records": "data", "parent_fields": ["base"], "key": ["base", "currency", "date"],
            "pagination": {"type": "cursor", "param": "cursor", "next_path": "next_cursor"}}),
        json!({"name": "products", "url": format!("{base}/products"), "records": "items",
            "key": ["product_id"],
            "pagination": {"type": "page", "param": "page", "size_param": "per_page", "size": 4}}),
        json!({"name": "fx", "url": format!("{base}/latest?base=EUR"), "records": "rates",
            "map_key_field": "currency", "map_value_field": "rate",
            "parent_fields": ["date", "base"], "key": ["currency", "date"]}),
        json!({"name": "rows", "url": format!("{base}/rows"), "records": "", "key": ["id"],
            "pagination": {"type": "offset", "offset_param": "offset", "limit_param": "limit", "limit": 100}}),
        json!({"name": "nested", "url": format!("{base}/nested"), "records": "data.items",
            "key": ["id", "meta.version"],
            "pagination": {"type": "next_link", "next_path": "links.next"}}),
        json!({"name": "linked", "url": format!("{base}/linked"), "records": "", "key": ["id"],
            "pagination": {"type": "link_header"}}),
        json!({"name": "latest", "url": format!("{base}/latest"), "records": "result",
            "key": ["id"], "parent_fields": ["as_of"]}),
        json!({"name": "map", "url": format!("{base}/map"), "records": "",
            "map_key_field": "key", "key": ["key"]}),
    ];
    eps.into_iter()
        .map(|e| serde_json::from_value(e).expect("a valid endpoint"))
        .collect()
}

/// Equal JSON, floating-point numbers within a few ulps (serde_json's float parsing is not
/// always correctly rounded).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y
                || matches!((x.as_f64(), y.as_f64()), (Some(p), Some(q))
                    if (p - q).abs() <= 4.0 * f64::EPSILON * p.abs().max(q.abs()))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same(v, w))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn check_errors(ep: &Endpoint, body: &[u8], err: &PageError) {
    let parsed = serde_json::from_slice::<Value>(body);
    match err {
        PageError::Json(_) => assert!(parsed.is_err(), "valid JSON refused"),
        PageError::MissingPath(_) => {
            let v = parsed.expect("JSON");
            assert!(at_path(&v, &ep.records).is_none());
        }
        PageError::NotRecords { .. } => {
            let v = parsed.expect("JSON");
            let at = at_path(&v, &ep.records).expect("something at the path");
            assert!(!at.is_array() && !at.is_object());
            assert!(!at.is_null() || ep.records.is_empty());
        }
    }
}

fn check_records(ep: &Endpoint, original: &Value, records: &[Value], body: &Value) {
    match at_path(original, &ep.records).expect("records found") {
        Value::Array(a) => assert_eq!(records.len(), a.len()),
        Value::Object(m) if ep.map_key_field.is_some() => {
            assert_eq!(records.len(), m.len());
            let field = ep.map_key_field.as_deref().unwrap_or_default();
            for (rec, name) in records.iter().zip(m.keys()) {
                assert_eq!(rec[field], Value::String(name.clone()));
            }
        }
        Value::Object(_) => assert_eq!(records.len(), 1),
        Value::Null => assert!(records.is_empty()),
        other => panic!("records from a scalar: {other}"),
    }
    for rec in records {
        if let Value::Object(m) = rec {
            for f in &ep.parent_fields {
                assert!(
                    at_path(body, f).is_none() || m.contains_key(f),
                    "parent field {f}"
                );
            }
        }
        let mut buf = Vec::new();
        canonical(rec, &mut buf);
        let back: Value = serde_json::from_slice(&buf).expect("canonical JSON parses");
        assert!(same(&back, rec), "canonical form changed the record");
        assert_eq!(content_hash(&buf).len(), 32);
        if let Ok(pairs) = record_key(ep, rec) {
            assert_eq!(pairs.len(), ep.key.len());
            for (_, v) in pairs {
                assert!(!v.is_null() && !v.is_array() && !v.is_object());
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static EPS: Vec<Endpoint> = endpoints();
    }
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    EPS.with(|eps| {
        let ep = &eps[usize::from(pick) % eps.len()];
        let (link, body) = match ep.pagination {
            ingest::sources::http::settings::Pagination::LinkHeader => {
                let nl = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
                let link = String::from_utf8_lossy(&rest[..nl]).into_owned();
                (Some(link), rest.get(nl + 1..).unwrap_or_default())
            }
            _ => (None, rest),
        };
        if let Some(target) = link.as_deref().and_then(link_next) {
            assert!(link.as_deref().is_some_and(|h| h.contains(&target)));
        }
        let url = first_url(ep, None).expect("the endpoint's URL parses");
        match parse_page(ep, body) {
            Err(e) => check_errors(ep, body, &e),
            Ok(page) => {
                let original: Value = serde_json::from_slice(body).expect("accepted body is JSON");
                check_records(ep, &original, &page.records, &page.body);
                let n = page.records.len();
                if let Some(next) = next_url(ep, &url, Some(&page.body), n, link.as_deref()) {
                    assert!(!next.scheme().is_empty());
                }
            }
        }
    });
});
