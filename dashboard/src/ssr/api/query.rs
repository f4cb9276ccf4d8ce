//! From a request's query string to one parameterised SQL statement.
//!
//! Nothing from the request reaches the SQL text: column names come from the warehouse's
//! catalog and are quoted, values are bound parameters cast to the column's type, and every
//! value is checked against that type first so that a bad one gets a 400 naming it.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::catalog::{Column, Endpoint, Op};

/// Parameters every endpoint takes; the rest are its filters.
pub const RESERVED: &[&str] = &["limit", "offset", "sort", "cursor", "format"];
pub const DEFAULT_LIMIT: u64 = 50;
pub const MAX_LIMIT: u64 = 1000;
const MAX_VALUES: usize = 100;
const MAX_VALUE_LEN: usize = 200;
const MAX_OFFSET: u64 = 1_000_000_000;

/// A request the API refuses (400), with what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

fn bad(text: impl Into<String>) -> BadRequest {
    BadRequest(text.into())
}

/// A parsed request, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub sql: String,
    pub params: Vec<Param>,
    pub limit: u64,
    pub offset: u64,
    /// Extra text columns after the row: the key of each row, for the next cursor.
    pub key_columns: usize,
}

/// A bound parameter: one text value or a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    One(String),
    Many(Vec<String>),
}

/// Output shape: JSON rows (`row_to_json`) or CSV fields (every column as text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Json,
    Csv,
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Checks `value` against a column of type `pg_type`.
fn check_value(param: &str, value: &str, pg_type: &str) -> Result<(), BadRequest> {
    if value.len() > MAX_VALUE_LEN || value.contains('\0') {
        return Err(bad(format!(
            "{param}: a value is longer than {MAX_VALUE_LEN} bytes or holds a NUL byte"
        )));
    }
    let base = pg_type.split('(').next().unwrap_or(pg_type).trim();
    let ok = match base {
        "date" => chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").is_ok(),
        "smallint" => value.parse::<i16>().is_ok(),
        "integer" => value.parse::<i32>().is_ok(),
        "bigint" => value.parse::<i64>().is_ok(),
        "numeric" => value.parse::<rust_decimal::Decimal>().is_ok(),
        "double precision" | "real" => value.parse::<f64>().is_ok_and(f64::is_finite),
        "boolean" => matches!(value, "true" | "false"),
        "timestamp with time zone" => chrono::DateTime::parse_from_rfc3339(value).is_ok(),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        let expected = match base {
            "date" => "a date YYYY-MM-DD",
            "smallint" | "integer" | "bigint" => "a whole number",
            "numeric" | "double precision" | "real" => "a number",
            "boolean" => "true or false",
            "timestamp with time zone" => "an RFC 3339 time such as 2024-01-31T12:00:00Z",
            _ => "a valid value",
        };
        Err(bad(format!("{param}={value:?}: expected {expected}")))
    }
}

fn number(name: &str, text: &str, max: u64) -> Result<u64, BadRequest> {
    let n: u64 = text
        .parse()
        .map_err(|_| bad(format!("{name}={text:?}: expected a whole number from 0")))?;
    if n > max {
        return Err(bad(format!("{name}={n} is above the maximum of {max}")));
    }
    Ok(n)
}

/// Signs and reads the opaque cursors of the detail lists.
pub struct Cursors {
    secret: Vec<u8>,
}

impl Cursors {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            secret: secret.to_vec(),
        }
    }

    fn mac(&self, endpoint: &str, body: &[u8]) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key");
        mac.update(endpoint.as_bytes());
        mac.update(b"\0");
        mac.update(body);
        mac.finalize().into_bytes()[..16].to_vec()
    }

    pub fn encode(&self, endpoint: &str, key: &[String]) -> String {
        let body = serde_json::to_vec(key).unwrap_or_default();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&body),
            URL_SAFE_NO_PAD.encode(self.mac(endpoint, &body))
        )
    }

    pub fn decode(&self, endpoint: &str, cursor: &str) -> Result<Vec<String>, BadRequest> {
        let invalid = || {
            bad("cursor: not a cursor this endpoint gave out (it is signed; use next_cursor as is)")
        };
        let (body, mac) = cursor.split_once('.').ok_or_else(invalid)?;
        let body = URL_SAFE_NO_PAD.decode(body).map_err(|_| invalid())?;
        let mac = URL_SAFE_NO_PAD.decode(mac).map_err(|_| invalid())?;
        let expected = self.mac(endpoint, &body);
        // Constant-time comparison.
        if mac.len() != expected.len()
            || mac
                .iter()
                .zip(&expected)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                != 0
        {
            return Err(invalid());
        }
        serde_json::from_slice(&body).map_err(|_| invalid())
    }
}

/// Each parameter once, and only those the endpoint takes.
fn check_params(e: &Endpoint, params: &[(String, String)]) -> Result<(), BadRequest> {
    let mut seen = std::collections::HashSet::new();
    for (k, _) in params {
        if !seen.insert(k.as_str()) {
            return Err(bad(format!(
                "{k} is given twice; give one value (lists are comma-separated)"
            )));
        }
        if !RESERVED.contains(&k.as_str()) && !e.filters.iter().any(|f| f.param == k) {
            let mut known: Vec<&str> = e.filters.iter().map(|f| f.param).collect();
            known.extend(RESERVED);
            return Err(bad(format!(
                "unknown parameter {k:?}; /api/v1/{} takes: {}",
                e.name,
                known.join(", ")
            )));
        }
    }
    Ok(())
}

/// Builds the statement for `params` (the decoded query string, in order).
pub fn plan(
    e: &Endpoint,
    columns: &[&Column],
    params: &[(String, String)],
    shape: Shape,
    export_cap: u64,
    cursors: &Cursors,
) -> Result<Plan, BadRequest> {
    let col = |name: &str| columns.iter().find(|c| c.name == name).copied();
    check_params(e, params)?;
    let get = |k: &str| params.iter().find(|(p, _)| p == k).map(|(_, v)| v.as_str());

    let (default_limit, max_limit) = match shape {
        Shape::Json => (DEFAULT_LIMIT, MAX_LIMIT),
        Shape::Csv => (export_cap, export_cap),
    };
    let limit = get("limit").map_or(Ok(default_limit), |v| number("limit", v, max_limit))?;
    let offset = get("offset").map_or(Ok(0), |v| number("offset", v, MAX_OFFSET))?;

    let mut sql_params: Vec<Param> = Vec::new();
    let mut conds: Vec<String> = Vec::new();
    for f in e.filters {
        let Some(value) = get(f.param) else { continue };
        let c = col(f.column).ok_or_else(|| bad(format!("{} is not available", f.param)))?;
        let n = sql_params.len() + 1;
        let ident = quote_ident(&c.name);
        match f.op {
            Op::Eq => {
                let values: Vec<String> = value.split(',').map(|v| v.trim().to_string()).collect();
                if values.len() > MAX_VALUES {
                    return Err(bad(format!("{}: at most {MAX_VALUES} values", f.param)));
                }
                for v in &values {
                    check_value(f.param, v, &c.pg_type)?;
                }
                conds.push(format!(
                    "{ident} = ANY(CAST(${n}::text[] AS {}[]))",
                    c.pg_type
                ));
                sql_params.push(Param::Many(values));
            }
            Op::Ge | Op::Le => {
                check_value(f.param, value, &c.pg_type)?;
                let op = if f.op == Op::Ge { ">=" } else { "<=" };
                conds.push(format!("{ident} {op} CAST(${n}::text AS {})", c.pg_type));
                sql_params.push(Param::One(value.to_string()));
            }
        }
    }

    let key_types: Vec<&Column> = e
        .key
        .iter()
        .map(|k| col(k).ok_or_else(|| bad(format!("key column {k} is missing"))))
        .collect::<Result<_, _>>()?;
    let order: Vec<String> = if e.cursor {
        if get("sort").is_some() || get("offset").is_some() {
            return Err(bad(format!(
                "/api/v1/{} is a detail list in a fixed order ({}): page it with cursor=<next_cursor>, not sort or offset",
                e.name,
                e.key.join(", ")
            )));
        }
        if let Some(cursor) = get("cursor") {
            let after = cursors.decode(e.name, cursor)?;
            if after.len() != e.key.len() {
                return Err(bad("cursor: not a cursor of this endpoint"));
            }
            let n0 = sql_params.len() + 1;
            let lhs: Vec<String> = key_types.iter().map(|c| quote_ident(&c.name)).collect();
            let rhs: Vec<String> = key_types
                .iter()
                .enumerate()
                .map(|(i, c)| format!("CAST(${}::text AS {})", n0 + i, c.pg_type))
                .collect();
            conds.push(format!("({}) > ({})", lhs.join(", "), rhs.join(", ")));
            sql_params.extend(after.into_iter().map(Param::One));
        }
        e.key.iter().map(|k| quote_ident(k)).collect()
    } else {
        if get("cursor").is_some() {
            return Err(bad(format!(
                "/api/v1/{} pages with limit and offset, not cursor",
                e.name
            )));
        }
        sort_order(e, get("sort"), &col)?
    };

    let select: Vec<String> = columns.iter().map(|c| quote_ident(&c.name)).collect();
    let where_sql = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    let inner = format!(
        "SELECT {} FROM {}{where_sql} ORDER BY {} LIMIT {} OFFSET {offset}",
        select.join(", "),
        e.table,
        order.join(", "),
        limit + 1,
    );
    let outer_order: Vec<String> = order.iter().map(|o| format!("q.{o}")).collect();
    let keys: Vec<String> = e
        .key
        .iter()
        .map(|k| format!("q.{}::text", quote_ident(k)))
        .collect();
    let sql = match shape {
        Shape::Json => format!(
            "SELECT row_to_json(q)::text, {} FROM ({inner}) q ORDER BY {}",
            keys.join(", "),
            outer_order.join(", ")
        ),
        Shape::Csv => {
            let fields: Vec<String> = columns
                .iter()
                // The JSON text of each value, unquoted: CSV and JSON show the same figures.
                .map(|c| format!("to_json(q.{}) #>> '{{}}'", quote_ident(&c.name)))
                .collect();
            format!(
                "SELECT {}, {} FROM ({inner}) q ORDER BY {}",
                fields.join(", "),
                keys.join(", "),
                outer_order.join(", ")
            )
        }
    };
    Ok(Plan {
        sql,
        params: sql_params,
        limit,
        offset,
        key_columns: e.key.len(),
    })
}

/// `sort=-revenue,period_start` → ORDER BY items, then the key (a total order).
fn sort_order<'a>(
    e: &Endpoint,
    sort: Option<&str>,
    col: &dyn Fn(&str) -> Option<&'a Column>,
) -> Result<Vec<String>, BadRequest> {
    let mut order = Vec::new();
    let mut used = Vec::new();
    if let Some(sort) = sort {
        for item in sort.split(',') {
            if item.is_empty() {
                return Err(bad(
                    "sort: an empty column name; give columns separated by commas, e.g. sort=-revenue,period_start",
                ));
            }
            let (name, desc) = match item.strip_prefix('-') {
                Some(n) => (n, true),
                None => (item, false),
            };
            let c = col(name).ok_or_else(|| {
                bad(format!(
                    "sort: no column {name:?} in /api/v1/{} (prefix a column with - to sort descending)",
                    e.name
                ))
            })?;
            if c.pg_type == "jsonb" || c.pg_type == "json" {
                return Err(bad(format!("sort: {name} cannot be sorted")));
            }
            used.push(c.name.clone());
            order.push(format!(
                "{} {}",
                quote_ident(&c.name),
                if desc {
                    "DESC NULLS LAST"
                } else {
                    "ASC NULLS LAST"
                }
            ));
        }
    }
    for k in e.key {
        if !used.iter().any(|u| u == k) {
            order.push(format!("{} ASC NULLS LAST", quote_ident(k)));
        }
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::super::catalog::find;
    use super::*;

    fn cols() -> Vec<Column> {
        [
            ("grain", "text"),
            ("period_start", "date"),
            ("revenue", "numeric"),
            ("orders", "bigint"),
        ]
        .iter()
        .map(|(n, t)| Column {
            name: n.to_string(),
            pg_type: t.to_string(),
            comment: None,
        })
        .collect()
    }

    fn run(query: &[(&str, &str)], shape: Shape) -> Result<Plan, BadRequest> {
        let e = find("sales-by-period").unwrap();
        let owned = cols();
        let c: Vec<&Column> = owned.iter().collect();
        let q: Vec<(String, String)> = query
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        plan(e, &c, &q, shape, 500, &Cursors::new(b"k"))
    }

    #[test]
    fn builds_bound_statements() {
        let p = run(
            &[
                ("grain", "month,year"),
                ("from", "2024-01-01"),
                ("sort", "-revenue"),
                ("limit", "10"),
            ],
            Shape::Json,
        )
        .unwrap();
        assert_eq!(p.limit, 10);
        assert_eq!(
            p.params,
            vec![
                Param::Many(vec!["month".into(), "year".into()]),
                Param::One("2024-01-01".into())
            ]
        );
        assert!(
            p.sql
                .contains("\"grain\" = ANY(CAST($1::text[] AS text[]))"),
            "{}",
            p.sql
        );
        assert!(
            p.sql.contains("\"period_start\" >= CAST($2::text AS date)"),
            "{}",
            p.sql
        );
        assert!(p.sql.contains("ORDER BY \"revenue\" DESC NULLS LAST, \"grain\" ASC NULLS LAST, \"period_start\" ASC NULLS LAST LIMIT 11 OFFSET 0"), "{}", p.sql);
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        for (q, why) in [
            (vec![("limit", "1001")], "above the maximum"),
            (vec![("limit", "-1")], "whole number"),
            (vec![("offset", "x")], "whole number"),
            (vec![("from", "2024-13-01")], "a date"),
            (vec![("sort", "revenue; DROP TABLE x")], "no column"),
            (vec![("sort", "")], "empty column"),
            (vec![("colour", "red")], "unknown parameter"),
            (vec![("grain", "a"), ("grain", "b")], "twice"),
            (vec![("cursor", "abc")], "not cursor"),
        ] {
            let err = run(&q, Shape::Json).expect_err(why);
            assert!(err.0.contains(why), "{q:?}: {err}");
        }
        assert_eq!(run(&[("limit", "0")], Shape::Json).unwrap().limit, 0);
        assert_eq!(
            run(&[], Shape::Csv).unwrap().limit,
            500,
            "CSV defaults to the export cap"
        );
        assert!(run(&[("limit", "501")], Shape::Csv).is_err());
    }

    #[test]
    fn cursors_are_signed() {
        let c = Cursors::new(b"secret");
        let key = vec!["2024-01-05".to_string(), "S1".to_string()];
        let token = c.encode("sales-lines", &key);
        assert_eq!(c.decode("sales-lines", &token).unwrap(), key);
        assert!(c.decode("orders", &token).is_err(), "bound to its endpoint");
        let (body, mac) = token.split_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode(br#"["2024-01-05","S9"]"#);
        assert!(c.decode("sales-lines", &format!("{forged}.{mac}")).is_err());
        assert!(c.decode("sales-lines", body).is_err());
        assert!(Cursors::new(b"other")
            .decode("sales-lines", &token)
            .is_err());
    }
}
