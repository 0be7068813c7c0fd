//! A lean HTTP/1.1 client: just enough to open thousands of SSE streams with
//! a few hundred bytes of state each, and to publish over keep-alive
//! connections. Each piece does one job: [`url`] splits URLs, [`request`]
//! writes request heads, [`response`] parses response heads, [`body`] and
//! [`chunked`] undo body framing, [`connection`] drives a socket.

pub mod body;
pub mod chunked;
pub mod connection;
pub mod request;
pub mod response;
pub mod url;
