//! JSON text as CPython's `json` module writes and reads it with its default
//! arguments (`ensure_ascii=True`, `allow_nan=True`, separators `", "` and
//! `": "`, `strict=True`).
//!
//! Byte-for-byte equality with `json.dumps`/`json.loads` is the contract, so
//! this module follows CPython's `Modules/_json.c` and `Objects/floatobject.c`
//! rather than RFC 8259 where they differ (NaN and Infinity, lone surrogates).
//! Anything this parser does not reproduce exactly (invalid documents whose
//! error message CPython words, lone surrogate escapes, very deep nesting)
//! comes back as [`DecodeError::Unsupported`] so the caller can let CPython
//! handle that document.

// ----------------------------------------------------------------------------- writing

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `value` as `json.dumps` writes a float: `float.__repr__`, with
/// `NaN`, `Infinity` and `-Infinity` for the non-finite values.
pub fn write_float(out: &mut Vec<u8>, value: f64) {
    if value.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if value.is_infinite() {
        out.extend_from_slice(if value > 0.0 { b"Infinity" } else { b"-Infinity" });
    } else {
        write_float_repr(out, value);
    }
}

/// Appends `repr(value)` for a finite float.
///
/// Ryu yields the shortest digits that round-trip, as CPython's `repr` does
/// (both pick the closest such string); only the layout differs: CPython
/// writes positional notation when the decimal point position `decpt`
/// (value = 0.DIGITS x 10^decpt) is in `-4 < decpt <= 16`, otherwise
/// `d.ddde±XX` with at least two exponent digits.
pub fn write_float_repr(out: &mut Vec<u8>, value: f64) {
    let mut buffer = ryu::Buffer::new();
    let text = buffer.format_finite(value).as_bytes();
    let (negative, text) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let (mantissa, exponent) = match text.iter().position(|&b| b == b'e') {
        Some(at) => (&text[..at], parse_exponent(&text[at + 1..])),
        None => (text, 0),
    };
    let (whole, fraction) = match mantissa.iter().position(|&b| b == b'.') {
        Some(at) => (&mantissa[..at], &mantissa[at + 1..]),
        None => (mantissa, &mantissa[..0]),
    };
    let mut digits = [0u8; 40];
    let mut count = 0;
    for &b in whole.iter().chain(fraction) {
        digits[count] = b;
        count += 1;
    }
    let mut decpt = whole.len() as i32 + exponent;
    let mut first = 0;
    while first + 1 < count && digits[first] == b'0' {
        first += 1;
        decpt -= 1;
    }
    while count > first + 1 && digits[count - 1] == b'0' {
        count -= 1;
    }
    let digits = &digits[first..count];
    if digits == b"0" {
        decpt = 1;
    }

    if negative {
        out.push(b'-');
    }
    if -4 < decpt && decpt <= 16 {
        if decpt <= 0 {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat(b'0').take((-decpt) as usize));
            out.extend_from_slice(digits);
        } else if decpt as usize >= digits.len() {
            out.extend_from_slice(digits);
            out.extend(std::iter::repeat(b'0').take(decpt as usize - digits.len()));
            out.extend_from_slice(b".0");
        } else {
            let (whole, fraction) = digits.split_at(decpt as usize);
            out.extend_from_slice(whole);
            out.push(b'.');
            out.extend_from_slice(fraction);
        }
    } else {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        let exponent = decpt - 1;
        out.push(b'e');
        out.push(if exponent < 0 { b'-' } else { b'+' });
        let magnitude = exponent.unsigned_abs();
        if magnitude < 10 {
            out.push(b'0');
        }
        write_u64(out, magnitude as u64);
    }
}

fn parse_exponent(text: &[u8]) -> i32 {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    let magnitude = digits.iter().fold(0i32, |acc, &d| acc * 10 + (d - b'0') as i32);
    if negative {
        -magnitude
    } else {
        magnitude
    }
}

/// Appends the decimal digits of `value`.
pub fn write_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// Appends `value` as `int.__repr__` writes it.
pub fn write_i64(out: &mut Vec<u8>, value: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

fn write_unit_escape(out: &mut Vec<u8>, unit: u16) {
    let hex = |shift: u16| HEX[((unit >> shift) & 0xf) as usize];
    out.extend_from_slice(&[b'\\', b'u', hex(12), hex(8), hex(4), hex(0)]);
}

/// The escape `json.dumps` writes for an ASCII byte, or `None` when the byte
/// is written as is (printable ASCII other than `"` and `\`).
#[inline]
fn ascii_escape(byte: u8) -> Option<&'static [u8]> {
    match byte {
        b'"' => Some(b"\\\""),
        b'\\' => Some(b"\\\\"),
        b'\n' => Some(b"\\n"),
        b'\r' => Some(b"\\r"),
        b'\t' => Some(b"\\t"),
        0x08 => Some(b"\\b"),
        0x0c => Some(b"\\f"),
        _ => None,
    }
}

/// The high bit of each of the eight bytes of `word` (little-endian) that is
/// special, by the usual SWAR zero-byte tests: below `' '`, `"` or `\\`, and
/// with `NON_ASCII`, DEL and non-ASCII too. Bits above the lowest set one may
/// be spurious (a borrow carries), so only the lowest is used as a position.
#[inline]
fn special_mask<const NON_ASCII: bool>(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_bytes = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let mut mask = (word.wrapping_sub(ONES * 0x20) & !word & HIGHS)
        | zero_bytes(word ^ (ONES * b'"' as u64))
        | zero_bytes(word ^ (ONES * b'\\' as u64));
    if NON_ASCII {
        mask |= (word & HIGHS) | zero_bytes(word ^ (ONES * 0x7f));
    }
    mask
}

#[inline]
fn is_special<const NON_ASCII: bool>(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\' || (NON_ASCII && byte >= 0x7f)
}

/// The index of the first special byte (see [`special_mask`]) at or after
/// `i`, or `bytes.len()`. Strings are mostly plain text: it is skipped sixteen
/// bytes per step (SSE2, part of every x86_64), then eight (SWAR).
#[inline]
fn first_special<const NON_ASCII: bool>(bytes: &[u8], mut i: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE2 is always available on x86_64; loads stay inside `bytes`.
    unsafe {
        use std::arch::x86_64::*;
        let (low, high) = (_mm_set1_epi8(0x1f), _mm_set1_epi8(0x7f));
        let (quote, backslash) = (_mm_set1_epi8(b'"' as i8), _mm_set1_epi8(b'\\' as i8));
        while i + 16 <= bytes.len() {
            let v = _mm_loadu_si128(bytes.as_ptr().add(i).cast());
            let control = _mm_cmpeq_epi8(_mm_min_epu8(v, low), v);
            let mut special = _mm_or_si128(control, _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)));
            if NON_ASCII {
                special = _mm_or_si128(special, _mm_cmpeq_epi8(_mm_max_epu8(v, high), v));
            }
            let mask = _mm_movemask_epi8(special) as u32;
            if mask != 0 {
                return i + mask.trailing_zeros() as usize;
            }
            i += 16;
        }
    }
    while i + 8 <= bytes.len() {
        let mask = special_mask::<NON_ASCII>(u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap()));
        if mask != 0 {
            return i + (mask.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < bytes.len() && !is_special::<NON_ASCII>(bytes[i]) {
        i += 1;
    }
    i
}

fn write_code_unit(out: &mut Vec<u8>, unit: u16) {
    if unit < 0x80 {
        let byte = unit as u8;
        if !is_special::<true>(byte) {
            out.push(byte);
        } else if let Some(escape) = ascii_escape(byte) {
            out.extend_from_slice(escape);
        } else {
            write_unit_escape(out, unit);
        }
    } else {
        write_unit_escape(out, unit);
    }
}

/// Appends `s` as a quoted JSON string the way `json.dumps` (ensure_ascii)
/// writes it: every non-ASCII character as `\uXXXX` UTF-16 code units.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    loop {
        i = first_special::<true>(bytes, i);
        if i >= bytes.len() {
            break;
        }
        let byte = bytes[i];
        out.extend_from_slice(&bytes[start..i]);
        if byte < 0x80 {
            write_code_unit(out, byte as u16);
            i += 1;
        } else {
            // Valid UTF-8 (it came from a str): decode the sequence in place.
            let (code, width) = match byte {
                0xc0..=0xdf => (((byte as u32 & 0x1f) << 6) | (bytes[i + 1] as u32 & 0x3f), 2),
                0xe0..=0xef => {
                    (((byte as u32 & 0x0f) << 12) | ((bytes[i + 1] as u32 & 0x3f) << 6) | (bytes[i + 2] as u32 & 0x3f), 3)
                }
                _ => (
                    ((byte as u32 & 0x07) << 18)
                        | ((bytes[i + 1] as u32 & 0x3f) << 12)
                        | ((bytes[i + 2] as u32 & 0x3f) << 6)
                        | (bytes[i + 3] as u32 & 0x3f),
                    4,
                ),
            };
            if code >= 0x10000 {
                let offset = code - 0x10000;
                write_unit_escape(out, 0xd800 | (offset >> 10) as u16);
                write_unit_escape(out, 0xdc00 | (offset & 0x3ff) as u16);
            } else {
                write_unit_escape(out, code as u16);
            }
            i += width;
        }
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends a string given as UTF-16 code units, which may hold lone
/// surrogates (Python strings can; Rust strings cannot). `json.dumps` writes
/// each such unit as its own `\uXXXX`.
pub fn write_utf16(out: &mut Vec<u8>, units: &[u16]) {
    out.push(b'"');
    for &unit in units {
        write_code_unit(out, unit);
    }
    out.push(b'"');
}

// ----------------------------------------------------------------------------- reading

/// Nesting deeper than this is left to CPython, which raises `RecursionError`
/// or parses it, depending on its own recursion limit.
pub const MAX_NESTING: usize = 512;

/// Why a document was not decoded.
#[derive(Debug, PartialEq)]
pub enum DecodeError<E> {
    /// Not decoded here: CPython's `json.loads` must handle this document
    /// (it raises its exact `JSONDecodeError`, or decodes what this parser
    /// does not: lone surrogate escapes, nesting deeper than `MAX_NESTING`).
    Unsupported(&'static str),
    /// The sink failed building a value.
    Sink(E),
}

/// Builds the values a parse produces.
pub trait Sink {
    type Value;
    type Array;
    type Object;
    type Key;
    type Error;

    fn null(&mut self) -> Result<Self::Value, Self::Error>;
    fn boolean(&mut self, value: bool) -> Result<Self::Value, Self::Error>;
    /// An integer literal (`-?(0|[1-9][0-9]*)`), of any length.
    fn integer(&mut self, literal: &str) -> Result<Self::Value, Self::Error>;
    fn float(&mut self, value: f64) -> Result<Self::Value, Self::Error>;
    fn string(&mut self, value: &str) -> Result<Self::Value, Self::Error>;
    fn new_array(&mut self) -> Result<Self::Array, Self::Error>;
    fn push(&mut self, array: &mut Self::Array, value: Self::Value) -> Result<(), Self::Error>;
    fn finish_array(&mut self, array: Self::Array) -> Result<Self::Value, Self::Error>;
    fn new_object(&mut self) -> Result<Self::Object, Self::Error>;
    /// An object's key, made as soon as it is read: the parser's string
    /// buffer is reused by the value that follows.
    fn key(&mut self, key: &str) -> Result<Self::Key, Self::Error>;
    /// Sets `key`; a repeated key replaces the earlier value, as in a dict.
    fn insert(&mut self, object: &mut Self::Object, key: Self::Key, value: Self::Value) -> Result<(), Self::Error>;
    fn finish_object(&mut self, object: Self::Object) -> Result<Self::Value, Self::Error>;
}

/// Parses a whole document as `json.loads(text)` does.
pub fn parse<S: Sink>(text: &str, sink: &mut S) -> Result<S::Value, DecodeError<S::Error>> {
    parse_with(text, sink, false)
}

/// Marks a Python code unit a Rust string cannot hold, in [`parse_lossless`].
pub const UNIT_ESCAPE: char = '\u{FFFF}';

/// Like [`parse`], but every string Python's `json.loads` can return comes
/// back, lone surrogates included, in a lossless Rust form: a lone surrogate
/// `u` becomes [`UNIT_ESCAPE`] followed by `U+E000 + (u - 0xD800)`, and
/// `U+FFFF` itself becomes two [`UNIT_ESCAPE`]s. The mapping is one-to-one,
/// so two decoded strings are equal exactly when Python's are; the memory
/// store compares stored categories and metadata with filters this way, and
/// `crewai_rust.memory` applies the same mapping to the strings it passes.
pub fn parse_lossless<S: Sink>(text: &str, sink: &mut S) -> Result<S::Value, DecodeError<S::Error>> {
    parse_with(text, sink, true)
}

fn push_unit_lossless(out: &mut String, unit: u32) {
    out.push(UNIT_ESCAPE);
    if unit == 0xFFFF {
        out.push(UNIT_ESCAPE);
    } else {
        out.push(char::from_u32(0xE000 + (unit - 0xD800)).unwrap_or(char::REPLACEMENT_CHARACTER));
    }
}

fn parse_with<S: Sink>(text: &str, sink: &mut S, lossless: bool) -> Result<S::Value, DecodeError<S::Error>> {
    let mut parser = Parser { bytes: text.as_bytes(), text, pos: 0, depth: 0, scratch: String::new(), lossless };
    parser.skip_whitespace();
    let value = parser.value(sink)?;
    parser.skip_whitespace();
    if parser.pos != parser.bytes.len() {
        return Err(DecodeError::Unsupported("extra data after the document"));
    }
    Ok(value)
}

struct Parser<'t> {
    bytes: &'t [u8],
    text: &'t str,
    pos: usize,
    depth: usize,
    scratch: String,
    /// See [`parse_lossless`].
    lossless: bool,
}

const INVALID: &str = "not a valid JSON document";

impl<'t> Parser<'t> {
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, literal: &[u8]) -> bool {
        if self.bytes[self.pos..].starts_with(literal) {
            self.pos += literal.len();
            true
        } else {
            false
        }
    }

    fn value<S: Sink>(&mut self, sink: &mut S) -> Result<S::Value, DecodeError<S::Error>> {
        let sink_err = DecodeError::Sink;
        match self.bytes.get(self.pos) {
            Some(b'"') => {
                self.pos += 1;
                let s = self.string()?;
                sink.string(s).map_err(sink_err)
            }
            Some(b'{') => self.object(sink),
            Some(b'[') => self.array(sink),
            Some(b'n') if self.eat(b"null") => sink.null().map_err(sink_err),
            Some(b't') if self.eat(b"true") => sink.boolean(true).map_err(sink_err),
            Some(b'f') if self.eat(b"false") => sink.boolean(false).map_err(sink_err),
            Some(b'N') if self.eat(b"NaN") => sink.float(f64::NAN).map_err(sink_err),
            Some(b'I') if self.eat(b"Infinity") => sink.float(f64::INFINITY).map_err(sink_err),
            Some(b'-') if self.bytes[self.pos + 1..].starts_with(b"Infinity") => {
                self.pos += 9;
                sink.float(f64::NEG_INFINITY).map_err(sink_err)
            }
            Some(b'-' | b'0'..=b'9') => self.number(sink),
            _ => Err(DecodeError::Unsupported(INVALID)),
        }
    }

    fn enter(&mut self) -> Result<(), &'static str> {
        self.depth += 1;
        // A small thread stack may end before MAX_NESTING (frame sizes vary by build).
        let stack_low = stacker::remaining_stack().is_some_and(|left| left < 128 * 1024);
        if self.depth > MAX_NESTING || stack_low {
            Err("nesting deeper than the native parser's limit")
        } else {
            Ok(())
        }
    }

    /// After an array item or object member: a `,` (more follow) or `close`
    /// (returns true, the container is done).
    fn after_item<E>(&mut self, close: u8) -> Result<bool, DecodeError<E>> {
        self.skip_whitespace();
        match self.bytes.get(self.pos) {
            Some(b',') => {
                self.pos += 1;
                self.skip_whitespace();
                Ok(false)
            }
            Some(&b) if b == close => {
                self.pos += 1;
                Ok(true)
            }
            _ => Err(DecodeError::Unsupported(INVALID)),
        }
    }

    fn array<S: Sink>(&mut self, sink: &mut S) -> Result<S::Value, DecodeError<S::Error>> {
        self.enter().map_err(DecodeError::Unsupported)?;
        self.pos += 1;
        let mut array = sink.new_array().map_err(DecodeError::Sink)?;
        self.skip_whitespace();
        if self.bytes.get(self.pos) == Some(&b']') {
            self.pos += 1;
        } else {
            loop {
                let item = self.value(sink)?;
                sink.push(&mut array, item).map_err(DecodeError::Sink)?;
                if self.after_item(b']')? {
                    break;
                }
            }
        }
        self.depth -= 1;
        sink.finish_array(array).map_err(DecodeError::Sink)
    }

    fn object<S: Sink>(&mut self, sink: &mut S) -> Result<S::Value, DecodeError<S::Error>> {
        self.enter().map_err(DecodeError::Unsupported)?;
        self.pos += 1;
        let mut object = sink.new_object().map_err(DecodeError::Sink)?;
        self.skip_whitespace();
        if self.bytes.get(self.pos) == Some(&b'}') {
            self.pos += 1;
        } else {
            loop {
                if self.bytes.get(self.pos) != Some(&b'"') {
                    return Err(DecodeError::Unsupported(INVALID));
                }
                self.pos += 1;
                let key = self.string()?;
                let key = sink.key(key).map_err(DecodeError::Sink)?;
                self.skip_whitespace();
                if self.bytes.get(self.pos) != Some(&b':') {
                    return Err(DecodeError::Unsupported(INVALID));
                }
                self.pos += 1;
                self.skip_whitespace();
                let value = self.value(sink)?;
                sink.insert(&mut object, key, value).map_err(DecodeError::Sink)?;
                if self.after_item(b'}')? {
                    break;
                }
            }
        }
        self.depth -= 1;
        sink.finish_object(object).map_err(DecodeError::Sink)
    }

    /// A string body after its opening quote: a slice of the document when
    /// it has no escapes, else the unescaped text in the parser's buffer
    /// (kept across strings, so escapes cost no allocation once it has grown).
    fn string<E>(&mut self) -> Result<&str, DecodeError<E>> {
        let start = self.pos;
        loop {
            self.pos = first_special::<false>(self.bytes, self.pos);
            match self.bytes.get(self.pos) {
                Some(b'"') if !(self.lossless && self.text[start..self.pos].contains(UNIT_ESCAPE)) => {
                    let s = &self.text[start..self.pos];
                    self.pos += 1;
                    return Ok(s);
                }
                Some(b'"') | Some(b'\\') => break,
                Some(&b) if b < 0x20 => return Err(DecodeError::Unsupported("control character in a string")),
                Some(_) => self.pos += 1,
                None => return Err(DecodeError::Unsupported("unterminated string")),
            }
        }
        self.scratch.clear();
        self.push_run(start);
        loop {
            let run_start = self.pos;
            self.pos = first_special::<false>(self.bytes, self.pos);
            self.push_run(run_start);
            match self.bytes.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(&self.scratch);
                }
                Some(b'\\') => {
                    let escaped = *self.bytes.get(self.pos + 1).ok_or_else(|| DecodeError::Unsupported("unterminated string"))?;
                    self.pos += 2;
                    let ch = match escaped {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' if self.lossless => {
                            self.unicode_escape_lossless()?;
                            continue;
                        }
                        b'u' => self.unicode_escape()?,
                        _ => return Err(DecodeError::Unsupported("invalid escape")),
                    };
                    self.scratch.push(ch);
                }
                Some(_) => return Err(DecodeError::Unsupported("control character in a string")),
                None => return Err(DecodeError::Unsupported("unterminated string")),
            }
        }
    }

    /// The unescaped run `start..pos` into the buffer (U+FFFF doubled when lossless).
    fn push_run(&mut self, start: usize) {
        let run = &self.text[start..self.pos];
        if self.lossless && run.contains(UNIT_ESCAPE) {
            for ch in run.chars() {
                match ch {
                    UNIT_ESCAPE => push_unit_lossless(&mut self.scratch, 0xFFFF),
                    ch => self.scratch.push(ch),
                }
            }
        } else {
            self.scratch.push_str(run);
        }
    }

    /// After `\u` in a lossless parse: one code point, or one lone surrogate,
    /// as CPython decodes them (a high surrogate joins only a following
    /// `\uDC00`-`\uDFFF` escape; any other escape after it is read on its own).
    fn unicode_escape_lossless<E>(&mut self) -> Result<(), DecodeError<E>> {
        let first = self.hex4()?;
        if (0xd800..=0xdbff).contains(&first) && self.bytes[self.pos..].starts_with(b"\\u") {
            let before = self.pos;
            self.pos += 2;
            let second = self.hex4()?;
            if (0xdc00..=0xdfff).contains(&second) {
                let code = 0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00);
                self.scratch.push(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER));
                return Ok(());
            }
            self.pos = before;
        }
        match char::from_u32(first) {
            Some(UNIT_ESCAPE) | None => push_unit_lossless(&mut self.scratch, first),
            Some(ch) => self.scratch.push(ch),
        }
        Ok(())
    }

    fn hex4<E>(&mut self) -> Result<u32, DecodeError<E>> {
        let digits = self.bytes.get(self.pos..self.pos + 4).ok_or_else(|| DecodeError::Unsupported("invalid \\u escape"))?;
        let mut value = 0u32;
        for &d in digits {
            let nibble = (d as char).to_digit(16).ok_or_else(|| DecodeError::Unsupported("invalid \\u escape"))?;
            value = value * 16 + nibble;
        }
        self.pos += 4;
        Ok(value)
    }

    /// After `\u`: one code point, joining a surrogate pair as CPython does.
    fn unicode_escape<E>(&mut self) -> Result<char, DecodeError<E>> {
        const LONE: &str = "lone surrogate escape";
        let first = self.hex4()?;
        if (0xd800..=0xdbff).contains(&first) && self.bytes[self.pos..].starts_with(b"\\u") {
            self.pos += 2;
            let second = self.hex4()?;
            if !(0xdc00..=0xdfff).contains(&second) {
                return Err(DecodeError::Unsupported(LONE));
            }
            let code = 0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00);
            return char::from_u32(code).ok_or_else(|| DecodeError::Unsupported(LONE));
        }
        // A surrogate that the next escape does not complete stays lone in
        // CPython, which a Rust string cannot hold.
        char::from_u32(first).ok_or_else(|| DecodeError::Unsupported(LONE))
    }

    fn number<S: Sink>(&mut self, sink: &mut S) -> Result<S::Value, DecodeError<S::Error>> {
        let start = self.pos;
        if self.bytes[self.pos] == b'-' {
            self.pos += 1;
        }
        match self.bytes.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.skip_digits(),
            _ => return Err(DecodeError::Unsupported(INVALID)),
        }
        let mut is_float = false;
        if self.bytes.get(self.pos) == Some(&b'.') && matches!(self.bytes.get(self.pos + 1), Some(b'0'..=b'9')) {
            self.pos += 1;
            self.skip_digits();
            is_float = true;
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            let mut end = self.pos + 1;
            if let Some(b'+' | b'-') = self.bytes.get(end) {
                end += 1;
            }
            if matches!(self.bytes.get(end), Some(b'0'..=b'9')) {
                self.pos = end;
                self.skip_digits();
                is_float = true;
            }
        }
        let literal = &self.text[start..self.pos];
        if is_float {
            let value: f64 = literal.parse().map_err(|_| DecodeError::Unsupported(INVALID))?;
            sink.float(value).map_err(DecodeError::Sink)
        } else {
            sink.integer(literal).map_err(DecodeError::Sink)
        }
    }

    fn skip_digits(&mut self) {
        while let Some(b'0'..=b'9') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }
}

// ----------------------------------------------------------------------------- values held in Rust

/// A JSON value owned by Rust (an `AgentMessage`'s content and tool calls).
/// Objects keep insertion order, as Python dicts do.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    /// An integer beyond i64, as its decimal literal.
    BigInt(String),
    Float(f64),
    Str(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

/// Appends `value` as `json.dumps` writes the equivalent Python value.
pub fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(i) => write_i64(out, *i),
        Value::BigInt(literal) => out.extend_from_slice(literal.as_bytes()),
        Value::Float(f) => write_float(out, *f),
        Value::Str(s) => write_str(out, s),
        Value::Array(items) if items.is_empty() => out.extend_from_slice(b"[]"),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(entries) if entries.is_empty() => out.extend_from_slice(b"{}"),
        Value::Object(entries) => {
            out.push(b'{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                write_str(out, key);
                out.extend_from_slice(b": ");
                write_value(out, item);
            }
            out.push(b'}');
        }
    }
}

/// Sets `key` in an insertion-ordered object, replacing an existing entry in
/// place as a dict assignment does.
pub fn set_entry(entries: &mut Vec<(String, Value)>, key: String, value: Value) {
    match entries.iter_mut().find(|(k, _)| *k == key) {
        Some(entry) => entry.1 = value,
        None => entries.push((key, value)),
    }
}

/// Parses into [`Value`]s.
pub struct ValueSink;

impl Sink for ValueSink {
    type Value = Value;
    type Array = Vec<Value>;
    type Object = Vec<(String, Value)>;
    type Key = String;
    type Error = std::convert::Infallible;

    fn null(&mut self) -> Result<Value, Self::Error> {
        Ok(Value::Null)
    }
    fn boolean(&mut self, value: bool) -> Result<Value, Self::Error> {
        Ok(Value::Bool(value))
    }
    fn integer(&mut self, literal: &str) -> Result<Value, Self::Error> {
        Ok(match literal.parse::<i64>() {
            Ok(i) => Value::Int(i),
            Err(_) => Value::BigInt(literal.to_string()),
        })
    }
    fn float(&mut self, value: f64) -> Result<Value, Self::Error> {
        Ok(Value::Float(value))
    }
    fn string(&mut self, value: &str) -> Result<Value, Self::Error> {
        Ok(Value::Str(value.to_string()))
    }
    fn new_array(&mut self) -> Result<Vec<Value>, Self::Error> {
        Ok(Vec::new())
    }
    fn push(&mut self, array: &mut Vec<Value>, value: Value) -> Result<(), Self::Error> {
        array.push(value);
        Ok(())
    }
    fn finish_array(&mut self, array: Vec<Value>) -> Result<Value, Self::Error> {
        Ok(Value::Array(array))
    }
    fn new_object(&mut self) -> Result<Vec<(String, Value)>, Self::Error> {
        Ok(Vec::new())
    }
    fn key(&mut self, key: &str) -> Result<String, Self::Error> {
        Ok(key.to_string())
    }
    fn insert(&mut self, object: &mut Vec<(String, Value)>, key: String, value: Value) -> Result<(), Self::Error> {
        set_entry(object, key, value);
        Ok(())
    }
    fn finish_object(&mut self, object: Vec<(String, Value)>) -> Result<Value, Self::Error> {
        Ok(Value::Object(object))
    }
}

/// A calendar date and, for a `datetime`, its wall-clock time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CivilDateTime {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    /// `(hour, minute, second, microsecond)`; None for a `date`.
    pub time: Option<(u8, u8, u8, u32)>,
}

impl CivilDateTime {
    /// From the state CPython's `datetime.datetime` (10 bytes) and
    /// `datetime.date` (4 bytes) pickle: big-endian year, month (its high bit
    /// is `fold` in newer protocols), day, hour, minute, second, then a
    /// big-endian 24-bit microsecond. None for anything else or out of range.
    pub fn from_pickle_state(state: &[u8]) -> Option<CivilDateTime> {
        if state.len() != 4 && state.len() != 10 {
            return None;
        }
        let year = u16::from_be_bytes([state[0], state[1]]);
        let (month, day) = (state[2] & 0x7F, state[3]);
        let time = if state.len() == 10 {
            let microsecond = u32::from_be_bytes([0, state[7], state[8], state[9]]);
            Some((state[4], state[5], state[6], microsecond))
        } else {
            None
        };
        let date_ok = (1..=9999).contains(&year) && (1..=12).contains(&month) && (1..=31).contains(&day);
        let time_ok = time.map_or(true, |(h, m, s, us)| h < 24 && m < 60 && s < 60 && us < 1_000_000);
        (date_ok && time_ok).then_some(CivilDateTime { year, month, day, time })
    }
}

fn write_padded(out: &mut Vec<u8>, value: u32, width: usize) {
    let mut digits = [b'0'; 10];
    let mut rest = value;
    for slot in digits[..width].iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.extend_from_slice(&digits[..width]);
}

/// `value.isoformat()` of a `date` or `datetime` whose `utcoffset()` is
/// `utc_offset_us` microseconds (None: naive), byte for byte as CPython writes it.
pub fn write_isoformat(out: &mut Vec<u8>, value: &CivilDateTime, utc_offset_us: Option<i64>) {
    write_padded(out, value.year.into(), 4);
    out.push(b'-');
    write_padded(out, value.month.into(), 2);
    out.push(b'-');
    write_padded(out, value.day.into(), 2);
    let Some((hour, minute, second, microsecond)) = value.time else {
        return;
    };
    out.push(b'T');
    write_padded(out, hour.into(), 2);
    out.push(b':');
    write_padded(out, minute.into(), 2);
    out.push(b':');
    write_padded(out, second.into(), 2);
    if microsecond != 0 {
        out.push(b'.');
        write_padded(out, microsecond, 6);
    }
    if let Some(offset) = utc_offset_us {
        out.push(if offset < 0 { b'-' } else { b'+' });
        let offset = offset.unsigned_abs();
        let (hours, rest) = (offset / 3_600_000_000, offset % 3_600_000_000);
        let (minutes, rest) = (rest / 60_000_000, rest % 60_000_000);
        let (seconds, microseconds) = (rest / 1_000_000, rest % 1_000_000);
        write_padded(out, hours as u32, 2);
        out.push(b':');
        write_padded(out, minutes as u32, 2);
        if seconds != 0 || microseconds != 0 {
            out.push(b':');
            write_padded(out, seconds as u32, 2);
            if microseconds != 0 {
                out.push(b'.');
                write_padded(out, microseconds as u32, 6);
            }
        }
    }
}

/// `str(uuid.UUID(int=value))`: 32 lowercase hex digits grouped 8-4-4-4-12.
pub fn write_uuid(out: &mut Vec<u8>, value: u128) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, shift) in (0..32).rev().enumerate() {
        if matches!(i, 8 | 12 | 16 | 20) {
            out.push(b'-');
        }
        out.push(HEX[((value >> (shift * 4)) & 0xF) as usize]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float(value: f64) -> String {
        let mut out = Vec::new();
        write_float(&mut out, value);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn lossless_parse_keeps_lone_surrogates_and_u_ffff_apart() {
        let parse = |text: &str| match parse_lossless(text, &mut ValueSink).unwrap() {
            Value::Array(items) => items
                .into_iter()
                .map(|v| if let Value::Str(s) = v { s } else { panic!("{v:?}") })
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        let text = r#"["c\ud800", "c\udc00", "\ud83d\ude00", "\ud800\u0041", "\ud800\ud83d\ude00", "\uffff", "RAWx", "plain", "\ue000"]"#
            .replace("RAW", "\u{ffff}");
        let got = parse(&text);
        let want = [
            "c\u{ffff}\u{e000}",
            "c\u{ffff}\u{e400}",
            "\u{1f600}",
            "\u{ffff}\u{e000}A",
            "\u{ffff}\u{e000}\u{1f600}",
            "\u{ffff}\u{ffff}",
            "\u{ffff}\u{ffff}x",
            "plain",
            "\u{e000}",
        ];
        assert_eq!(got, want);
        // The ordinary parse still leaves lone surrogates to CPython.
        assert!(parse_with(r#"["c\ud800"]"#, &mut ValueSink, false).is_err());
    }

    #[test]
    fn floats_match_python_repr() {
        // Expected values are CPython's repr().
        let cases: &[(f64, &str)] = &[
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (0.1, "0.1"),
            (1.5, "1.5"),
            (123.456, "123.456"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (123456789012345680.0, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.25e-7, "1.25e-07"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (-2.5e100, "-2.5e+100"),
            (9999999999999998.0, "9999999999999998.0"),
            (0.30000000000000004, "0.30000000000000004"),
            (1e22, "1e+22"),
            (1e-7, "1e-07"),
            (123456789.0, "123456789.0"),
            (2.5e-5, "2.5e-05"),
            (0.001, "0.001"),
            (1234567890123456.8, "1234567890123456.8"),
            (12345678901234568.0, "1.2345678901234568e+16"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for &(value, expected) in cases {
            assert_eq!(float(value), expected, "repr of {value:?}");
        }
    }

    fn string(s: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn scans_find_the_first_special_byte() {
        // Every byte value at every position of 1..40-byte texts (the SSE2,
        // SWAR and byte tails), with plain or special bytes after it.
        for len in 1..40 {
            for position in 0..len {
                for byte in 0..=255u8 {
                    for tail in [b'a', b'"', 0x01, 0xc3, 0x7f] {
                        let mut text = vec![b'a'; len];
                        text[position] = byte;
                        for later in text.iter_mut().skip(position + 1) {
                            *later = tail;
                        }
                        for start in [0, position] {
                            let expect = |non_ascii: bool| {
                                (start..len)
                                    .find(|&i| if non_ascii { is_special::<true>(text[i]) } else { is_special::<false>(text[i]) })
                                    .unwrap_or(len)
                            };
                            assert_eq!(first_special::<true>(&text, start), expect(true), "{text:?} from {start}");
                            assert_eq!(first_special::<false>(&text, start), expect(false), "{text:?} from {start}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn strings_are_escaped_as_ensure_ascii() {
        assert_eq!(string("plain"), r#""plain""#);
        assert_eq!(string("q\"b\\s/"), r#""q\"b\\s/""#);
        assert_eq!(string("\n\r\t\u{8}\u{c}\u{1}\u{7f}"), r#""\n\r\t\b\f\u0001\u007f""#);
        assert_eq!(string("é€"), r#""\u00e9\u20ac""#);
        assert_eq!(string("😀"), r#""\ud83d\ude00""#);
        let mut out = Vec::new();
        write_utf16(&mut out, &[0x61, 0xd800, 0x62]);
        assert_eq!(String::from_utf8(out).unwrap(), r#""a\ud800b""#);
    }

    use Value as V;

    fn decode(text: &str) -> Result<V, DecodeError<std::convert::Infallible>> {
        parse(text, &mut ValueSink)
    }

    #[test]
    fn decodes_what_python_decodes() {
        assert_eq!(
            decode(r#" {"a": [1], "b": "x\u00e9\ud83d\ude00\n\/", "a": {}} "#).unwrap(),
            V::Object(vec![("a".to_string(), V::Object(vec![])), ("b".to_string(), V::Str("x\u{e9}\u{1f600}\n/".into()))])
        );
        assert_eq!(
            decode(r#"[1, -0, 2.5, -1e3, true, false, null, ""]"#).unwrap(),
            V::Array(vec![
                V::Int(1),
                V::Int(0),
                V::Float(2.5),
                V::Float(-1000.0),
                V::Bool(true),
                V::Bool(false),
                V::Null,
                V::Str(String::new()),
            ])
        );
        assert!(matches!(decode("NaN").unwrap(), V::Float(f) if f.is_nan()));
        assert_eq!(decode("123456789012345678901234567890").unwrap(), V::BigInt("123456789012345678901234567890".into()));
        assert_eq!(decode("-Infinity").unwrap(), V::Float(f64::NEG_INFINITY));
        assert_eq!(decode("1E+2").unwrap(), V::Float(100.0));
        assert_eq!(decode("1e400").unwrap(), V::Float(f64::INFINITY));
    }

    #[test]
    fn escaped_keys_and_values_share_one_buffer_without_mixing() {
        // The key is made before its value reuses the unescaping buffer.
        let text = r#"{"k\n1": {"k\t2": "v\"2", "k3": ["a\\b", "\u00e9", "plain"]}, "k\u00e94": "long\nvalue\nlonger than any before it"}"#;
        assert_eq!(
            decode(text).unwrap(),
            V::Object(vec![
                (
                    "k\n1".into(),
                    V::Object(vec![
                        ("k\t2".into(), V::Str("v\"2".into())),
                        ("k3".into(), V::Array(vec![V::Str("a\\b".into()), V::Str("\u{e9}".into()), V::Str("plain".into())])),
                    ])
                ),
                ("k\u{e9}4".into(), V::Str("long\nvalue\nlonger than any before it".into())),
            ])
        );
    }

    #[test]
    fn values_write_as_json_dumps() {
        let text = r#"{"role": "tool", "n": [1, -2, 1.5, 123456789012345678901234567890, null, true], "s": "\u00e9\\"}"#;
        let value = decode(text).unwrap();
        let mut out = Vec::new();
        write_value(&mut out, &value);
        assert_eq!(String::from_utf8(out).unwrap(), text);
    }

    #[test]
    fn leaves_to_cpython_what_it_must_word_or_cannot_represent() {
        for text in ["", "01", "1.", "[1,]", "{\"a\" 1}", "\"\u{1}\"", "\"\\ud800\"", "\"\\udc00x\"", "[1] x", "'a'", "\u{feff}1", "\"\\x\""] {
            assert!(matches!(decode(text), Err(DecodeError::Unsupported(_))), "{text:?} should be left to CPython");
        }
        let deep = "[".repeat(MAX_NESTING + 1) + &"]".repeat(MAX_NESTING + 1);
        assert!(matches!(decode(&deep), Err(DecodeError::Unsupported(_))));
        let ok = "[".repeat(MAX_NESTING) + &"]".repeat(MAX_NESTING);
        assert!(decode(&ok).is_ok());
    }

    #[test]
    fn isoformat_matches_cpython() {
        let at = |state: &[u8], offset| {
            let mut out = Vec::new();
            write_isoformat(&mut out, &CivilDateTime::from_pickle_state(state).unwrap(), offset);
            String::from_utf8(out).unwrap()
        };
        // datetime(2026, 11, 30, 12, 5, 7, 123456).__reduce__()[1][0]
        let state = b"\x07\xea\x0b\x1e\x0c\x05\x07\x01\xe2@";
        assert_eq!(at(state, None), "2026-11-30T12:05:07.123456");
        assert_eq!(at(state, Some(0)), "2026-11-30T12:05:07.123456+00:00");
        assert_eq!(at(state, Some(-(3 * 3600 + 30 * 60 + 5) * 1_000_000 - 7)), "2026-11-30T12:05:07.123456-03:30:05.000007");
        assert_eq!(at(b"\x00\x05\x01\x01\x00\x00\x00\x00\x00\x00", Some(5_400_000_000)), "0005-01-01T00:00:00+01:30");
        assert_eq!(at(b"\x07\xea\x01\x02", None), "2026-01-02");
        // The fold bit newer pickle protocols set in the month byte.
        assert_eq!(at(b"\x07\xea\x8b\x1e\x00\x00\x00\x00\x00\x00", None), "2026-11-30T00:00:00");
        assert_eq!(CivilDateTime::from_pickle_state(b"\x07\xea\x0d\x01"), None);
        assert_eq!(CivilDateTime::from_pickle_state(b"short"), None);
    }

    #[test]
    fn uuid_text_matches_python() {
        let mut out = Vec::new();
        write_uuid(&mut out, 0x12345678_9abc_def0_1234_56789abcdef0);
        assert_eq!(out, b"12345678-9abc-def0-1234-56789abcdef0");
        out.clear();
        write_uuid(&mut out, 1);
        assert_eq!(out, b"00000000-0000-0000-0000-000000000001");
    }
}
