//! Change-event contract.
