//! verigate daemon library.
