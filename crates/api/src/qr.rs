//! QR codes of short links, as an SVG document or a greyscale PNG: pure functions of the text.
//! Error-correction level M (about 15% of the code may be lost), black modules on white, the
//! standard quiet zone of 4 modules. The `qrcode` crate encodes; `png` writes the PNG.

use qrcode::render::svg;
use qrcode::{Color, EcLevel, QrCode};

/// Smallest PNG side, in pixels, that the API asks [`png`] for.
pub const MIN_PNG_SIZE: u32 = 64;
/// Largest PNG side, in pixels, that the API asks [`png`] for.
pub const MAX_PNG_SIZE: u32 = 2048;

/// The white border around the code, in modules (what the QR standard asks for).
const QUIET_ZONE: u32 = 4;
/// The SVG's `width`/`height` are at least this many pixels (a whole number per module).
const SVG_MIN_SIZE: u32 = 256;

const BLACK: u8 = 0;
const WHITE: u8 = 255;

#[derive(Debug, thiserror::Error)]
pub enum QrError {
    /// More than the largest QR code (version 40) holds at level M.
    #[error("a text of {len} bytes is too long for a QR code")]
    TooLong { len: usize },
    /// Any other refusal of the encoder (not expected for the byte mode that text falls back to).
    #[error("the text cannot be encoded as a QR code: {0}")]
    Encode(qrcode::types::QrError),
    /// The PNG is smaller than one pixel per module, quiet zone included.
    #[error(
        "a {size}×{size} PNG cannot hold this QR code, which needs at least {min}×{min} pixels"
    )]
    TooSmall { size: u32, min: u32 },
    #[error("PNG encoding failed: {0}")]
    Png(#[from] png::EncodingError),
}

fn encode(text: &str) -> Result<QrCode, QrError> {
    QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).map_err(|e| match e {
        qrcode::types::QrError::DataTooLong => QrError::TooLong { len: text.len() },
        other => QrError::Encode(other),
    })
}

/// An SVG document of the QR code of `text` (the short link), black modules on white, a quiet
/// zone of 4 modules, scalable (viewBox), with `width`/`height` attributes of a sensible default size.
///
/// The default size is at least 256 pixels a side, a whole number of pixels per module.
pub fn svg(text: &str) -> Result<String, QrError> {
    let code = encode(text)?;
    Ok(code
        .render::<svg::Color>()
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .quiet_zone(true)
        .min_dimensions(SVG_MIN_SIZE, SVG_MIN_SIZE)
        .build())
}

/// A PNG (8-bit greyscale) of the QR code of `text`, `size` × `size` pixels (64..=2048 is what the
/// API allows; the function must accept any size ≥ the code's module count incl. quiet zone and
/// scale modules to fill `size` as evenly as possible — integer module size, centred, white margin).
///
/// Every module is `size / (modules + 8)` pixels square; what that leaves over is white margin,
/// split evenly around the code (the odd pixel goes right and bottom). A `size` below the module
/// count with quiet zone is [`QrError::TooSmall`]. The caller bounds `size` (the pixel buffer is
/// `size²` bytes): the API keeps it within [`MIN_PNG_SIZE`]..=[`MAX_PNG_SIZE`].
pub fn png(text: &str, size: u32) -> Result<Vec<u8>, QrError> {
    let code = encode(text)?;
    let modules = code.width();
    // At most 177 modules (version 40): the casts below cannot truncate.
    let min = modules as u32 + 2 * QUIET_ZONE;
    if size < min {
        return Err(QrError::TooSmall { size, min });
    }
    let module_px = (size / min) as usize;
    let side = size as usize;
    // Where the code's first module starts, on both axes: the code centred in the image.
    let offset = (side - modules * module_px) / 2;

    let mut pixels = vec![WHITE; side * side];
    for (y, row) in code.to_colors().chunks(modules).enumerate() {
        let top = (offset + y * module_px) * side;
        let line = &mut pixels[top..top + side];
        for (x, color) in row.iter().enumerate() {
            if *color == Color::Dark {
                let left = offset + x * module_px;
                line[left..left + module_px].fill(BLACK);
            }
        }
        // The module row's other pixel lines are copies of its first.
        for k in 1..module_px {
            pixels.copy_within(top..top + side, top + k * side);
        }
    }

    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, size, size);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&pixels)?;
    writer.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINK: &str = "https://go.example.com/abc123";

    /// The one QR code rqrr finds in a greyscale image (row-major, `width` × `height`), decoded.
    fn read_qr(pixels: &[u8], width: usize, height: usize) -> String {
        assert_eq!(pixels.len(), width * height);
        let mut image = rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| {
            pixels[y * width + x]
        });
        let grids = image.detect_grids();
        assert_eq!(grids.len(), 1, "one QR code in the image");
        let (meta, content) = grids[0].decode().expect("the QR code decodes");
        // rqrr's ecc_level is the format field's two bits: 0 is M.
        assert_eq!(meta.ecc_level, 0, "error-correction level M");
        content
    }

    /// The PNG's size and its 8-bit greyscale pixels.
    fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().expect("a PNG");
        let mut buf = vec![0; reader.output_buffer_size().expect("a buffer size")];
        let info = reader.next_frame(&mut buf).expect("a frame");
        assert_eq!(info.color_type, png::ColorType::Grayscale);
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    #[test]
    fn png_decodes_back_to_the_text_at_every_allowed_size() {
        for size in [MIN_PNG_SIZE, 300, MAX_PNG_SIZE] {
            let bytes = png(LINK, size).unwrap();
            let (width, height, pixels) = decode_png(&bytes);
            assert_eq!((width, height), (size, size));
            assert_eq!(
                read_qr(&pixels, size as usize, size as usize),
                LINK,
                "size {size}"
            );
        }
    }

    #[test]
    fn png_modules_are_whole_pixels_centred_in_a_white_margin() {
        let code = encode(LINK).unwrap();
        let modules = code.width();
        let span = modules + 2 * QUIET_ZONE as usize;
        let size = 300;
        let (_, _, pixels) = decode_png(&png(LINK, size as u32).unwrap());
        let module_px = size / span;
        let offset = (size - modules * module_px) / 2;
        // Left and right margins (quiet zone included) differ by at most a pixel.
        let right = size - offset - modules * module_px;
        assert!(offset.abs_diff(right) <= 1);
        assert!(offset >= QUIET_ZONE as usize * module_px);
        for y in 0..size {
            for x in 0..size {
                let inside = (offset..offset + modules * module_px).contains(&x)
                    && (offset..offset + modules * module_px).contains(&y);
                let expected = if inside
                    && code[((x - offset) / module_px, (y - offset) / module_px)] == Color::Dark
                {
                    BLACK
                } else {
                    WHITE
                };
                assert_eq!(pixels[y * size + x], expected, "pixel ({x}, {y})");
            }
        }
    }

    #[test]
    fn png_takes_any_size_down_to_one_pixel_per_module() {
        let min = encode(LINK).unwrap().width() as u32 + 2 * QUIET_ZONE;
        let (_, _, pixels) = decode_png(&png(LINK, min).unwrap());
        assert_eq!(read_qr(&pixels, min as usize, min as usize), LINK);
        assert!(matches!(
            png(LINK, min - 1),
            Err(QrError::TooSmall { size, min: m }) if size == min - 1 && m == min
        ));
        assert!(matches!(png(LINK, 0), Err(QrError::TooSmall { .. })));
    }

    /// The SVG rasterised by resvg at its own `width` × `height`, as greyscale pixels.
    fn rasterise(svg: &str) -> (usize, usize, Vec<u8>) {
        use resvg::{tiny_skia, usvg};
        let tree = usvg::Tree::from_str(svg, &usvg::Options::default()).expect("a valid SVG");
        let size = tree.size().to_int_size();
        let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height()).expect("a pixmap");
        resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
        // The white background is opaque and the modules black: any one channel is the grey.
        let grey = pixmap.pixels().iter().map(|p| p.red()).collect();
        (size.width() as usize, size.height() as usize, grey)
    }

    /// The value of the first `name="…"` attribute in `svg`.
    fn attribute<'a>(svg: &'a str, name: &str) -> &'a str {
        let start = svg.find(&format!(" {name}=\"")).expect(name) + name.len() + 3;
        &svg[start..start + svg[start..].find('"').unwrap()]
    }

    #[test]
    fn svg_decodes_back_to_the_text() {
        let document = svg(LINK).unwrap();
        assert!(document.contains("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        let (width, height) = (
            attribute(&document, "width"),
            attribute(&document, "height"),
        );
        assert_eq!(width, height);
        assert_eq!(
            attribute(&document, "viewBox"),
            format!("0 0 {width} {height}")
        );
        let side: u32 = width.parse().unwrap();
        assert!(side >= SVG_MIN_SIZE, "default size {side}");
        // A whole number of pixels per module, quiet zone included.
        let span = encode(LINK).unwrap().width() as u32 + 2 * QUIET_ZONE;
        assert_eq!(side % span, 0);
        assert!(document.contains("fill=\"#000000\"") && document.contains("fill=\"#ffffff\""));

        let (w, h, pixels) = rasterise(&document);
        assert_eq!((w, h), (side as usize, side as usize));
        assert_eq!(read_qr(&pixels, w, h), LINK);
    }

    #[test]
    fn svg_scales_through_its_view_box() {
        let document = svg(LINK).unwrap();
        let side = attribute(&document, "width");
        // Another size, not a whole number of pixels per module: the viewBox maps the code onto it.
        let resized = document.replacen(
            &format!("width=\"{side}\" height=\"{side}\""),
            "width=\"517\" height=\"517\"",
            1,
        );
        assert_ne!(resized, document);
        let (w, h, pixels) = rasterise(&resized);
        assert_eq!((w, h), (517, 517));
        assert_eq!(read_qr(&pixels, w, h), LINK);
    }

    #[test]
    fn text_too_long_for_any_qr_code_is_an_error() {
        // Version 40 at level M holds 2331 bytes.
        let long = "a".repeat(4000);
        assert!(matches!(svg(&long), Err(QrError::TooLong { len: 4000 })));
        assert!(matches!(
            png(&long, MAX_PNG_SIZE),
            Err(QrError::TooLong { len: 4000 })
        ));
        // The largest that fits still renders.
        let longest = format!("https://go.example.com/{}", "x".repeat(2331 - 23));
        assert!(svg(&longest).is_ok());
        assert!(png(&longest, MAX_PNG_SIZE).is_ok());
        let too_long = format!("{longest}x");
        assert!(matches!(svg(&too_long), Err(QrError::TooLong { .. })));
    }
}
