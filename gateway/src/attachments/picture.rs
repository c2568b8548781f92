//! Photos: the size read from the header before anything is decoded (a small file can claim
//! 60,000×60,000 pixels and ask for gigabytes: a decompression bomb), then decoded under the
//! same caps, turned upright, re-encoded from the pixels alone (EXIF, GPS position, camera
//! and comments are not carried over: a photo must not tell where the customer lives) and
//! given a thumbnail. CPU-bound: callers run it on the blocking pool.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

/// Why an image was refused.
#[derive(Debug, thiserror::Error)]
pub enum PictureError {
    #[error("the image is {width}×{height} pixels; the limit is {side} pixels a side and {pixels} pixels in all")]
    TooLarge {
        width: u32,
        height: u32,
        side: u32,
        pixels: u64,
    },
    #[error("the image cannot be read: {0}")]
    Unreadable(String),
    #[error("the image cannot be re-encoded")]
    Encode,
}

/// The caps an image must fit.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub side: u32,
    pub pixels: u64,
    pub thumb_side: u32,
}

/// A cleaned image and its thumbnail.
pub struct Processed {
    pub file: Vec<u8>,
    pub mime: &'static str,
    pub width: u32,
    pub height: u32,
    pub thumb: Vec<u8>,
    pub thumb_mime: &'static str,
}

fn limits(caps: Caps) -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(caps.side);
    limits.max_image_height = Some(caps.side);
    // Room for the decoded pixels (RGBA, 16 bits at most) and the decoder's own buffers.
    limits.max_alloc = Some(caps.pixels.saturating_mul(8).saturating_add(64 << 20));
    limits
}

fn reader(bytes: &[u8], format: ImageFormat, caps: Caps) -> ImageReader<Cursor<&[u8]>> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits(caps));
    reader
}

fn check(width: u32, height: u32, caps: Caps) -> Result<(), PictureError> {
    if width > caps.side || height > caps.side || u64::from(width) * u64::from(height) > caps.pixels
    {
        return Err(PictureError::TooLarge {
            width,
            height,
            side: caps.side,
            pixels: caps.pixels,
        });
    }
    Ok(())
}

/// The dimensions from the header alone (nothing decoded), checked against `caps`. Works on
/// the first bytes of an upload too: `Ok(None)` when they do not reach the dimensions yet.
pub fn check_header(
    bytes: &[u8],
    format: ImageFormat,
    caps: Caps,
) -> Result<Option<(u32, u32)>, PictureError> {
    match peek(bytes, format) {
        Some((w, h)) => check(w, h, caps).map(|()| Some((w, h))),
        None => Ok(None),
    }
}

/// The dimensions a header claims. PNG and GIF keep them at fixed places, read here even when
/// what follows is not a valid image (a decoder would stop at the broken part first and
/// report that, not the size); JPEG and WebP through the decoder's header parsing, without
/// limits, so a size over the caps is reported as such.
fn peek(bytes: &[u8], format: ImageFormat) -> Option<(u32, u32)> {
    let be = |at: usize| Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    let le16 = |at: usize| {
        Some(u32::from(u16::from_le_bytes(
            bytes.get(at..at + 2)?.try_into().ok()?,
        )))
    };
    match format {
        ImageFormat::Png if bytes.get(12..16) == Some(b"IHDR") => Some((be(16)?, be(20)?)),
        ImageFormat::Gif => Some((le16(6)?, le16(8)?)),
        _ => ImageReader::with_format(Cursor::new(bytes), format)
            .into_dimensions()
            .ok(),
    }
}

/// Decodes (first frame of a GIF), turns upright, strips metadata by re-encoding, thumbnails.
pub fn process(bytes: &[u8], format: ImageFormat, caps: Caps) -> Result<Processed, PictureError> {
    if let Some((w, h)) = peek(bytes, format) {
        check(w, h, caps)?;
    }
    let unreadable = |e: image::ImageError| match e {
        image::ImageError::Limits(_) => PictureError::TooLarge {
            width: 0,
            height: 0,
            side: caps.side,
            pixels: caps.pixels,
        },
        other => PictureError::Unreadable(other.to_string()),
    };
    let (w, h) = reader(bytes, format, caps)
        .into_dimensions()
        .map_err(unreadable)?;
    check(w, h, caps)?;
    let mut decoder = reader(bytes, format, caps)
        .into_decoder()
        .map_err(unreadable)?;
    let orientation = decoder.orientation().ok();
    let mut picture = DynamicImage::from_decoder(decoder).map_err(unreadable)?;
    if let Some(orientation) = orientation {
        picture.apply_orientation(orientation);
    }
    let photo = format == ImageFormat::Jpeg;
    let (file, mime) = encode(&picture, photo)?;
    let thumb = picture.thumbnail(caps.thumb_side, caps.thumb_side);
    let (thumb, thumb_mime) = encode(&thumb, photo)?;
    Ok(Processed {
        file,
        mime,
        width: picture.width(),
        height: picture.height(),
        thumb,
        thumb_mime,
    })
}

/// JPEG for photos (a PNG of a photo is several times larger), PNG for the rest (keeps
/// transparency and sharp edges of screenshots). Pixels only: no metadata is written.
fn encode(picture: &DynamicImage, photo: bool) -> Result<(Vec<u8>, &'static str), PictureError> {
    let mut out = Vec::new();
    if photo {
        let rgb = picture.to_rgb8();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
            .encode_image(&rgb)
            .map_err(|_| PictureError::Encode)?;
        Ok((out, "image/jpeg"))
    } else {
        let rgba = DynamicImage::ImageRgba8(picture.to_rgba8());
        rgba.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .map_err(|_| PictureError::Encode)?;
        Ok((out, "image/png"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: Caps = Caps {
        side: 4000,
        pixels: 4_000_000,
        thumb_side: 64,
    };

    fn png(w: u32, h: u32) -> Vec<u8> {
        let picture =
            DynamicImage::ImageRgb8(image::RgbImage::from_pixel(w, h, image::Rgb([200, 10, 10])));
        let mut out = Vec::new();
        picture
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn re_encodes_and_thumbnails() {
        let done = process(&png(300, 200), ImageFormat::Png, CAPS).unwrap();
        assert_eq!((done.width, done.height), (300, 200));
        let thumb = image::load_from_memory(&done.thumb).unwrap();
        assert_eq!(thumb.width(), 64);
    }

    #[test]
    fn header_over_the_cap_is_refused_before_decoding() {
        let err = check_header(&png(300, 200), ImageFormat::Png, Caps { side: 100, ..CAPS });
        assert!(matches!(
            err,
            Err(PictureError::TooLarge { width: 300, .. })
        ));
        assert_eq!(
            check_header(&png(30, 20), ImageFormat::Png, CAPS).unwrap(),
            Some((30, 20))
        );
        assert_eq!(
            check_header(&png(30, 20)[..10], ImageFormat::Png, CAPS).unwrap(),
            None
        );
    }
}
