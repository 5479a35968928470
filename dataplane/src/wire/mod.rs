//! Zero-copy header views (in progress).
