//! `predict MODEL IMAGE...` input: pictures of digits become MNIST-style 28x28 pixels.

use std::io::Write;
use std::path::Path;

use host::digit_image::{load_digit, preprocess};

/// Center of mass (x, y) in pixel indices, like scipy's `center_of_mass`.
fn center_of_mass(img: &[u8]) -> (f64, f64) {
    let (mut s, mut sx, mut sy) = (0.0, 0.0, 0.0);
    for (i, &v) in img.iter().enumerate() {
        let v = v as f64;
        s += v;
        sx += v * (i % 28) as f64;
        sy += v * (i / 28) as f64;
    }
    (sx / s, sy / s)
}

/// Bounding box (x0, y0, x1, y1) of the pixels above `threshold`.
fn ink_box(img: &[u8], threshold: u8) -> (usize, usize, usize, usize) {
    let mut b = (usize::MAX, usize::MAX, 0, 0);
    for (i, &v) in img.iter().enumerate() {
        if v > threshold {
            let (x, y) = (i % 28, i / 28);
            b = (b.0.min(x), b.1.min(y), b.2.max(x), b.3.max(y));
        }
    }
    b
}

/// Checks what every preprocessed digit must look like.
fn assert_mnist_like(img: &[u8]) {
    assert_eq!(img.len(), 784);
    assert_eq!(img.iter().copied().max(), Some(255), "the brightest pixel should be white");
    // White on black: the background (most pixels, the corners) is black.
    let black = img.iter().filter(|&&v| v == 0).count();
    assert!(black > 784 / 2, "only {black} black pixels");
    for (x, y) in [(0, 0), (27, 0), (0, 27), (27, 27)] {
        assert_eq!(img[y * 28 + x], 0, "corner ({x}, {y}) is not black");
    }
    let (cx, cy) = center_of_mass(img);
    assert!((cx - 14.0).abs() <= 1.0 && (cy - 14.0).abs() <= 1.0, "center of mass ({cx:.2}, {cy:.2})");
    let (x0, y0, x1, y1) = ink_box(img, 0);
    assert!(x1 - x0 < 20 && y1 - y0 < 20, "ink box {x0}..={x1} x {y0}..={y1} is larger than 20x20");
}

/// A thick black "1" (a vertical bar) on white paper, off center, `w` x `h`.
fn black_one_on_white(w: usize, h: usize) -> Vec<u8> {
    let mut img = vec![255u8; w * h];
    for y in 10..70 {
        for x in 60..70 {
            img[y * w + x] = 0;
        }
    }
    img
}

#[test]
fn black_bar_on_white_becomes_a_centered_white_one() {
    let out = preprocess(&black_one_on_white(100, 80), 100, 80).unwrap();
    assert_mnist_like(&out);
    // 10x60 scaled to fit 20x20 keeps its aspect ratio: 20 high, about 3 wide.
    let (x0, y0, x1, y1) = ink_box(&out, 64);
    assert_eq!(y1 - y0 + 1, 20, "the long side fills the 20-pixel box");
    assert!((2..=5).contains(&(x1 - x0 + 1)), "width {} should be about 3", x1 - x0 + 1);
}

#[test]
fn white_blob_on_black_stays_white_and_gets_centered() {
    let (w, h) = (60, 90);
    let mut img = vec![0u8; w * h];
    // A gray disk near the top-left corner, on a slightly noisy dark background.
    for y in 0..h {
        for x in 0..w {
            let (dx, dy) = (x as f64 - 15.0, y as f64 - 20.0);
            img[y * w + x] = if dx * dx + dy * dy <= 100.0 { 200 } else { ((x * 7 + y * 3) % 11) as u8 };
        }
    }
    let out = preprocess(&img, w, h).unwrap();
    assert_mnist_like(&out);
    let (x0, y0, x1, y1) = ink_box(&out, 64);
    assert!((19..=20).contains(&(x1 - x0 + 1)) && (19..=20).contains(&(y1 - y0 + 1)));
}

#[test]
fn small_digit_is_scaled_up_and_a_28x28_mnist_image_round_trips() {
    // A small "7" in a 28x28 image already white on black.
    let mut img = vec![0u8; 784];
    for x in 3..9 {
        img[3 * 28 + x] = 255;
    }
    for k in 0..8 {
        img[(4 + k) * 28 + 8 - k / 2] = 255;
    }
    let out = preprocess(&img, 28, 28).unwrap();
    assert_mnist_like(&out);
    let (_, y0, _, y1) = ink_box(&out, 64);
    assert!(y1 - y0 + 1 >= 19, "the small digit is scaled up to the 20-pixel box");
    // Preprocessing an already preprocessed digit changes little.
    let again = preprocess(&out, 28, 28).unwrap();
    assert_mnist_like(&again);
    let diff: u64 = out.iter().zip(&again).map(|(&a, &b)| a.abs_diff(b) as u64).sum();
    let total: u64 = out.iter().map(|&v| v as u64).sum();
    assert!(diff * 3 < total, "preprocessing is not stable: diff {diff} of {total}");
}

#[test]
fn blank_and_empty_images_are_errors() {
    for (pixels, what) in
        [(vec![255u8; 50 * 40], "white"), (vec![0u8; 50 * 40], "black"), (vec![128u8; 50 * 40], "gray")]
    {
        let err = preprocess(&pixels, 50, 40).unwrap_err();
        assert!(err.to_string().contains("blank"), "{what}: {err}");
    }
    // Faint smudge: too little contrast to be a digit.
    let mut faint = vec![255u8; 50 * 40];
    faint[20 * 50 + 25] = 240;
    assert!(preprocess(&faint, 50, 40).unwrap_err().to_string().contains("blank"));

    assert!(preprocess(&[], 0, 0).is_err());
    assert!(preprocess(&[], 0, 5).is_err());
    assert!(preprocess(&[0; 10], 3, 3).is_err(), "pixel count does not match the size");
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::File::create(path).unwrap().write_all(bytes).unwrap();
}

#[test]
fn loads_png_of_any_color_type() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (100u32, 80u32);
    let gray = black_one_on_white(w as usize, h as usize);
    let expected = preprocess(&gray, w as usize, h as usize).unwrap();

    let luma = image::GrayImage::from_raw(w, h, gray.clone()).unwrap();
    let path = dir.path().join("gray.png");
    luma.save(&path).unwrap();
    assert_eq!(load_digit(&path).unwrap(), expected);

    // Blue ink on yellowish paper, RGB.
    let rgb = image::RgbImage::from_fn(w, h, |x, y| {
        if gray[(y * w + x) as usize] == 0 {
            image::Rgb([20, 20, 120])
        } else {
            image::Rgb([250, 245, 200])
        }
    });
    let path = dir.path().join("rgb.png");
    rgb.save(&path).unwrap();
    assert_mnist_like(&load_digit(&path).unwrap());

    // Black ink on a transparent background (what drawing programs export).
    let rgba = image::RgbaImage::from_fn(w, h, |x, y| {
        if gray[(y * w + x) as usize] == 0 {
            image::Rgba([0, 0, 0, 255])
        } else {
            image::Rgba([0, 0, 0, 0])
        }
    });
    let path = dir.path().join("rgba.png");
    rgba.save(&path).unwrap();
    assert_eq!(load_digit(&path).unwrap(), expected);

    // 16-bit gray.
    let wide: Vec<u16> = gray.iter().map(|&v| v as u16 * 257).collect();
    let luma16 = image::ImageBuffer::<image::Luma<u16>, _>::from_raw(w, h, wide).unwrap();
    let path = dir.path().join("gray16.png");
    luma16.save(&path).unwrap();
    assert_eq!(load_digit(&path).unwrap(), expected);
}

#[test]
fn loads_pgm_p5_and_p2() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (100usize, 80usize);
    let gray = black_one_on_white(w, h);
    let expected = preprocess(&gray, w, h).unwrap();

    let mut p5 = format!("P5\n# a comment\n{w} {h}\n255\n").into_bytes();
    p5.extend_from_slice(&gray);
    let path = dir.path().join("digit.pgm");
    write(&path, &p5);
    assert_eq!(load_digit(&path).unwrap(), expected);

    let mut p2 = format!("P2\n{w} {h}\n255\n");
    for row in gray.chunks(w) {
        let line: Vec<String> = row.iter().map(|v| v.to_string()).collect();
        p2.push_str(&line.join(" "));
        p2.push('\n');
    }
    let path = dir.path().join("ascii.pgm");
    write(&path, p2.as_bytes());
    assert_eq!(load_digit(&path).unwrap(), expected);

    // Maxval 15: the same picture in 4-bit levels.
    let mut p2_15 = format!("P2\n{w} {h}\n15\n");
    for row in gray.chunks(w) {
        let line: Vec<String> = row.iter().map(|&v| (v / 17).to_string()).collect();
        p2_15.push_str(&line.join(" "));
        p2_15.push('\n');
    }
    let path = dir.path().join("maxval15.pgm");
    write(&path, p2_15.as_bytes());
    assert_eq!(load_digit(&path).unwrap(), expected);
}

#[test]
fn bad_files_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();

    let missing = dir.path().join("no-such-digit.png");
    let err = format!("{:#}", load_digit(&missing).unwrap_err());
    assert!(err.contains("no-such-digit.png"), "{err}");

    let garbage = dir.path().join("garbage.png");
    write(&garbage, b"this is not an image at all, just text\n");
    let err = format!("{:#}", load_digit(&garbage).unwrap_err());
    assert!(err.contains("garbage.png") && err.contains("not a PNG or PGM"), "{err}");

    let jpeg = dir.path().join("photo.jpg");
    write(&jpeg, &[0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J', b'F', b'I', b'F', 0, 1, 1, 0, 0, 1]);
    let err = format!("{:#}", load_digit(&jpeg).unwrap_err());
    assert!(err.contains("unsupported image format"), "{err}");

    let truncated = dir.path().join("truncated.png");
    let png = dir.path().join("ok.png");
    image::GrayImage::from_raw(30, 30, vec![255; 900]).unwrap().save(&png).unwrap();
    let bytes = std::fs::read(&png).unwrap();
    write(&truncated, &bytes[..bytes.len() / 2]);
    let err = format!("{:#}", load_digit(&truncated).unwrap_err());
    assert!(err.contains("truncated.png"), "{err}");

    // A valid but blank PNG.
    let err = format!("{:#}", load_digit(&png).unwrap_err());
    assert!(err.contains("ok.png") && err.contains("blank"), "{err}");

    // A PGM header that promises more pixels than the file has, and a zero-size one.
    let short = dir.path().join("short.pgm");
    write(&short, b"P5\n10 10\n255\n\x00\x00");
    assert!(load_digit(&short).is_err());
    let empty = dir.path().join("empty.pgm");
    write(&empty, b"P5\n0 0\n255\n");
    assert!(load_digit(&empty).is_err());
}
