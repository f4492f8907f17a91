//! Sans-I/O SMTP protocol layer (RFC 5321 with Exchange 2010 reply texts).
//!
//! Only `std`, `base64` and `memchr` are used so the fuzz crate can compile this
//! module on its own through `#[path]`; siblings are therefore reached via `super::`.

pub mod command;
pub mod data;
pub mod line;
pub mod params;
pub mod reply;
pub mod response;
pub mod sasl;

pub use command::{Command, MAX_ADDRESS_LEN, ProtoError, parse_command};
pub use data::{ContentCheck, DataOutcome, DataReader, header_section_len};
pub use line::{Line, LineReader};
pub use params::{Body, MailParams, Notify, RcptParams, Ret, xtext_decode, xtext_encode};
pub use reply::Reply;
pub use response::{ResponseError, ResponseReader, parse_ehlo_keywords};
pub use sasl::{
    LOGIN_PASSWORD_CHALLENGE, LOGIN_USERNAME_CHALLENGE, SaslError, decode_base64_text,
    decode_plain, encode_base64_text, is_cancel,
};

/// A small deterministic generator for the tests that compare a fast path with the
/// byte-at-a-time rules on pseudo-random input.
#[cfg(test)]
pub(crate) fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}
