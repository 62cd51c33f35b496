//! Sans-I/O SIP for callvault.
//!
//! Bytes and the current time go in; messages to send and the next timer come out. No
//! module here owns a socket or reads a clock, so every state machine can be driven by a
//! test with simulated time.

pub mod dialog;
pub mod framing;
pub mod header;
pub mod message;
mod parse;
pub mod sdp;
pub mod transaction;
pub mod uri;
pub mod validate;

pub use framing::{FramingError, StreamEvent, StreamFramer};
pub use header::{CSeq, NameAddr, Param, Params, Via};
pub use message::{Header, Headers, Message, Method, Request, Response};
pub use parse::parse;
pub use uri::{user_or_number, SipUri, TelUri, Uri};
pub use validate::{receive, validate_request, Disposition, Rejection};

/// Why a message could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("message head is not terminated by an empty line")]
    Incomplete,
    #[error("message head is not valid UTF-8")]
    NotUtf8,
    #[error("invalid start line")]
    InvalidStartLine,
    #[error("unsupported SIP version")]
    UnsupportedVersion,
    #[error("invalid status code")]
    InvalidStatus,
    #[error("invalid method token")]
    InvalidMethod,
    #[error("header line without a name and colon")]
    InvalidHeaderLine,
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("invalid {0} header")]
    InvalidHeader(&'static str),
    #[error("invalid header parameter")]
    InvalidParam,
    #[error("invalid name-addr")]
    InvalidNameAddr,
    #[error("Content-Length {declared} exceeds the {received} body bytes received")]
    BodyTooShort { declared: usize, received: usize },
    #[error("more than one {0} header")]
    DuplicateHeader(&'static str),
    #[error("invalid Request-URI")]
    InvalidRequestUri,
    #[error("invalid URI")]
    InvalidUri,
}
