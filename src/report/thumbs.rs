//! Thumbnails for the report: an image file decoded (any format the data
//! nodes accept), scaled to a fixed height, and embedded as a PNG data URI.

use std::io::Cursor;
use std::path::Path;

/// Thumbnail height in pixels (twice the displayed height, for sharpness).
pub const HEIGHT: u32 = 96;

/// `data:image/png;base64,…` of the image at `path`, scaled to [`HEIGHT`]
/// (never up); errors name the file.
pub fn data_uri(path: &Path) -> Result<String, String> {
    let img = image::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let img = if img.height() > HEIGHT {
        let w = ((img.width() as f64 * HEIGHT as f64 / img.height() as f64).round() as u32).max(1);
        img.resize_exact(w, HEIGHT, image::imageops::FilterType::Triangle)
    } else {
        img
    };
    let mut png = Vec::new();
    img.to_rgb8()
        .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(format!("data:image/png;base64,{}", base64(&png)))
}

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(char::from(ABC[(n >> (18 - 6 * k) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (a, b) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(a.as_bytes()), b);
        }
    }

    #[test]
    fn thumbnails_are_png_data_uris_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.png");
        image::RgbImage::from_pixel(300, 200, image::Rgb([10, 20, 30]))
            .save(&path)
            .unwrap();
        let uri = data_uri(&path).unwrap();
        assert!(
            uri.starts_with("data:image/png;base64,iVBORw0KGgo"),
            "{uri}"
        );
        let e = data_uri(&dir.path().join("missing.png")).unwrap_err();
        assert!(e.contains("missing.png"), "{e}");
    }
}
