//! Where training pairs come from ([`TrainData`]): the built-in synthetic scenes, or image-caption
//! data on disk: a directory with `captions.jsonl` (`{"image": ..., "caption": ...}` per line) or
//! a CSV/TSV with `filepath` and `caption` (or `title`) columns, the layout of open_clip's CSV
//! loader. Lines with empty captions or unreadable images are skipped and counted, never fatal.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::evaluate::{self, Evaluation};
use super::synthetic::{Rng, Scene, Split};
use crate::error::{Error, Result};
use crate::image::RgbImage;
use crate::pipeline::Clip;

/// One image-caption pair on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub image: PathBuf,
    pub caption: String,
}

/// What was skipped while reading a dataset, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SkipCounts {
    /// Lines whose caption is empty or only whitespace.
    pub empty_captions: usize,
    /// Images that are missing or do not decode.
    pub unreadable_images: usize,
    /// Lines that do not parse (bad JSON, missing columns).
    pub malformed_lines: usize,
}

/// A directory of image-caption pairs, checked on open: every image listed is decoded once.
#[derive(Debug, Clone)]
pub struct CaptionDataset {
    pub pairs: Vec<Pair>,
    pub skipped: SkipCounts,
}

impl CaptionDataset {
    /// Open `path`: a directory holding `captions.jsonl` (or `captions.csv` / `captions.tsv`),
    /// or the index file itself. Image paths are relative to the index file's directory.
    pub fn open(path: &Path) -> Result<Self> {
        let index = if path.is_dir() {
            ["captions.jsonl", "captions.csv", "captions.tsv"]
                .iter()
                .map(|name| path.join(name))
                .find(|p| p.is_file())
                .ok_or_else(|| {
                    Error::Input(format!(
                        "{}: no captions.jsonl, captions.csv or captions.tsv in this directory",
                        path.display()
                    ))
                })?
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
        let base = index.parent().unwrap_or(Path::new("."));
        let mut skipped = SkipCounts::default();
        let rows = if index.extension().is_some_and(|e| e == "jsonl") {
            parse_jsonl(&text, &mut skipped)
        } else {
            parse_csv(&text, &mut skipped)
                .map_err(|m| Error::Input(format!("{}: {m}", index.display())))?
        };
        let mut pairs = Vec::with_capacity(rows.len());
        for (image, caption) in rows {
            if caption.trim().is_empty() {
                skipped.empty_captions += 1;
                continue;
            }
            let image = base.join(image);
            if load_image(&image).is_err() {
                skipped.unreadable_images += 1;
                continue;
            }
            pairs.push(Pair {
                image,
                caption: caption.trim().to_string(),
            });
        }
        if pairs.is_empty() {
            return Err(Error::Input(format!(
                "{}: no usable image-caption pairs (skipped: {skipped:?})",
                index.display()
            )));
        }
        Ok(Self { pairs, skipped })
    }
}

/// Read and decode one image file.
pub fn load_image(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    RgbImage::decode(&bytes).map_err(|e| Error::Image(format!("{}: {e}", path.display())))
}

fn parse_jsonl(text: &str, skipped: &mut SkipCounts) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) => {
                skipped.malformed_lines += 1;
                continue;
            }
        };
        match (value["image"].as_str(), value["caption"].as_str()) {
            (Some(image), Some(caption)) => rows.push((image.to_string(), caption.to_string())),
            (Some(_), None) if value["caption"].is_null() => {
                skipped.empty_captions += 1;
            }
            _ => skipped.malformed_lines += 1,
        }
    }
    rows
}

/// A CSV (or, when the header has tabs, TSV) with a header naming the columns; quoted fields
/// may hold separators, quotes (`""`) and newlines.
fn parse_csv(
    text: &str,
    skipped: &mut SkipCounts,
) -> std::result::Result<Vec<(String, String)>, String> {
    let header = text.lines().next().ok_or("the file is empty")?;
    let delimiter = if header.contains('\t') { b'\t' } else { b',' };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(text.as_bytes());
    let columns = reader.headers().map_err(|e| e.to_string())?.clone();
    let find = |names: &[&str]| columns.iter().position(|c| names.contains(&c.trim()));
    let image_column = find(&["filepath", "image"]).ok_or("the header has no filepath column")?;
    let caption_column =
        find(&["caption", "title"]).ok_or("the header has no caption or title column")?;
    let mut rows = Vec::new();
    for record in reader.records() {
        let Ok(record) = record else {
            skipped.malformed_lines += 1;
            continue;
        };
        match (record.get(image_column), record.get(caption_column)) {
            (Some(image), Some(caption)) => rows.push((image.to_string(), caption.to_string())),
            (Some(_), None) => skipped.empty_captions += 1,
            _ => skipped.malformed_lines += 1,
        }
    }
    Ok(rows)
}

/// Where training pairs come from.
pub enum TrainData {
    /// The built-in synthetic scenes: batches of hard-negative groups from the training
    /// colour-shape pairs, evaluated zero-shot on the held-out pairs.
    Synthetic,
    /// Image-caption pairs on disk; every tenth pair (at most 200) is held out for evaluation.
    Captions(CaptionDataset),
}

impl TrainData {
    /// The pairs to train on and the held-out pairs (a data directory's; none when synthetic).
    pub fn split(&self) -> (Vec<&Pair>, Vec<&Pair>) {
        let TrainData::Captions(dataset) = self else {
            return (Vec::new(), Vec::new());
        };
        let holds_out = |i: usize| dataset.pairs.len() >= 20 && i % 10 == 9 && i / 10 < 200;
        let (mut train, mut held_out) = (Vec::new(), Vec::new());
        for (i, pair) in dataset.pairs.iter().enumerate() {
            if holds_out(i) {
                held_out.push(pair);
            } else {
                train.push(pair);
            }
        }
        (train, held_out)
    }

    /// Every caption, for training a tokenizer.
    pub fn captions(&self) -> Vec<String> {
        match self {
            TrainData::Synthetic => super::synthetic::all_captions(),
            TrainData::Captions(dataset) => {
                dataset.pairs.iter().map(|p| p.caption.clone()).collect()
            }
        }
    }

    /// Draw `count` training pairs: hard-negative groups of synthetic scenes, or random pairs of
    /// `pairs` (a data directory's training split).
    pub fn draw(
        &self,
        pairs: &[&Pair],
        rng: &mut Rng,
        count: usize,
        side: usize,
        unreadable: &mut usize,
    ) -> Result<Vec<(RgbImage, String)>> {
        match self {
            TrainData::Synthetic => Ok(draw_scenes(rng, count, side)),
            TrainData::Captions(_) => draw_from_disk(pairs, rng, count, unreadable),
        }
    }

    /// Evaluate `clip` as this data source defines it: zero-shot accuracy and recall on fresh
    /// synthetic scenes, or recall on a data directory's `held_out` pairs.
    pub fn evaluate(
        &self,
        clip: &Clip,
        step: u64,
        held_out: &[&Pair],
        eval_images: usize,
        seed: u64,
    ) -> Result<Evaluation> {
        match self {
            TrainData::Synthetic => evaluate::synthetic(clip, step, eval_images, seed),
            TrainData::Captions(_) => evaluate::held_out_pairs(clip, step, held_out),
        }
    }
}

/// The share of synthetic scenes drawn in a colour with no name, captioned without a colour.
const UNNAMED_COLOUR_FRACTION: f32 = 0.4;

/// `count` scenes from hard-negative groups, each rendered at 1-4x the model's resolution and
/// preprocessed like any input image (so that the model sees the resampling of larger pictures,
/// as in the demo).
fn draw_scenes(rng: &mut Rng, count: usize, side: usize) -> Vec<(RgbImage, String)> {
    let mut scenes = Vec::with_capacity(count + 3);
    while scenes.len() < count {
        scenes.extend(Scene::group(rng, Split::Train));
    }
    let mut pairs = Vec::with_capacity(count);
    for scene in &scenes[..count] {
        let scale = 1 + rng.below(4);
        if rng.unit() < UNNAMED_COLOUR_FRACTION {
            let image = scene.render_unnamed_colour(side * scale, rng);
            pairs.push((image, scene.caption_without_colour()));
        } else {
            pairs.push((scene.render(side * scale, rng), scene.caption()));
        }
    }
    pairs
}

/// `count` random pairs of `data`, their images read from disk.
fn draw_from_disk(
    data: &[&Pair],
    rng: &mut Rng,
    count: usize,
    unreadable: &mut usize,
) -> Result<Vec<(RgbImage, String)>> {
    let mut pairs = Vec::with_capacity(count);
    while pairs.len() < count {
        let pair = data[rng.below(data.len())];
        match load_image(&pair.image) {
            Ok(image) => pairs.push((image, pair.caption.clone())),
            // Checked on open, so this is a file changed since: skip it, unless it is all of them.
            Err(e) => {
                *unreadable += 1;
                if *unreadable > data.len() {
                    return Err(e);
                }
            }
        }
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_records_keep_quoted_separators_quotes_and_newlines() {
        let mut skipped = SkipCounts::default();
        let text = "filepath,caption\na.png,\"a red, round \"\"thing\"\"\"\nb.png,\"two\nlines\"\n";
        let rows = parse_csv(text, &mut skipped).unwrap();
        assert_eq!(
            rows,
            [
                ("a.png".to_string(), r#"a red, round "thing""#.to_string()),
                ("b.png".to_string(), "two\nlines".to_string()),
            ]
        );
        let rows = parse_csv("filepath\tcaption\na.png\tone, two\n", &mut skipped).unwrap();
        assert_eq!(rows, [("a.png".to_string(), "one, two".to_string())]);
        assert_eq!(skipped, SkipCounts::default());
    }

    #[test]
    fn csv_columns_are_found_by_name() {
        let mut skipped = SkipCounts::default();
        let rows = parse_csv("title,filepath\nhello,x.png\nonly\n", &mut skipped).unwrap();
        assert_eq!(rows, [("x.png".to_string(), "hello".to_string())]);
        assert_eq!(skipped.malformed_lines, 1);
        assert!(parse_csv("path,text\n", &mut skipped).is_err());
    }

    #[test]
    fn jsonl_counts_malformed_lines() {
        let mut skipped = SkipCounts::default();
        let rows = parse_jsonl(
            "{\"image\": \"a.png\", \"caption\": \"x\"}\nnot json\n{\"caption\": \"y\"}\n{\"image\": \"b.png\"}\n",
            &mut skipped,
        );
        assert_eq!(rows.len(), 1);
        assert_eq!(skipped.malformed_lines, 2);
        assert_eq!(skipped.empty_captions, 1);
    }
}
