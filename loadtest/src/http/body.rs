//! Removes body framing (chunked, length or until-close) in place.

use super::chunked::{ChunkedDecoder, ChunkedError, Decoded};
use super::response::Framing;

#[derive(Debug, Clone)]
pub enum BodyDecoder {
    Chunked(ChunkedDecoder),
    Length { remaining: u64 },
    UntilClose,
}

impl BodyDecoder {
    pub fn new(framing: Framing) -> Self {
        match framing {
            Framing::Chunked => Self::Chunked(ChunkedDecoder::default()),
            Framing::Length(len) => Self::Length { remaining: len },
            Framing::UntilClose => Self::UntilClose,
        }
    }

    /// Decodes the next body bytes in place; see [`Decoded`].
    pub fn decode_in_place(&mut self, buffer: &mut [u8]) -> Result<Decoded, ChunkedError> {
        match self {
            Self::Chunked(decoder) => decoder.decode_in_place(buffer),
            Self::Length { remaining } => {
                let take =
                    usize::try_from(*remaining).map_or(buffer.len(), |r| r.min(buffer.len()));
                *remaining -= take as u64;
                Ok(Decoded {
                    data_len: take,
                    finished: *remaining == 0,
                })
            }
            Self::UntilClose => Ok(Decoded {
                data_len: buffer.len(),
                finished: false,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_framing_stops_at_the_length() {
        let mut decoder = BodyDecoder::new(Framing::Length(5));
        let mut first = *b"abc";
        assert_eq!(
            decoder.decode_in_place(&mut first).unwrap(),
            Decoded {
                data_len: 3,
                finished: false
            }
        );
        let mut second = *b"defgh";
        assert_eq!(
            decoder.decode_in_place(&mut second).unwrap(),
            Decoded {
                data_len: 2,
                finished: true
            }
        );
    }
}
