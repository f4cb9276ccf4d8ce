//! Transform.
