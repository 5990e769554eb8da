//! Semihosting output without `core::fmt` (its formatting machinery is several KB of flash):
//! strings and unsigned/signed integers, enough for the lean build and the common lines.

use cortex_m_semihosting::export::hstdout_str;

/// Prints a string.
pub fn s(text: &str) {
    hstdout_str(text);
}

/// Prints an integer in decimal.
pub fn int(v: i32) {
    let mut buf = [0u8; 11];
    let mut i = buf.len();
    let mut u = v.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    if v < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    // SAFETY: only ASCII digits and '-' were written to buf[i..]: valid UTF-8 (unchecked,
    // so the lean build carries no UTF-8 validation).
    s(unsafe { core::str::from_utf8_unchecked(&buf[i..]) });
}

/// Prints `[a, b, c]`.
#[cfg(not(any(feature = "f32", feature = "train")))]
pub fn row(values: &[i8]) {
    s("[");
    for (i, &v) in values.iter().enumerate() {
        if i > 0 {
            s(", ");
        }
        int(v as i32);
    }
    s("]");
}
