//! Helpers shared by the integration tests that build `.npy` files by hand.

/// A version-1 `.npy` header with the given dict text, padded as NumPy pads it.
pub fn raw_header(dict: &str) -> Vec<u8> {
    let mut text = dict.to_string();
    while (10 + text.len() + 1) % 64 != 0 {
        text.push(' ');
    }
    text.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((text.len() as u16).to_le_bytes());
    out.extend(text.as_bytes());
    out
}
