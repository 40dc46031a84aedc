//! The server's integration tests, in one binary (one link instead of three): a real server on
//! 127.0.0.1 (port 0) over a real store, driven over HTTP.

mod api;
mod chat;
mod common;
mod fuzz;
mod library;
mod lifecycle;
mod tenants;
