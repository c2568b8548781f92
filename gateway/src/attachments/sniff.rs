//! What an upload is, from its first bytes only: never from its name or `Content-Type`, which
//! the sender chooses (a page renamed `.jpg` is still a page).

/// The kinds the gateway takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    Jpeg,
    Png,
    WebP,
    Gif,
    Pdf,
}

/// Bytes needed to tell every kind apart (WebP: `RIFF....WEBP`).
pub const HEAD: usize = 16;

impl Sniffed {
    pub fn is_image(self) -> bool {
        !matches!(self, Sniffed::Pdf)
    }

    pub fn image_format(self) -> Option<image::ImageFormat> {
        match self {
            Sniffed::Jpeg => Some(image::ImageFormat::Jpeg),
            Sniffed::Png => Some(image::ImageFormat::Png),
            Sniffed::WebP => Some(image::ImageFormat::WebP),
            Sniffed::Gif => Some(image::ImageFormat::Gif),
            Sniffed::Pdf => None,
        }
    }
}

/// The kind of an upload starting with `head`, or why it is refused (for the 415 answer).
pub fn sniff(head: &[u8]) -> Result<Sniffed, String> {
    if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(Sniffed::Jpeg);
    }
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok(Sniffed::Png);
    }
    if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        return Ok(Sniffed::Gif);
    }
    if head.len() >= 12 && head.starts_with(b"RIFF") && &head[8..12] == b"WEBP" {
        return Ok(Sniffed::WebP);
    }
    if head.starts_with(b"%PDF-") {
        return Ok(Sniffed::Pdf);
    }
    let what = if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        "a zip archive (or an Office document)"
    } else if looks_like_markup(head) {
        "HTML or other markup"
    } else if head.starts_with(b"MZ") || head.starts_with(b"\x7fELF") {
        "a program"
    } else {
        "of an unknown type"
    };
    Err(format!(
        "the file is {what}; accepted are JPEG, PNG, WebP and GIF images and PDF documents \
         (the type is read from the content, not the name)"
    ))
}

fn looks_like_markup(head: &[u8]) -> bool {
    let text = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let start = text.iter().position(|b| !b.is_ascii_whitespace());
    start.is_some_and(|i| text[i] == b'<')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_the_bytes() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), Ok(Sniffed::Png));
        assert_eq!(sniff(b"RIFF\x10\0\0\0WEBPVP8 "), Ok(Sniffed::WebP));
        assert_eq!(sniff(b"%PDF-1.7\n"), Ok(Sniffed::Pdf));
        assert!(sniff(b"  <!doctype html><p>").unwrap_err().contains("HTML"));
        assert!(sniff(b"PK\x03\x04rest").unwrap_err().contains("zip"));
        assert!(sniff(b"").is_err());
    }
}
