use thiserror::Error;

/// A topic name or part that Kafka would reject.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid topic part {part:?}: use 1-200 characters among a-z A-Z 0-9 '_' '-' (and '.' in the prefix)")]
pub struct TopicNameError {
    pub part: String,
}

fn check(part: &str, allow_dot: bool) -> Result<(), TopicNameError> {
    let ok = !part.is_empty()
        && part.len() <= 200
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || (allow_dot && c == '.'));
    if ok {
        Ok(())
    } else {
        Err(TopicNameError {
            part: part.to_string(),
        })
    }
}

/// `<prefix>.<source>.<entity>`, e.g. `etl.csv.sales`.
pub fn data_topic(prefix: &str, source: &str, entity: &str) -> Result<String, TopicNameError> {
    check(prefix, true)?;
    check(source, false)?;
    check(entity, false)?;
    Ok(format!("{prefix}.{source}.{entity}"))
}

/// `<prefix>.dlq`: records that could not be parsed, from every source.
pub fn dead_letter_topic(prefix: &str) -> Result<String, TopicNameError> {
    check(prefix, true)?;
    Ok(format!("{prefix}.dlq"))
}

/// Regular expression (librdkafka syntax, leading `^`) matching every topic of a prefix.
pub fn topic_pattern(prefix: &str) -> String {
    let escaped: String = prefix
        .chars()
        .flat_map(|c| if c == '.' { vec!['\\', '.'] } else { vec![c] })
        .collect();
    format!("^{escaped}\\..+")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(data_topic("etl", "csv", "sales").unwrap(), "etl.csv.sales");
        assert_eq!(dead_letter_topic("acme.prod").unwrap(), "acme.prod.dlq");
        assert!(data_topic("etl", "csv", "sa les").is_err());
        assert!(data_topic("etl", "c.sv", "sales").is_err());
        assert!(data_topic("", "csv", "sales").is_err());
        assert_eq!(topic_pattern("a.b"), "^a\\.b\\..+");
    }
}
