//! The image an agent is shown: PNG and JPEG outputs larger than the configured size are
//! downscaled (aspect ratio kept) and re-encoded in their own format with the `image` crate;
//! the full-size original stays the asset. Results are cached by content hash, because the
//! same output is rendered again on every poll and every read.

use std::collections::VecDeque;
use std::io::Cursor;
use std::sync::Mutex;

use ::image::codecs::jpeg::JpegEncoder;
use ::image::imageops::FilterType;
use ::image::{DynamicImage, ImageFormat, ImageReader, Limits};

/// Limits on what an agent is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Largest encoded size shown as is, in bytes.
    pub max_bytes: usize,
    /// Largest width or height shown as is, in pixels.
    pub max_dim: u32,
}

/// An image as shown to the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    /// `image/png` or `image/jpeg`.
    pub mime_type: String,
    /// The encoded image (the original bytes when not downscaled).
    pub bytes: Vec<u8>,
    /// Size of the original.
    pub original: (u32, u32),
    /// Size shown.
    pub shown: (u32, u32),
}

impl Preview {
    /// True when the shown image is smaller than the original.
    pub fn downscaled(&self) -> bool {
        self.shown != self.original
    }

    /// `PNG 640x480` or `PNG 3000x2000, shown at 1024x683`.
    pub fn detail(&self) -> String {
        let kind = if self.mime_type == "image/jpeg" {
            "JPEG"
        } else {
            "PNG"
        };
        let (w, h) = self.original;
        if self.downscaled() {
            let (sw, sh) = self.shown;
            format!("{kind} {w}x{h}, shown at {sw}x{sh}")
        } else {
            format!("{kind} {w}x{h}")
        }
    }
}

/// The preview of a PNG or JPEG: the original when it is within `limits`, else a downscaled
/// re-encoding that is. Errors describe why the image could not be read.
pub fn preview(mime: &str, bytes: &[u8], limits: ImageLimits) -> Result<Preview, String> {
    let format = match mime {
        "image/png" => ImageFormat::Png,
        "image/jpeg" => ImageFormat::Jpeg,
        other => return Err(format!("{other} is not shown as image content")),
    };
    let reader = || {
        let mut r = ImageReader::with_format(Cursor::new(bytes), format);
        let mut l = Limits::default();
        l.max_image_width = Some(30_000);
        l.max_image_height = Some(30_000);
        l.max_alloc = Some(1 << 30);
        r.limits(l);
        r
    };
    let (w, h) = reader()
        .into_dimensions()
        .map_err(|e| format!("unreadable {mime}: {e}"))?;
    let max_dim = limits.max_dim.max(16);
    if w <= max_dim && h <= max_dim && bytes.len() <= limits.max_bytes {
        return Ok(Preview {
            mime_type: mime.to_owned(),
            bytes: bytes.to_vec(),
            original: (w, h),
            shown: (w, h),
        });
    }
    let img = reader()
        .decode()
        .map_err(|e| format!("unreadable {mime}: {e}"))?;
    // Fit within max_dim, then shrink further while the encoding is over max_bytes.
    let mut scale = (max_dim as f64 / w.max(h) as f64).min(1.0);
    let mut best = None;
    for _ in 0..8 {
        let tw = ((w as f64 * scale).round() as u32).max(1);
        let th = ((h as f64 * scale).round() as u32).max(1);
        let small = img.resize_exact(tw, th, FilterType::Triangle);
        let encoded =
            encode(&small, format).map_err(|e| format!("cannot re-encode {mime}: {e}"))?;
        let fits = encoded.len() <= limits.max_bytes;
        best = Some(Preview {
            mime_type: mime.to_owned(),
            bytes: encoded,
            original: (w, h),
            shown: (tw, th),
        });
        if fits || tw.max(th) <= 16 {
            break;
        }
        let len = best.as_ref().map_or(1, |b| b.bytes.len()) as f64;
        scale *= ((limits.max_bytes as f64 / len).sqrt() * 0.9).clamp(0.1, 0.9);
    }
    best.ok_or_else(|| format!("cannot downscale {mime}"))
}

fn encode(img: &DynamicImage, format: ImageFormat) -> Result<Vec<u8>, ::image::ImageError> {
    let mut out = Vec::new();
    match format {
        ImageFormat::Jpeg => {
            img.write_with_encoder(JpegEncoder::new_with_quality(&mut out, 85))?;
        }
        _ => img.write_to(&mut Cursor::new(&mut out), format)?,
    }
    Ok(out)
}

/// A small cache of previews by (content hash, limits).
#[derive(Default)]
pub struct PreviewCache {
    entries: Mutex<VecDeque<((String, ImageLimits), Preview)>>,
}

/// Entries kept; previews are at most `max_bytes` each.
const CACHE_ENTRIES: usize = 32;

impl PreviewCache {
    /// The preview of the image with this content hash, computed once.
    pub fn get_or_make(
        &self,
        sha256: &str,
        mime: &str,
        bytes: &[u8],
        limits: ImageLimits,
    ) -> Result<Preview, String> {
        let key = (sha256.to_owned(), limits);
        if let Ok(entries) = self.entries.lock() {
            if let Some((_, p)) = entries.iter().find(|(k, _)| *k == key) {
                return Ok(p.clone());
            }
        }
        let p = preview(mime, bytes, limits)?;
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= CACHE_ENTRIES {
                entries.pop_front();
            }
            entries.push_back((key, p.clone()));
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::image::{Rgb, RgbImage, Rgba, RgbaImage};

    fn png(w: u32, h: u32) -> Vec<u8> {
        // A gradient with noise-like detail so that PNG does not compress it to nothing.
        let img = RgbaImage::from_fn(w, h, |x, y| {
            Rgba([
                (x * 7 % 256) as u8,
                (y * 13 % 256) as u8,
                ((x ^ y) % 256) as u8,
                255,
            ])
        });
        let mut out = Vec::new();
        DynamicImage::ImageRgba8(img)
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .expect("encode png");
        out
    }

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(w, h, |x, y| Rgb([(x % 256) as u8, (y % 256) as u8, 99]));
        encode(&DynamicImage::ImageRgb8(img), ImageFormat::Jpeg).expect("encode jpeg")
    }

    fn dims(bytes: &[u8], format: ImageFormat) -> (u32, u32) {
        ImageReader::with_format(Cursor::new(bytes), format)
            .into_dimensions()
            .expect("dims")
    }

    #[test]
    fn small_images_are_shown_as_they_are() {
        let bytes = png(64, 48);
        let limits = ImageLimits {
            max_bytes: 1 << 20,
            max_dim: 1024,
        };
        let p = preview("image/png", &bytes, limits).expect("preview");
        assert_eq!(p.bytes, bytes);
        assert!(!p.downscaled());
        assert_eq!(p.detail(), "PNG 64x48");
    }

    #[test]
    fn large_images_are_downscaled_keeping_aspect_ratio() {
        let bytes = png(1200, 600);
        let limits = ImageLimits {
            max_bytes: 1 << 20,
            max_dim: 300,
        };
        let p = preview("image/png", &bytes, limits).expect("preview");
        assert_eq!(p.shown, (300, 150));
        assert_eq!(dims(&p.bytes, ImageFormat::Png), (300, 150));
        assert!(p.bytes.starts_with(b"\x89PNG"));
        assert_eq!(p.detail(), "PNG 1200x600, shown at 300x150");

        let j = jpeg(500, 1000);
        let p = preview("image/jpeg", &j, limits).expect("jpeg preview");
        assert_eq!(p.shown, (150, 300));
        assert_eq!(dims(&p.bytes, ImageFormat::Jpeg), (150, 300));
        assert!(p.bytes.starts_with(&[0xff, 0xd8]));
    }

    #[test]
    fn byte_limit_shrinks_further() {
        let bytes = png(800, 800);
        let limits = ImageLimits {
            max_bytes: 20_000,
            max_dim: 4096,
        };
        assert!(bytes.len() > 20_000);
        let p = preview("image/png", &bytes, limits).expect("preview");
        assert!(p.bytes.len() <= 20_000, "{}", p.bytes.len());
        assert_eq!(p.shown.0, p.shown.1);
        assert!(p.downscaled());
    }

    #[test]
    fn garbage_is_an_error_and_cache_reuses() {
        let limits = ImageLimits {
            max_bytes: 1 << 20,
            max_dim: 100,
        };
        assert!(preview("image/png", b"nope", limits).is_err());
        assert!(preview("image/svg+xml", b"<svg/>", limits).is_err());
        let cache = PreviewCache::default();
        let bytes = png(200, 100);
        let a = cache
            .get_or_make("h", "image/png", &bytes, limits)
            .expect("a");
        // Same key: served from the cache even if the bytes passed differ.
        let b = cache
            .get_or_make("h", "image/png", b"ignored", limits)
            .expect("b");
        assert_eq!(a, b);
        assert_eq!(a.shown, (100, 50));
    }
}
