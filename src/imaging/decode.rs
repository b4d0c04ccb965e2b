//! Decoding: any image the `image` crate reads (PNG or JPEG; RGB, RGBA,
//! grey, grey+alpha, 8- or 16-bit, palette) to packed 8-bit RGB.
//!
//! Choices, stated once:
//! - the format is guessed from the file's content, not its extension;
//! - 16-bit samples become 8-bit by the `image` crate's rounding
//!   (`v16 / 257`, rounded);
//! - palette images are expanded by the decoder;
//! - alpha is composited over **white**:
//!   `out = (c * a + 255 * (255 - a) + 127) / 255` in integers, so an
//!   opaque pixel keeps its value exactly and a fully transparent one is
//!   white whatever colour it stored.
//!
//! Guarantee: the same file gives the same bytes; every error names the
//! file.

use std::path::Path;

use image::{DynamicImage, ImageReader};

use crate::kind::NodeError;

/// A packed RGB u8 image, row-major HWC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    /// `height * width * 3` bytes.
    pub pixels: Vec<u8>,
}

/// Decodes the image at `path` to RGB (alpha over white).
pub fn decode_rgb(path: &Path) -> Result<RgbImage, NodeError> {
    let reader = ImageReader::open(path)
        .map_err(|e| NodeError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| NodeError::io(path, e))?;
    let img = reader
        .decode()
        .map_err(|e| NodeError::file(path, format!("cannot decode image: {e}")))?;
    if img.width() == 0 || img.height() == 0 {
        return Err(NodeError::file(path, "image has no pixels"));
    }
    Ok(to_rgb(img))
}

/// Converts any colour mode to RGB u8, compositing alpha over white.
pub fn to_rgb(img: DynamicImage) -> RgbImage {
    let (width, height) = (img.width(), img.height());
    let pixels = if img.color().has_alpha() {
        let rgba = img.into_rgba8().into_raw();
        let mut out = Vec::with_capacity(rgba.len() / 4 * 3);
        for px in rgba.chunks_exact(4) {
            let a = px[3] as u32;
            for &c in &px[..3] {
                out.push(((c as u32 * a + 255 * (255 - a) + 127) / 255) as u8);
            }
        }
        out
    } else {
        img.into_rgb8().into_raw()
    };
    RgbImage {
        width,
        height,
        pixels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Luma, LumaA, Rgb, Rgba};

    #[test]
    fn rgba_is_composited_over_white() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.png");
        let img = ImageBuffer::from_fn(3, 1, |x, _| match x {
            0 => Rgba([10u8, 20, 30, 255]),
            1 => Rgba([0, 0, 0, 0]),
            _ => Rgba([0, 100, 255, 128]),
        });
        img.save(&p).unwrap();
        let got = decode_rgb(&p).unwrap();
        assert_eq!((got.width, got.height), (3, 1));
        // 0*128 + 255*127 = 32385 → (32385+127)/255 = 127; 100*128+32385 → 177.
        assert_eq!(got.pixels, vec![10, 20, 30, 255, 255, 255, 127, 177, 255]);
    }

    #[test]
    fn grey_and_grey_alpha() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.png");
        ImageBuffer::from_fn(2, 2, |x, y| Luma([(x * 100 + y * 50) as u8]))
            .save(&p)
            .unwrap();
        let got = decode_rgb(&p).unwrap();
        assert_eq!(
            got.pixels,
            vec![0, 0, 0, 100, 100, 100, 50, 50, 50, 150, 150, 150]
        );

        let p = dir.path().join("ga.png");
        ImageBuffer::from_fn(2, 1, |x, _| LumaA([40u8, if x == 0 { 255 } else { 0 }]))
            .save(&p)
            .unwrap();
        let got = decode_rgb(&p).unwrap();
        assert_eq!(got.pixels, vec![40, 40, 40, 255, 255, 255]);
    }

    #[test]
    fn sixteen_bit_rgb_and_grey() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c16.png");
        ImageBuffer::from_fn(2, 1, |x, _| {
            if x == 0 {
                Rgb([0u16, 65535, 257 * 100])
            } else {
                Rgb([257 * 7, 257 * 200, 65535])
            }
        })
        .save(&p)
        .unwrap();
        let got = decode_rgb(&p).unwrap();
        assert_eq!(got.pixels, vec![0, 255, 100, 7, 200, 255]);

        let p = dir.path().join("g16.png");
        ImageBuffer::from_fn(1, 1, |_, _| Luma([257u16 * 33]))
            .save(&p)
            .unwrap();
        assert_eq!(decode_rgb(&p).unwrap().pixels, vec![33, 33, 33]);
    }

    #[test]
    fn jpeg_decodes_close_to_its_source() {
        let dir = tempfile::tempdir().unwrap();
        // A wrong extension: the format is guessed from the content.
        let p = dir.path().join("photo.png");
        let src = ImageBuffer::from_fn(16, 8, |_, _| Rgb([200u8, 60, 30]));
        let mut bytes = Vec::new();
        DynamicImage::ImageRgb8(src)
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                image::ImageFormat::Jpeg,
            )
            .unwrap();
        std::fs::write(&p, &bytes).unwrap();
        let got = decode_rgb(&p).unwrap();
        assert_eq!((got.width, got.height), (16, 8));
        for px in got.pixels.chunks_exact(3) {
            let d = |a: u8, b: u8| (a as i32 - b as i32).abs();
            assert!(
                d(px[0], 200) < 8 && d(px[1], 60) < 8 && d(px[2], 30) < 8,
                "{px:?}"
            );
        }
    }

    /// A minimal palette PNG (colour type 3, 8-bit, optional tRNS), built
    /// by hand: the `image` crate does not write indexed PNGs.
    fn palette_png(w: u32, h: u32, palette: &[[u8; 3]], alpha: &[u8], idx: &[u8]) -> Vec<u8> {
        fn crc32(bytes: &[u8]) -> u32 {
            let mut c = !0u32;
            for &b in bytes {
                c ^= b as u32;
                for _ in 0..8 {
                    c = if c & 1 != 0 {
                        0xEDB8_8320 ^ (c >> 1)
                    } else {
                        c >> 1
                    };
                }
            }
            !c
        }
        fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
            out.extend((data.len() as u32).to_be_bytes());
            let body = [&kind[..], data].concat();
            out.extend(&body);
            out.extend(crc32(&body).to_be_bytes());
        }
        let mut raw = Vec::new();
        for row in idx.chunks(w as usize) {
            raw.push(0u8); // filter: none
            raw.extend(row);
        }
        // zlib, one stored block, Adler-32 trailer.
        let mut z = vec![0x78, 0x01, 0x01];
        z.extend((raw.len() as u16).to_le_bytes());
        z.extend((!(raw.len() as u16)).to_le_bytes());
        z.extend(&raw);
        let (mut a, mut b) = (1u32, 0u32);
        for &x in &raw {
            a = (a + x as u32) % 65521;
            b = (b + a) % 65521;
        }
        z.extend(((b << 16) | a).to_be_bytes());
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let ihdr = [&w.to_be_bytes()[..], &h.to_be_bytes(), &[8, 3, 0, 0, 0]].concat();
        chunk(&mut out, b"IHDR", &ihdr);
        chunk(&mut out, b"PLTE", &palette.concat());
        if !alpha.is_empty() {
            chunk(&mut out, b"tRNS", alpha);
        }
        chunk(&mut out, b"IDAT", &z);
        chunk(&mut out, b"IEND", &[]);
        out
    }

    #[test]
    fn palette_images_are_expanded() {
        let dir = tempfile::tempdir().unwrap();
        let pal = [[255, 0, 0], [0, 0, 255], [10, 20, 30]];
        let p = dir.path().join("pal.png");
        std::fs::write(&p, palette_png(3, 1, &pal, &[], &[2, 0, 1])).unwrap();
        let got = decode_rgb(&p).unwrap();
        assert_eq!(got.pixels, vec![10, 20, 30, 255, 0, 0, 0, 0, 255]);
        // With transparency: entry 0 fully transparent → white.
        let p = dir.path().join("pal-trns.png");
        std::fs::write(&p, palette_png(2, 1, &pal, &[0, 255], &[0, 1])).unwrap();
        let got = decode_rgb(&p).unwrap();
        assert_eq!(got.pixels, vec![255, 255, 255, 0, 0, 255]);
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("broken.png");
        std::fs::write(&p, b"\x89PNG\r\n\x1a\nnot really").unwrap();
        let e = decode_rgb(&p).unwrap_err().to_string();
        assert!(e.contains("broken.png"), "{e}");
        let missing = dir.path().join("missing.png");
        let e = decode_rgb(&missing).unwrap_err().to_string();
        assert!(e.contains("missing.png"), "{e}");
    }
}
