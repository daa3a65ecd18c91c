//! Integration tests for http-pack: one binary, one module per concern.

mod aws_chunked;
mod convert;
mod decode_errors;
mod http1;
mod limits;
mod properties;
mod spec_examples;
mod strategies;
mod support;
