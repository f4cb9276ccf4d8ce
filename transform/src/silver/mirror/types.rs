//! The column types a mirror table may have. A schema event comes from a Kafka topic, and
//! whoever can write to the topic chooses its content: a type is interpolated into DDL
//! (`CREATE TABLE`, `ALTER COLUMN … TYPE`), so only the types the MySQL agent produces are
//! accepted, parsed and written back in one canonical spelling. Anything else (a type with a
//! semicolon, a comment, a function call, an unknown name) makes the schema event unreadable:
//! it is quarantined with the reason, and no SQL is built from it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A PostgreSQL column type from the allow-list, in canonical spelling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PgType(String);

/// The types the agent's mapping produces (see `ingest::sources::mysql::schema::pg_type`).
pub const ALLOWED: &str = "smallint, integer, bigint, real, double precision, numeric, numeric(p,s) with 1 <= p <= 1000 and 0 <= s <= p, boolean, date, timestamp, timestamp(p), timestamptz, timestamptz(p) with 0 <= p <= 6, text, jsonb, bytea";

impl PgType {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses a type name; `Err` names the type and lists the accepted ones.
    pub fn parse(raw: &str) -> Result<PgType, String> {
        let t = raw.trim().to_ascii_lowercase();
        let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
        let simple = [
            "smallint",
            "integer",
            "bigint",
            "real",
            "double precision",
            "numeric",
            "boolean",
            "date",
            "timestamp",
            "timestamptz",
            "text",
            "jsonb",
            "bytea",
        ];
        if simple.contains(&t.as_str()) {
            return Ok(PgType(t));
        }
        let refuse = || {
            format!(
                "column type {:?} is not one a mirror table may have (accepted: {ALLOWED})",
                truncate(raw)
            )
        };
        let (name, args) = t
            .strip_suffix(')')
            .and_then(|s| s.split_once('('))
            .ok_or_else(refuse)?;
        let nums: Vec<u32> = args
            .split(',')
            .map(|a| a.trim().parse::<u32>())
            .collect::<Result<_, _>>()
            .map_err(|_| refuse())?;
        match (name.trim(), nums.as_slice()) {
            ("numeric", [p]) if (1..=1000).contains(p) => Ok(PgType(format!("numeric({p},0)"))),
            ("numeric", [p, s]) if (1..=1000).contains(p) && s <= p => {
                Ok(PgType(format!("numeric({p},{s})")))
            }
            (n @ ("timestamp" | "timestamptz"), [p]) if *p <= 6 => Ok(PgType(format!("{n}({p})"))),
            _ => Err(refuse()),
        }
    }
}

/// At most 80 characters of an untrusted type name, for a reason.
fn truncate(raw: &str) -> String {
    raw.chars().take(80).collect()
}

impl TryFrom<String> for PgType {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        PgType::parse(&s)
    }
}

impl From<PgType> for String {
    fn from(t: PgType) -> String {
        t.0
    }
}

impl fmt::Display for PgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::PgType;

    #[test]
    fn the_agents_types_are_accepted_in_canonical_spelling() {
        for (raw, canon) in [
            ("bigint", "bigint"),
            ("Double  Precision", "double precision"),
            ("numeric(20,0)", "numeric(20,0)"),
            ("numeric( 12 , 2 )", "numeric(12,2)"),
            ("numeric(7)", "numeric(7,0)"),
            ("timestamp(6)", "timestamp(6)"),
            ("timestamptz(3)", "timestamptz(3)"),
            ("jsonb", "jsonb"),
            ("bytea", "bytea"),
            ("text", "text"),
        ] {
            assert_eq!(PgType::parse(raw).unwrap().as_str(), canon, "{raw}");
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for raw in [
            "text); DROP TABLE silver.sales; --",
            "text DEFAULT pg_sleep(10)",
            "int4range",
            "numeric(0,0)",
            "numeric(10,11)",
            "numeric(1001)",
            "timestamp(7)",
            "text /* x */",
            "text[]",
            "",
            "varchar(10)",
            "numeric(1,2,3)",
            "numeric(-1)",
        ] {
            let e = PgType::parse(raw).unwrap_err();
            assert!(
                e.contains("is not one a mirror table may have"),
                "{raw}: {e}"
            );
        }
    }

    #[test]
    fn deserializing_goes_through_the_allow_list() {
        let ok: PgType = serde_json::from_str("\"integer\"").unwrap();
        assert_eq!(ok.as_str(), "integer");
        let e = serde_json::from_str::<PgType>("\"text; SELECT 1\"").unwrap_err();
        assert!(e.to_string().contains("not one a mirror table may have"));
    }
}
