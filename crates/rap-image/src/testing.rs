//! For tests (of this crate and of others): hand-made PNG files, such as a decompression bomb
//! whose header claims more pixels than any limit allows, and JPEGs with an EXIF orientation.

/// CRC-32 (ISO-HDLC) of `bytes`, as PNG chunks carry it. (Bitwise: a table or a crate buys
/// nothing for a few test chunks.)
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Appends one PNG chunk (length, type, data, CRC) to `out`.
pub fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend((data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend(data);
    out.extend(&body);
    out.extend(crc32(&body).to_be_bytes());
}

/// A valid PNG (correct CRCs) claiming `w` x `h` 8-bit RGB pixels with only a few bytes of
/// pixel data: what a decompression bomb looks like to a header reader.
pub fn png_bomb(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A valid, fully decodable grey PNG of `w` x `h` pixels: a few hundred bytes for a 1 x 100000
/// strip, whose shortest-edge resize to 224 would be 224 x 22,400,000 pixels (15 GB).
pub fn strip_png(w: u32, h: u32) -> Vec<u8> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    use image::ImageEncoder as _;
    let img = image::GrayImage::from_pixel(w, h, image::Luma([120]));
    let mut out = Vec::new();
    PngEncoder::new_with_quality(&mut out, CompressionType::Best, FilterType::NoFilter)
        .write_image(img.as_raw(), w, h, image::ExtendedColorType::L8)
        .expect("encoding a PNG in memory");
    out
}

/// `jpeg` (a JPEG file) with an EXIF APP1 segment saying `orientation` (1-8; 6 = display
/// rotated 90 degrees clockwise) inserted after its start marker.
pub fn exif_orientation_jpeg(jpeg: &[u8], orientation: u8) -> Vec<u8> {
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
    tiff.extend([0, 1]); // one IFD entry
    tiff.extend([0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, orientation, 0, 0]); // Orientation, SHORT, 1
    tiff.extend([0, 0, 0, 0]); // no next IFD
    let mut app1 = b"Exif\x00\x00".to_vec();
    app1.extend(tiff);
    let mut bytes = jpeg[..2].to_vec();
    bytes.extend([0xFF, 0xE1]);
    bytes.extend(((app1.len() + 2) as u16).to_be_bytes());
    bytes.extend(app1);
    bytes.extend(&jpeg[2..]);
    bytes
}
