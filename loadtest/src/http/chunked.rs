//! Incremental decoder for `Transfer-Encoding: chunked` (RFC 9112 §7.1).
//!
//! It decodes in place: chunk framing is removed and the data bytes are moved
//! to the front of the same buffer, so a subscriber needs no second buffer per
//! connection. Framing may be split anywhere across reads; the decoder keeps
//! the few bytes of state it needs between calls.

use std::fmt;

/// Longest chunk-size line we accept, in hex digits (16 digits fill a u64).
const MAX_SIZE_DIGITS: u8 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex chunk size.
    Size { value: u64, digits: u8 },
    /// Skipping a chunk extension (`;name=value`) up to the line end.
    Extension { value: u64 },
    /// Saw the CR after the size line, expecting LF.
    SizeLf { value: u64 },
    /// Copying chunk data.
    Data { remaining: u64 },
    /// Expecting the CR (or bare LF) that ends the chunk data.
    DataCr,
    /// Expecting the LF that ends the chunk data.
    DataLf,
    /// In the trailer section; `at_line_start` tells an empty line (the end).
    Trailer { at_line_start: bool },
    /// Saw CR at the start of a trailer line: LF ends the body.
    TrailerEndLf,
    /// The last chunk and trailer were read: the body is complete.
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkedError {
    BadSize(u8),
    SizeTooLong,
    MissingCrlf(u8),
}

impl fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadSize(byte) => {
                write!(f, "chunked body: unexpected byte {byte:#04x} in chunk size")
            }
            Self::SizeTooLong => write!(
                f,
                "chunked body: chunk size longer than {MAX_SIZE_DIGITS} hex digits"
            ),
            Self::MissingCrlf(byte) => write!(
                f,
                "chunked body: expected CRLF after chunk data, got {byte:#04x}"
            ),
        }
    }
}

impl std::error::Error for ChunkedError {}

/// What one call to [`ChunkedDecoder::decode_in_place`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// The decoded data now occupies `buffer[..data_len]`.
    pub data_len: usize,
    /// The terminating zero-size chunk and trailer were read.
    pub finished: bool,
}

#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self {
            state: State::Size {
                value: 0,
                digits: 0,
            },
        }
    }
}

impl ChunkedDecoder {
    /// Decodes `buffer` (the next bytes of the body) in place. Bytes after the
    /// end of the body are ignored.
    pub fn decode_in_place(&mut self, buffer: &mut [u8]) -> Result<Decoded, ChunkedError> {
        let mut read = 0;
        let mut written = 0;
        while read < buffer.len() {
            if let State::Data { remaining } = self.state {
                let available = buffer.len() - read;
                let take = usize::try_from(remaining).map_or(available, |r| r.min(available));
                buffer.copy_within(read..read + take, written);
                read += take;
                written += take;
                let remaining = remaining - take as u64;
                self.state = if remaining == 0 {
                    State::DataCr
                } else {
                    State::Data { remaining }
                };
                continue;
            }
            if self.state == State::Done {
                break;
            }
            self.state = self.step(buffer[read])?;
            read += 1;
        }
        Ok(Decoded {
            data_len: written,
            finished: self.state == State::Done,
        })
    }

    /// Advances the framing state by one byte outside chunk data.
    fn step(&self, byte: u8) -> Result<State, ChunkedError> {
        let next = match self.state {
            State::Size { value, digits } => match byte {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                    if digits == MAX_SIZE_DIGITS {
                        return Err(ChunkedError::SizeTooLong);
                    }
                    let digit = (byte as char).to_digit(16).expect("hex digit") as u64;
                    State::Size {
                        value: value << 4 | digit,
                        digits: digits + 1,
                    }
                }
                _ if digits == 0 => return Err(ChunkedError::BadSize(byte)),
                b';' | b' ' | b'\t' => State::Extension { value },
                b'\r' => State::SizeLf { value },
                b'\n' => Self::after_size_line(value),
                _ => return Err(ChunkedError::BadSize(byte)),
            },
            State::Extension { value } => match byte {
                b'\r' => State::SizeLf { value },
                b'\n' => Self::after_size_line(value),
                _ => State::Extension { value },
            },
            State::SizeLf { value } => match byte {
                b'\n' => Self::after_size_line(value),
                _ => return Err(ChunkedError::BadSize(byte)),
            },
            State::DataCr => match byte {
                b'\r' => State::DataLf,
                // Some servers end chunk data with a bare LF; accept it.
                b'\n' => State::Size {
                    value: 0,
                    digits: 0,
                },
                _ => return Err(ChunkedError::MissingCrlf(byte)),
            },
            State::DataLf => match byte {
                b'\n' => State::Size {
                    value: 0,
                    digits: 0,
                },
                _ => return Err(ChunkedError::MissingCrlf(byte)),
            },
            State::Trailer { at_line_start } => match byte {
                b'\r' if at_line_start => State::TrailerEndLf,
                b'\n' if at_line_start => State::Done,
                b'\n' => State::Trailer {
                    at_line_start: true,
                },
                _ => State::Trailer {
                    at_line_start: false,
                },
            },
            State::TrailerEndLf => match byte {
                b'\n' => State::Done,
                _ => State::Trailer {
                    at_line_start: false,
                },
            },
            State::Data { .. } | State::Done => unreachable!("handled by decode_in_place"),
        };
        Ok(next)
    }

    fn after_size_line(size: u64) -> State {
        if size == 0 {
            State::Trailer {
                at_line_start: true,
            }
        } else {
            State::Data { remaining: size }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` split into pieces of `piece` bytes; returns the data and
    /// whether the body finished.
    fn decode_in_pieces(input: &[u8], piece: usize) -> Result<(Vec<u8>, bool), ChunkedError> {
        let mut decoder = ChunkedDecoder::default();
        let mut data = Vec::new();
        let mut finished = false;
        for part in input.chunks(piece) {
            let mut buffer = part.to_vec();
            let decoded = decoder.decode_in_place(&mut buffer)?;
            data.extend_from_slice(&buffer[..decoded.data_len]);
            finished = decoded.finished;
        }
        Ok((data, finished))
    }

    const BODY: &[u8] =
        b"5\r\nhello\r\n7;name=value\r\n, world\r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n";

    #[test]
    fn decodes_whole_body_with_extensions_and_trailer() {
        let (data, finished) = decode_in_pieces(BODY, BODY.len()).unwrap();
        assert_eq!(data, b"hello, world0123456789");
        assert!(finished);
    }

    #[test]
    fn decodes_identically_at_every_split_size() {
        for piece in 1..BODY.len() {
            let (data, finished) = decode_in_pieces(BODY, piece).unwrap();
            assert_eq!(data, b"hello, world0123456789", "piece size {piece}");
            assert!(finished, "piece size {piece}");
        }
    }

    #[test]
    fn an_open_stream_is_not_finished() {
        let (data, finished) = decode_in_pieces(b"3\r\nabc\r\n4\r\nde", 64).unwrap();
        assert_eq!(data, b"abcde");
        assert!(!finished);
    }

    #[test]
    fn accepts_bare_lf_line_ends() {
        let (data, finished) = decode_in_pieces(b"2\nhi\n0\n\n", 3).unwrap();
        assert_eq!(data, b"hi");
        assert!(finished);
    }

    #[test]
    fn ignores_bytes_after_the_last_chunk() {
        let (data, finished) = decode_in_pieces(b"1\r\nx\r\n0\r\n\r\nGARBAGE", 64).unwrap();
        assert_eq!(data, b"x");
        assert!(finished);
    }

    #[test]
    fn rejects_bad_framing() {
        assert_eq!(
            decode_in_pieces(b"zz\r\n", 8),
            Err(ChunkedError::BadSize(b'z'))
        );
        assert_eq!(
            decode_in_pieces(b"1\r\nab\r\n", 8),
            Err(ChunkedError::MissingCrlf(b'b'))
        );
        assert_eq!(
            decode_in_pieces(b"11111111111111111\r\n", 32),
            Err(ChunkedError::SizeTooLong)
        );
    }
}
