//! G.722 at 64 kbit/s, decoded by `ezk-g722` (a port of SpanDSP's codec).

use std::fmt;

use ezk_g722::libg722::{decoder::Decoder as Inner, Bitrate};

use super::{CodecError, Concealment, Decoder};

/// Decodes G.722 payloads: one byte per pair of 16 kHz samples.
///
/// A lost frame is concealed by the shared fade (see the module above); the
/// ADPCM state is left as the last good frame left it, so the first frame after a
/// loss may carry a short artefact until the predictor adapts.
pub(crate) struct G722Decoder {
    inner: Inner,
    concealment: Concealment,
}

impl G722Decoder {
    pub(crate) fn new() -> Self {
        // RTP carries G.722 as whole 8-bit code words, one per 16 kHz sample pair
        // (RFC 3551 §4.5.2): mode 1, unpacked, with the full 16 kHz output.
        let inner = Inner::new(Bitrate::Mode1_64000, false, false);
        Self {
            inner,
            concealment: Concealment::new(16000),
        }
    }
}

impl fmt::Debug for G722Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The ADPCM state is opaque and not Debug.
        f.debug_struct("G722Decoder")
            .field("concealment", &self.concealment)
            .finish_non_exhaustive()
    }
}

impl Decoder for G722Decoder {
    fn sample_rate(&self) -> u32 {
        16000
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        let pcm = self.inner.decode(payload);
        self.concealment.remember(&pcm);
        out.extend_from_slice(&pcm);
        Ok(())
    }

    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        self.concealment.fill(samples, out);
    }
}
