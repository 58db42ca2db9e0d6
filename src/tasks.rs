//! What CLIP embeddings are used for: zero-shot classification with prompt templates and
//! template ensembles, and ranking a gallery by similarity. Pure functions over embeddings.

use serde::Serialize;

use crate::error::{Error, Result};

/// The default prompt template.
pub const DEFAULT_TEMPLATE: &str = "a photo of a {}.";

/// One label and its probability.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelScore {
    pub label: String,
    pub score: f32,
}

/// One gallery item and its similarity to the query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RankHit {
    pub index: usize,
    pub score: f32,
}

/// The prompts for `label`: each template with `{}` replaced by the label (a template without
/// `{}` is followed by the label).
pub fn prompts(label: &str, templates: &[impl AsRef<str>]) -> Vec<String> {
    templates
        .iter()
        .map(|t| {
            let t = t.as_ref();
            if t.contains("{}") {
                t.replace("{}", label)
            } else {
                format!("{t} {label}").trim().to_string()
            }
        })
        .collect()
}

/// Check a label list and template list before classifying.
pub fn check_labels(labels: &[impl AsRef<str>], templates: &[impl AsRef<str>]) -> Result<()> {
    if labels.is_empty() {
        return Err(Error::Input("the label list is empty".into()));
    }
    if templates.is_empty() {
        return Err(Error::Input("the template list is empty".into()));
    }
    if let Some(i) = labels.iter().position(|l| l.as_ref().trim().is_empty()) {
        return Err(Error::Input(format!("label {i} is empty")));
    }
    Ok(())
}

/// Average the (normalized) embeddings of one label's prompts and renormalize: the template
/// ensemble of the CLIP paper.
pub fn ensemble(embeddings: &[Vec<f32>]) -> Vec<f32> {
    let dim = embeddings.first().map_or(0, Vec::len);
    let mut mean = vec![0.0f32; dim];
    for e in embeddings {
        for (m, v) in mean.iter_mut().zip(normalized(e)) {
            *m += v;
        }
    }
    normalized(&mean)
}

/// `v / |v|` (zero stays zero).
pub fn normalized(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 {
        return v.to_vec();
    }
    v.iter().map(|x| x / norm).collect()
}

/// Dot product.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Softmax over `logit_scale * cos(image, label)`, sorted by score, highest first.
pub fn classify_scores(
    image: &[f32],
    labels: &[impl AsRef<str>],
    label_embeddings: &[Vec<f32>],
    logit_scale: f32,
) -> Vec<LabelScore> {
    let logits: Vec<f32> = label_embeddings
        .iter()
        .map(|l| logit_scale * dot(image, l))
        .collect();
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let total: f32 = exps.iter().sum();
    let mut scores: Vec<LabelScore> = labels
        .iter()
        .zip(exps)
        .map(|(label, e)| LabelScore {
            label: label.as_ref().to_string(),
            score: e / total,
        })
        .collect();
    scores.sort_by(|a, b| b.score.total_cmp(&a.score));
    scores
}

/// The `topk` gallery items most similar (by dot product) to `query`, best first.
pub fn rank(query: &[f32], gallery: &[Vec<f32>], topk: usize) -> Result<Vec<RankHit>> {
    if let Some(i) = gallery.iter().position(|g| g.len() != query.len()) {
        return Err(Error::Input(format!(
            "gallery item {i} has {} dimensions, the query has {}",
            gallery[i].len(),
            query.len()
        )));
    }
    let mut hits: Vec<RankHit> = gallery
        .iter()
        .enumerate()
        .map(|(index, g)| RankHit {
            index,
            score: dot(query, g),
        })
        .collect();
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index)));
    hits.truncate(topk);
    Ok(hits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_fill_the_template() {
        assert_eq!(
            prompts("cat", &["a photo of a {}.", "art"]),
            ["a photo of a cat.", "art cat"]
        );
    }

    #[test]
    fn ensemble_averages_normalized_embeddings() {
        let e = ensemble(&[vec![2.0, 0.0], vec![0.0, 0.5]]);
        let s = std::f32::consts::FRAC_1_SQRT_2;
        assert!((e[0] - s).abs() < 1e-6 && (e[1] - s).abs() < 1e-6);
    }

    #[test]
    fn classify_sorts_a_softmax() {
        let scores = classify_scores(
            &[1.0, 0.0],
            &["a", "b"],
            &[vec![0.0, 1.0], vec![1.0, 0.0]],
            10.0,
        );
        assert_eq!(scores[0].label, "b");
        let expected = 1.0 / (1.0 + (-10.0f32).exp());
        assert!((scores[0].score - expected).abs() < 1e-6);
        assert!((scores.iter().map(|s| s.score).sum::<f32>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn rank_returns_top_k() {
        let hits = rank(
            &[1.0, 0.0],
            &[vec![0.1, 0.0], vec![0.9, 0.0], vec![0.5, 0.0]],
            2,
        )
        .unwrap();
        assert_eq!(hits.iter().map(|h| h.index).collect::<Vec<_>>(), [1, 2]);
        assert!(rank(&[1.0], &[vec![1.0, 2.0]], 1).is_err());
    }

    #[test]
    fn empty_labels_are_rejected() {
        let none: [&str; 0] = [];
        assert!(matches!(check_labels(&none, &["{}"]), Err(Error::Input(_))));
    }
}
