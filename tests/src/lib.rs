//! Helpers for end-to-end tests (processes on port 0).
