//! Deterministic pictures for the demo worker: PNG stills and GIF animations drawn from a
//! hash of the prompt and seed. The same input always gives the same bytes (the hash is
//! spelled out here, not `std`'s, whose output may change between Rust versions).

/// Largest side of a demo image, pixels.
pub const MAX_IMAGE_SIDE: u32 = 256;
/// Demo video size, pixels.
pub const VIDEO_SIZE: (u16, u16) = (160, 90);
/// Delay between GIF frames, hundredths of a second (about 16 frames per second).
pub const FRAME_DELAY_CS: u16 = 6;

/// Why a picture could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// PNG encoder error.
    #[error("png encoding")]
    Png(#[from] png::EncodingError),
    /// GIF encoder error.
    #[error("gif encoding")]
    Gif(#[from] gif::EncodingError),
}

/// FNV-1a over `parts`, each followed by a 0xff separator.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.iter().chain(std::iter::once(&0xff)) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// SplitMix64: a stream of well-mixed numbers from one seed.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The look of one picture: a 256-colour palette and the pattern's coefficients.
struct Style {
    palette: Vec<u8>,
    kx: u32,
    ky: u32,
    ring: u32,
}

impl Style {
    fn new(prompt: &str, seed: u64, index: u32) -> Self {
        let mut s = fnv1a(&[prompt.as_bytes(), &seed.to_le_bytes(), &index.to_le_bytes()]);
        let mut color = || {
            let v = splitmix(&mut s);
            [
                (v & 0xff) as u8,
                ((v >> 8) & 0xff) as u8,
                ((v >> 16) & 0xff) as u8,
            ]
        };
        let stops = [color(), color(), color()];
        let mut palette = Vec::with_capacity(256 * 3);
        for i in 0..256u32 {
            let (a, b, t) = if i < 128 {
                (stops[0], stops[1], i * 2)
            } else {
                (stops[1], stops[2], (i - 128) * 2)
            };
            for c in 0..3 {
                let v = (u32::from(a[c]) * (255 - t) + u32::from(b[c]) * t) / 255;
                palette.push(v as u8);
            }
        }
        let v = splitmix(&mut s);
        Self {
            palette,
            kx: 1 + (v & 3) as u32,
            ky: 1 + ((v >> 2) & 3) as u32,
            ring: 8 + ((v >> 4) & 31) as u32,
        }
    }

    /// Palette index of pixel (x, y) at animation `phase`.
    fn index(&self, x: u32, y: u32, w: u32, h: u32, phase: u32) -> u8 {
        let gradient = (x * self.kx * 255 / w.max(1) + y * self.ky * 255 / h.max(1)) / 2;
        let (dx, dy) = (x.abs_diff(w / 2), y.abs_diff(h / 2));
        let rings = ((dx * dx + dy * dy) / self.ring).wrapping_add(phase) & 0x3f;
        ((gradient + rings) & 0xff) as u8
    }
}

/// The demo size of a `width` x `height` request: scaled to fit [`MAX_IMAGE_SIDE`].
pub fn image_size(width: u32, height: u32) -> (u32, u32) {
    let (w, h) = (width.max(1), height.max(1));
    let side = w.max(h);
    if side <= MAX_IMAGE_SIDE {
        return (w, h);
    }
    let scale = |v: u32| (v * MAX_IMAGE_SIDE / side).max(1);
    (scale(w), scale(h))
}

/// Image `index` of a job, as PNG bytes (8-bit RGB).
pub fn render_png(
    prompt: &str,
    seed: u64,
    index: u32,
    width: u32,
    height: u32,
) -> Result<Vec<u8>, RenderError> {
    let style = Style::new(prompt, seed, index);
    let mut rgb = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            let i = usize::from(style.index(x, y, width, height, 0)) * 3;
            rgb.extend_from_slice(&style.palette[i..i + 3]);
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&rgb)?;
    writer.finish()?;
    Ok(out)
}

/// A looping GIF of exactly `frames` frames (at least one) of [`VIDEO_SIZE`].
pub fn render_gif(prompt: &str, seed: u64, frames: u32) -> Result<Vec<u8>, RenderError> {
    let style = Style::new(prompt, seed, 0);
    let (w, h) = VIDEO_SIZE;
    let mut out = Vec::new();
    {
        let mut encoder = gif::Encoder::new(&mut out, w, h, &style.palette)?;
        encoder.set_repeat(gif::Repeat::Infinite)?;
        for f in 0..frames.max(1) {
            let mut buffer = Vec::with_capacity(usize::from(w) * usize::from(h));
            for y in 0..u32::from(h) {
                for x in 0..u32::from(w) {
                    buffer.push(style.index(x, y, u32::from(w), u32::from(h), f));
                }
            }
            let frame = gif::Frame {
                width: w,
                height: h,
                delay: FRAME_DELAY_CS,
                buffer: buffer.into(),
                ..gif::Frame::default()
            };
            encoder.write_frame(&frame)?;
        }
    }
    Ok(out)
}

/// Length of a [`render_gif`] animation of `frames` frames, seconds.
pub fn gif_duration_seconds(frames: u32) -> f64 {
    f64::from(frames.max(1)) * f64::from(FRAME_DELAY_CS) / 100.0
}

/// A seed for a job that did not ask for one, derived from its id.
pub fn seed_for(job_id: &str) -> u64 {
    fnv1a(&[job_id.as_bytes()]) & 0xffff_ffff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_scale_down_keeping_the_aspect() {
        assert_eq!(image_size(1024, 1024), (256, 256));
        assert_eq!(image_size(832, 480), (256, 147));
        assert_eq!(image_size(100, 50), (100, 50));
    }

    #[test]
    fn different_seeds_give_different_images() {
        let a = render_png("cat", 1, 0, 32, 32).unwrap();
        let b = render_png("cat", 2, 0, 32, 32).unwrap();
        let c = render_png("cat", 1, 1, 32, 32).unwrap();
        assert_ne!(a, b);
        assert_ne!(a, c);
    }
}
