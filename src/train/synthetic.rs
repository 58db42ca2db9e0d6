//! A synthetic image-caption generator for offline training: rendered scenes of one coloured
//! shape (several shapes, colours, sizes, positions, backgrounds) with compositional captions
//! such as "a small red triangle on the left". Some colour-shape combinations are held out of
//! training, so zero-shot accuracy on them measures what contrastive training learned.

use crate::image::RgbImage;

/// Shape names.
pub const SHAPES: [&str; 4] = ["circle", "square", "triangle", "cross"];
/// Colour names and their RGB values.
pub const COLOURS: [(&str, [u8; 3]); 6] = [
    ("red", [220, 40, 40]),
    ("green", [40, 170, 60]),
    ("blue", [40, 80, 225]),
    ("yellow", [235, 215, 40]),
    ("purple", [150, 60, 190]),
    ("orange", [245, 140, 30]),
];
/// Size names and radii as a fraction of the image side.
pub const SIZES: [(&str, f32); 2] = [("small", 0.2), ("big", 0.32)];
/// Position names and centres as fractions of the image side.
pub const POSITIONS: [(&str, [f32; 2]); 5] = [
    ("on the left", [0.32, 0.5]),
    ("on the right", [0.68, 0.5]),
    ("at the top", [0.5, 0.32]),
    ("at the bottom", [0.5, 0.68]),
    ("in the center", [0.5, 0.5]),
];
/// Largest change of each colour channel from its named value (colour jitter).
const COLOUR_JITTER: f32 = 25.0;

/// One scene's attributes (indices into the tables above).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scene {
    pub shape: usize,
    pub colour: usize,
    pub size: usize,
    pub position: usize,
    /// Grey level of the background, any of 0-255: the contrast between shape and background
    /// varies, so shape has to be learned apart from colour.
    pub background: u8,
}

impl Scene {
    /// Whether this colour-shape pair is held out of training: each colour with one shape,
    /// every colour and every shape still seen in training with other partners.
    pub fn held_out(colour: usize, shape: usize) -> bool {
        shape == colour % SHAPES.len()
    }

    /// The caption, e.g. "a small red triangle on the left".
    pub fn caption(&self) -> String {
        format!(
            "a {} {} {} {}",
            SIZES[self.size].0,
            COLOURS[self.colour].0,
            SHAPES[self.shape],
            POSITIONS[self.position].0
        )
    }

    /// The caption without the colour, e.g. "a small triangle on the left".
    pub fn caption_without_colour(&self) -> String {
        format!(
            "a {} {} {}",
            SIZES[self.size].0, SHAPES[self.shape], POSITIONS[self.position].0
        )
    }

    /// Draw the scene at `side` x `side` pixels, with a little noise from `rng`.
    pub fn render(&self, side: usize, rng: &mut Rng) -> RgbImage {
        let colour = COLOURS[self.colour]
            .1
            .map(|c| (c as f32 + rng.symmetric() * COLOUR_JITTER).clamp(0.0, 255.0));
        self.render_in(colour, side, rng)
    }

    /// Draw the scene in a random colour that is none of the named ones' (for colour-free
    /// captions: shape then has to be recognised whatever the colour).
    pub fn render_unnamed_colour(&self, side: usize, rng: &mut Rng) -> RgbImage {
        let bg = self.background as f32;
        loop {
            let colour = [rng.unit() * 255.0, rng.unit() * 255.0, rng.unit() * 255.0];
            let contrast = colour.iter().map(|c| (c - bg).abs()).fold(0.0, f32::max);
            let named = COLOURS.iter().any(|(_, named)| {
                named
                    .iter()
                    .zip(&colour)
                    .all(|(&n, c)| (n as f32 - c).abs() <= 2.0 * COLOUR_JITTER)
            });
            if contrast > 80.0 && !named {
                return self.render_in(colour, side, rng);
            }
        }
    }

    fn render_in(&self, colour: [f32; 3], side: usize, rng: &mut Rng) -> RgbImage {
        let s = side as f32;
        let bg = self.background;
        let [fx, fy] = POSITIONS[self.position].1;
        let jitter = 0.05 * s;
        let (cx, cy) = (
            fx * s + rng.symmetric() * jitter,
            fy * s + rng.symmetric() * jitter,
        );
        let r = SIZES[self.size].1 * s * (0.9 + 0.2 * rng.unit());
        let mut data = Vec::with_capacity(side * side * 3);
        for y in 0..side {
            for x in 0..side {
                // Sample at the pixel centre with 2x2 supersampling for smooth edges.
                let mut coverage = 0.0;
                for (ox, oy) in [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)] {
                    let (px, py) = ((x as f32 + ox - cx) / r, (y as f32 + oy - cy) / r);
                    coverage += inside(self.shape, px, py) as u8 as f32 / 4.0;
                }
                let noise = rng.symmetric() * 6.0;
                for channel in colour {
                    let v = bg as f32 * (1.0 - coverage) + channel * coverage + noise;
                    data.push(v.clamp(0.0, 255.0) as u8);
                }
            }
        }
        RgbImage {
            width: side,
            height: side,
            data,
        }
    }

    /// A group of scenes that differ from a random base scene in one attribute each (shape,
    /// colour, size, position), all from `split`. Batches made of such groups hold hard
    /// negatives, so that every attribute matters to the contrastive loss.
    pub fn group(rng: &mut Rng, split: Split) -> [Scene; 4] {
        let base = Scene::random(rng, split);
        let mut vary = |change: &dyn Fn(&mut Scene, usize), choices: usize| {
            for _ in 0..64 {
                let mut scene = base;
                change(&mut scene, rng.below(choices));
                if scene != base && split.contains(&scene) {
                    return scene;
                }
            }
            base
        };
        [
            base,
            vary(&|s, v| s.shape = v, SHAPES.len()),
            vary(&|s, v| s.colour = v, COLOURS.len()),
            vary(
                &|s, v| {
                    s.size = v % SIZES.len();
                    s.position = v / SIZES.len();
                },
                SIZES.len() * POSITIONS.len(),
            ),
        ]
    }

    /// A random scene; `split` chooses seen (training) or held-out colour-shape pairs.
    pub fn random(rng: &mut Rng, split: Split) -> Self {
        loop {
            let scene = Scene {
                shape: rng.below(SHAPES.len()),
                colour: rng.below(COLOURS.len()),
                size: rng.below(SIZES.len()),
                position: rng.below(POSITIONS.len()),
                background: rng.below(256) as u8,
            };
            if split.contains(&scene) {
                return scene;
            }
        }
    }
}

/// Which colour-shape pairs a sample comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    HeldOut,
}

impl Split {
    /// Whether the scene's colour-shape pair belongs to this split.
    pub fn contains(self, scene: &Scene) -> bool {
        Scene::held_out(scene.colour, scene.shape) == (self == Split::HeldOut)
    }
}

/// Whether `(x, y)` (in units of the radius, centred) is inside the shape.
fn inside(shape: usize, x: f32, y: f32) -> bool {
    match SHAPES[shape] {
        "circle" => x * x + y * y <= 1.0,
        "square" => x.abs() <= 0.8 && y.abs() <= 0.8,
        "triangle" => (-1.0..=0.8).contains(&y) && x.abs() <= (y + 1.0) / 1.8 * 0.95,
        "cross" => (x.abs() <= 0.35 && y.abs() <= 1.0) || (y.abs() <= 0.35 && x.abs() <= 1.0),
        _ => false,
    }
}

/// A small deterministic random generator (SplitMix64), so data depends only on the seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// The whole state (for checkpoints); [`Rng::from_state`] continues from it.
    pub fn state(&self) -> u64 {
        self.0
    }

    pub fn from_state(state: u64) -> Self {
        Rng(state)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in `[-1, 1)`.
    pub fn symmetric(&mut self) -> f32 {
        self.unit() * 2.0 - 1.0
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Every caption the generator can produce (for training a tokenizer).
pub fn all_captions() -> Vec<String> {
    let mut out = Vec::new();
    for shape in 0..SHAPES.len() {
        for colour in 0..COLOURS.len() {
            for size in 0..SIZES.len() {
                for position in 0..POSITIONS.len() {
                    let scene = Scene {
                        shape,
                        colour,
                        size,
                        position,
                        background: 0,
                    };
                    out.push(scene.caption());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_colour_and_shape_is_seen_in_training_and_held_out() {
        for c in 0..COLOURS.len() {
            assert!((0..SHAPES.len()).any(|s| Scene::held_out(c, s)));
            assert!((0..SHAPES.len()).any(|s| !Scene::held_out(c, s)));
        }
        for s in 0..SHAPES.len() {
            assert!((0..COLOURS.len()).any(|c| Scene::held_out(c, s)));
        }
    }

    #[test]
    fn groups_vary_one_attribute_and_stay_in_their_split() {
        let mut rng = Rng::new(5);
        for split in [Split::Train, Split::HeldOut] {
            for _ in 0..50 {
                let [base, shape, colour, layout] = Scene::group(&mut rng, split);
                for s in [base, shape, colour, layout] {
                    assert!(split.contains(&s));
                }
                assert_eq!(
                    (shape.colour, shape.size, shape.position),
                    (base.colour, base.size, base.position)
                );
                assert_eq!(
                    (colour.shape, colour.size, colour.position),
                    (base.shape, base.size, base.position)
                );
                assert_eq!((layout.shape, layout.colour), (base.shape, base.colour));
            }
        }
    }

    #[test]
    fn rendering_is_deterministic_and_draws_the_colour() {
        let scene = Scene {
            shape: 0,
            colour: 2,
            size: 1,
            position: 4,
            background: 235,
        };
        let a = scene.render(32, &mut Rng::new(1));
        let b = scene.render(32, &mut Rng::new(1));
        assert_eq!(a, b);
        let centre = &a.data[(16 * 32 + 16) * 3..][..3];
        assert!(centre[2] > 180 && centre[0] < 90, "{centre:?}");
        assert_eq!(scene.caption(), "a big blue circle in the center");
    }
}
