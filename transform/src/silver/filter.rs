//! Declarative row filters of a silver model (`[transform.silver.<model>] filter = [...]`):
//! `<field> <op> <literal>`, compared on the typed value after parsing and cleaning. A row
//! that fails a filter is counted as filtered, not quarantined.

use crate::silver::{FieldType, Mapping, Model};
use crate::sql::Value;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use std::cmp::Ordering;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// One parsed filter, bound to a field of its model.
#[derive(Debug, Clone)]
pub struct RowFilter {
    field: usize,
    op: Op,
    value: Value,
    text: String,
}

impl RowFilter {
    /// Parses `<field> <op> <literal>` for `model`: the field must exist and the literal must
    /// have the field's type (text in single or double quotes, or bare).
    pub fn parse(model: &Model, text: &str) -> Result<RowFilter, String> {
        let t = text.trim();
        let ops = [
            ("!=", Op::Ne),
            ("<>", Op::Ne),
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("=", Op::Eq),
            (">", Op::Gt),
            ("<", Op::Lt),
        ];
        let (at, sym, op) = ops
            .iter()
            .filter_map(|(sym, op)| t.find(sym).map(|i| (i, *sym, *op)))
            .min_by_key(|(i, sym, _)| (*i, usize::MAX - sym.len()))
            .ok_or("expected `<field> <op> <value>` with op one of = != > >= < <=")?;
        let name = t[..at].trim();
        let lit = t[at + sym.len()..].trim();
        let field = model
            .fields
            .iter()
            .position(|f| f.name == name)
            .ok_or_else(|| {
                format!(
                    "model {} has no field {name:?} (fields: {})",
                    model.name,
                    model
                        .fields
                        .iter()
                        .map(|f| f.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
        let unquoted = lit
            .strip_prefix('\'')
            .and_then(|l| l.strip_suffix('\''))
            .or_else(|| lit.strip_prefix('"').and_then(|l| l.strip_suffix('"')))
            .unwrap_or(lit);
        let value = match model.fields[field].ty {
            FieldType::Text => Value::Text(unquoted.to_string()),
            FieldType::Int => Value::Int(
                unquoted
                    .parse()
                    .map_err(|_| format!("{name} is a whole number; {lit:?} is not"))?,
            ),
            FieldType::Decimal => Value::Decimal(
                Decimal::from_str(unquoted)
                    .map_err(|_| format!("{name} is a number; {lit:?} is not"))?,
            ),
            FieldType::Date => Value::Date(
                NaiveDate::parse_from_str(unquoted, "%Y-%m-%d")
                    .map_err(|_| format!("{name} is a date; write it as 'YYYY-MM-DD'"))?,
            ),
        };
        Ok(RowFilter {
            field,
            op,
            value,
            text: t.to_string(),
        })
    }

    /// The filter as configured.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// True when the typed row passes. A missing value passes only `!=`.
    pub fn keeps(&self, values: &[Value]) -> bool {
        let ord = match (&values[self.field], &self.value) {
            (Value::Text(a), Value::Text(b)) => a.cmp(b),
            (Value::Int(a), Value::Int(b)) => a.cmp(b),
            (Value::Decimal(a), Value::Decimal(b)) => a.cmp(b),
            (Value::Date(a), Value::Date(b)) => a.cmp(b),
            _ => return self.op == Op::Ne,
        };
        match self.op {
            Op::Eq => ord == Ordering::Equal,
            Op::Ne => ord != Ordering::Equal,
            Op::Gt => ord == Ordering::Greater,
            Op::Ge => ord != Ordering::Less,
            Op::Lt => ord == Ordering::Less,
            Op::Le => ord != Ordering::Greater,
        }
    }
}

impl Mapping {
    /// The first filter the typed row fails, if any.
    pub fn filtered_by(&self, values: &[Value]) -> Option<&RowFilter> {
        self.filters.iter().find(|f| !f.keeps(values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::silver::models::sales::MODEL as SALES;

    #[test]
    fn filters_parse_and_compare_typed_values() {
        let f = RowFilter::parse(&SALES, "quantity >= 2").unwrap();
        let mut row = vec![Value::Null; SALES.fields.len()];
        row[5] = Value::Decimal(Decimal::from(2));
        assert!(f.keeps(&row));
        row[5] = Value::Decimal(Decimal::from_str("1.5").unwrap());
        assert!(!f.keeps(&row));
        let f = RowFilter::parse(&SALES, "customer_id != 'TEST'").unwrap();
        row[2] = Value::Text("TEST".into());
        assert!(!f.keeps(&row));
        row[2] = Value::Text("C1".into());
        assert!(f.keeps(&row));
        let f = RowFilter::parse(&SALES, "sale_date < 2024-02-01").unwrap();
        row[1] = Value::Date(NaiveDate::from_ymd_opt(2024, 1, 31).unwrap());
        assert!(f.keeps(&row));
    }

    #[test]
    fn bad_filters_say_why() {
        assert!(RowFilter::parse(&SALES, "age > 20")
            .unwrap_err()
            .contains("no field \"age\""));
        assert!(RowFilter::parse(&SALES, "quantity > lots")
            .unwrap_err()
            .contains("is a number"));
        assert!(RowFilter::parse(&SALES, "quantity").is_err());
    }
}
