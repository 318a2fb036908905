//! The simulation harness.
