//! Source agents: each source captures changes and publishes them to Kafka as change events
//! (see the `etl-contract` crate). A source's position advances only after the broker
//! acknowledged the records it covers.

pub mod checkpoint;
pub mod config;
pub mod ops;
pub mod publisher;
pub mod sources;

/// Internals re-exported for the fuzz targets in `fuzz/` (see fuzz/README.md); not an API.
#[doc(hidden)]
pub mod fuzzing {
    /// The CSV record splitter.
    #[cfg(any(feature = "source-csv", feature = "source-blob"))]
    pub mod csv {
        pub use crate::sources::csv::records::{count_nl, Item, Oversized, RawRecord, Splitter};
    }

    /// The binlog side of the MySQL source: table shapes, value rendering, change events.
    #[cfg(feature = "source-mysql")]
    pub mod mysql {
        pub use crate::sources::mysql::ddl::{parse as parse_ddl, DdlInfo};
        pub use crate::sources::mysql::schema::{encode, MysqlSourceBlock, TableSchema};
        pub use crate::sources::mysql::stream::row_values;
        pub use crate::sources::mysql::values::{render, Kind, Out};
    }
}
