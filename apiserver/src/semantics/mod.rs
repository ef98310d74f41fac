//! Per-kind object semantics. (Being written: see issue 4.)
