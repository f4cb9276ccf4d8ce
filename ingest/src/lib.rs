//! Source agents.
