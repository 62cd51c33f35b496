//! The recording pipeline of one call, without I/O: RTP packets and the time in,
//! encoded audio out.
//!
//! ```text
//! tap packets -> rtp -> jitter (one per direction) -> codec (decode) -> mix -> wav
//! ```
//!
//! - [`rtp`]: reading RTP headers (RFC 3550 §5.1) defensively.
//! - [`jitter`]: a jitter buffer per direction that places each frame on the call's
//!   timeline from its RTP timestamp, reorders, drops duplicates, fills losses and
//!   holds with silence of the right length, and keeps RFC 4733 DTMF and RFC 3389
//!   comfort noise as events.
//! - [`codec`]: G.711 (PCMU, PCMA), G.722 and Opus decoders.
//! - [`mix`]: both directions aligned in time, stereo or mono.
//! - [`wav`]: a streaming WAV writer.
//! - [`encode`]: the recording as a stream of Ogg Opus or WAV bytes.
//! - [`export`]: a finished recording as a WAV of exact length or Ogg Opus, for people.
//! - [`announcement`]: the recording announcement as RTP packets in a call's codec.
//!
//! [`Recorder`] runs them: one task per recorded call, fed by the B2BUA's tap and
//! writing through the store's encrypted writer, on threads of its own; and, when
//! recordings are kept as Ogg Opus, a low-priority thread that compresses each
//! call's live WAV once the call is over (`transcode.rs`).

pub mod announcement;
pub mod codec;
pub mod encode;
pub mod export;
pub mod formats;
pub mod jitter;
pub mod mix;
pub mod pipeline;
mod recorder;
pub mod rtp;
mod task;
mod transcode;
pub mod wav;

pub use recorder::{CallStart, Recorder, RecorderConfig, RecorderHandle, RecorderStats};
