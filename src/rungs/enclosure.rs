//! Rung (d).
