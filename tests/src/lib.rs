//! Workspace integration tests (see `tests/`).
