//! The consumer side of the change-event contract (`contract/src/envelope.rs`): a Kafka
//! record value as the transform reads it.
//!
//! Input: the record value's bytes.
//!
//! Checked:
//! * no panic, whatever the bytes;
//! * an accepted envelope has the image its `op` needs (`d`: before, others: after);
//! * `source_key` of a CSV source is `csv:<file_id>:<offset>`, of any other connector
//!   `<connector>:<source_key>`, and is refused without those fields;
//! * an accepted envelope written back as the agents write it (`Envelope`, images and source
//!   block as they were) parses again to the same op, images, source block, source fields
//!   and source key.
#![no_main]

use etl_contract::{source_key, Envelope, EnvelopeIn, Op, SourceFields};
use libfuzzer_sys::fuzz_target;

fn check_source_key(src: &SourceFields) -> Option<String> {
    let key = source_key(src);
    match (src.connector.as_str(), &key) {
        ("csv", Ok(k)) => {
            let (id, off) = (src.file_id.as_deref(), src.offset);
            assert_eq!(
                Some(k.as_str()),
                id.zip(off).map(|(i, o)| format!("csv:{i}:{o}")).as_deref()
            );
        }
        ("csv", Err(_)) => assert!(src.file_id.is_none() || src.offset.is_none()),
        (c, Ok(k)) => {
            let own = src.source_key.as_deref().unwrap_or_default();
            assert!(!own.is_empty());
            assert_eq!(k, &format!("{c}:{own}"));
        }
        (_, Err(_)) => assert!(src.source_key.as_deref().is_none_or(str::is_empty)),
    }
    key.ok()
}

fuzz_target!(|data: &[u8]| {
    let Ok((env, src)) = EnvelopeIn::parse(data) else {
        return;
    };
    match env.op {
        Op::Delete => assert!(env.before.is_some(), "d without a before image accepted"),
        _ => assert!(env.after.is_some(), "an op without an after image accepted"),
    }
    let key = check_source_key(&src);

    let ts_ms = env.ts_ms.unwrap_or(0);
    let written = Envelope {
        before: env.before,
        after: env.after,
        op: env.op,
        source: &env.source,
        ts_ms,
    };
    let bytes = serde_json::to_vec(&written).expect("an envelope serializes");
    let (back, back_src) = EnvelopeIn::parse(&bytes).expect("a written envelope parses");
    assert_eq!(back.op, env.op);
    assert_eq!(back.before.map(|r| r.get()), env.before.map(|r| r.get()));
    assert_eq!(back.after.map(|r| r.get()), env.after.map(|r| r.get()));
    assert_eq!(back.source.get(), env.source.get());
    assert_eq!(back.ts_ms, Some(ts_ms));
    assert_eq!(format!("{back_src:?}"), format!("{src:?}"));
    assert_eq!(check_source_key(&back_src), key);
});
