//! The Mercure protocol (draft-07 profile) at `/.well-known/mercure`: see
//! the book's Mercure page for what is implemented and how Mercure's URI
//! topics meet ssehub's topic names.

mod config;

pub use config::{MercureConfig, MercureJwtConfig, MercureSettings, validate};
