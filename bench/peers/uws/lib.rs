//! Empty: the crate exists to fetch its dependency's sources (see Cargo.toml).
