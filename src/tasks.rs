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

/// Most prompts that one label's templates may expand to.
pub const MAX_PROMPTS_PER_LABEL: usize = 1024;

/// Expand alternatives in templates into a template ensemble: every `(a|b|c)` group stands for
/// each of its options, so `"a (small|big) {} (on the left|on the right)"` is four templates.
/// Parentheses without `|` are kept as written.
pub fn expand_templates(templates: &[impl AsRef<str>]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for template in templates {
        let mut expanded = vec![String::new()];
        let mut rest = template.as_ref();
        while let Some(open) = rest.find('(') {
            let group = rest[open + 1..]
                .find(')')
                .map(|close| &rest[open + 1..open + 1 + close]);
            let (literal, options, after) = match group {
                Some(g) if g.contains('|') => (
                    &rest[..open],
                    g.split('|').collect(),
                    &rest[open + g.len() + 2..],
                ),
                _ => (&rest[..=open], vec![""], &rest[open + 1..]),
            };
            expanded = expanded
                .iter()
                .flat_map(|head| options.iter().map(move |o| format!("{head}{literal}{o}")))
                .collect();
            if expanded.len() > MAX_PROMPTS_PER_LABEL {
                return Err(Error::Input(format!(
                    "the template \"{}\" expands to more than {MAX_PROMPTS_PER_LABEL} prompts",
                    template.as_ref()
                )));
            }
            rest = after;
        }
        out.extend(expanded.into_iter().map(|head| head + rest));
    }
    if out.len() > MAX_PROMPTS_PER_LABEL {
        return Err(Error::Input(format!(
            "the templates expand to {} prompts per label (at most {MAX_PROMPTS_PER_LABEL})",
            out.len()
        )));
    }
    Ok(out)
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

/// How a template ensemble combines one label's prompts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Ensemble {
    /// Average the prompts' normalized embeddings into one per label (the CLIP paper's prompt
    /// ensembling): suits templates that are paraphrases ("a photo of a {}", "a picture of a {}").
    #[default]
    Mean,
    /// Softmax over every prompt of every label, summed per label: the label's probability
    /// marginalised over its prompts. Suits templates that describe different images ("a red
    /// {} on the left", "a blue {} at the top"), where only the matching prompt scores high.
    Probability,
}

impl Ensemble {
    /// `"mean"` or `"probability"`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "mean" => Ok(Ensemble::Mean),
            "probability" => Ok(Ensemble::Probability),
            other => Err(Error::Input(format!(
                "unknown ensemble \"{other}\" (expected mean or probability)"
            ))),
        }
    }
}

/// How logits `scale * cos (+ bias)` become label scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scoring {
    /// CLIP: a softmax across the labels (the scores sum to 1).
    Softmax { scale: f32 },
    /// SigLIP: each label's own probability, `sigmoid(scale * cos + bias)`, independent of the
    /// other labels (the scores do not sum to 1; several or none may be high).
    Sigmoid { scale: f32, bias: f32 },
}

impl Scoring {
    /// The logit of a cosine similarity.
    pub fn logit(self, cos: f32) -> f32 {
        match self {
            Scoring::Softmax { scale } => scale * cos,
            Scoring::Sigmoid { scale, bias } => scale * cos + bias,
        }
    }

    /// `"softmax"` or `"sigmoid"`.
    pub fn name(self) -> &'static str {
        match self {
            Scoring::Softmax { .. } => "softmax",
            Scoring::Sigmoid { .. } => "sigmoid",
        }
    }
}

/// Label scores for one image, best first, from the embeddings of each label's prompts
/// (`prompts[i]`: label `i`'s prompts, one per template). With [`Scoring::Sigmoid`], the
/// probability ensemble scores a label by its best-matching prompt.
pub fn ensemble_scores(
    image: &[f32],
    labels: &[impl AsRef<str>],
    prompts: &[Vec<Vec<f32>>],
    scoring: Scoring,
    how: Ensemble,
) -> Vec<LabelScore> {
    let logits: Vec<f32> = prompts
        .iter()
        .map(|p| match how {
            Ensemble::Mean => scoring.logit(dot(image, &ensemble(p))),
            Ensemble::Probability => {
                let logits = p.iter().map(|e| scoring.logit(dot(image, e)));
                match scoring {
                    // A softmax over labels of each label's log-sum-exp equals the softmax
                    // over all prompts summed per label.
                    Scoring::Softmax { .. } => log_sum_exp(logits),
                    Scoring::Sigmoid { .. } => logits.fold(f32::NEG_INFINITY, f32::max),
                }
            }
        })
        .collect();
    match scoring {
        Scoring::Softmax { .. } => softmax_scores(labels, &logits),
        Scoring::Sigmoid { .. } => sorted(
            labels
                .iter()
                .zip(&logits)
                .map(|(label, &l)| (label, 1.0 / (1.0 + (-l).exp()))),
        ),
    }
}

fn log_sum_exp(logits: impl Iterator<Item = f32> + Clone) -> f32 {
    let max = logits.clone().fold(f32::NEG_INFINITY, f32::max);
    max + logits.map(|l| (l - max).exp()).sum::<f32>().ln()
}

/// Softmax over per-label logits, sorted by score, highest first.
fn softmax_scores(labels: &[impl AsRef<str>], logits: &[f32]) -> Vec<LabelScore> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let total: f32 = exps.iter().sum();
    sorted(labels.iter().zip(exps).map(|(label, e)| (label, e / total)))
}

/// Label scores, highest first.
fn sorted<'a>(scores: impl Iterator<Item = (&'a (impl AsRef<str> + 'a), f32)>) -> Vec<LabelScore> {
    let mut scores: Vec<LabelScore> = scores
        .map(|(label, score)| LabelScore {
            label: label.as_ref().to_string(),
            score,
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
    fn templates_expand_alternatives() {
        assert_eq!(
            expand_templates(&["a (small|big) {} (left|right)", "plain {} (as is)"]).unwrap(),
            [
                "a small {} left",
                "a small {} right",
                "a big {} left",
                "a big {} right",
                "plain {} (as is)"
            ]
        );
        assert_eq!(
            expand_templates(&["a {} (", "x (|y)"]).unwrap(),
            ["a {} (", "x ", "x y"]
        );
        let huge = "(a|b|c|d)".repeat(6);
        assert!(matches!(expand_templates(&[huge]), Err(Error::Input(_))));
    }

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

    const SOFTMAX: Scoring = Scoring::Softmax { scale: 10.0 };

    #[test]
    fn sigmoid_scores_are_independent() {
        let prompts = [
            vec![vec![0.0, 1.0]],
            vec![vec![1.0, 0.0]],
            vec![vec![0.8, 0.6]],
        ];
        let scoring = Scoring::Sigmoid {
            scale: 10.0,
            bias: -5.0,
        };
        let scores = ensemble_scores(
            &[1.0, 0.0],
            &["a", "b", "c"],
            &prompts,
            scoring,
            Ensemble::Mean,
        );
        let sigmoid = |l: f32| 1.0 / (1.0 + (-l).exp());
        let labels: Vec<&str> = scores.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["b", "c", "a"]);
        for (score, logit) in scores.iter().zip([5.0, 3.0, -5.0]) {
            assert!((score.score - sigmoid(logit)).abs() < 1e-6, "{score:?}");
        }
        // The probability ensemble takes a label's best prompt.
        let two = [vec![vec![1.0, 0.0], vec![-1.0, 0.0]]];
        let best = ensemble_scores(&[1.0, 0.0], &["a"], &two, scoring, Ensemble::Probability);
        assert!((best[0].score - sigmoid(5.0)).abs() < 1e-6);
    }

    #[test]
    fn classify_sorts_a_softmax() {
        let prompts = [vec![vec![0.0, 1.0]], vec![vec![1.0, 0.0]]];
        let scores = ensemble_scores(&[1.0, 0.0], &["a", "b"], &prompts, SOFTMAX, Ensemble::Mean);
        assert_eq!(scores[0].label, "b");
        let expected = 1.0 / (1.0 + (-10.0f32).exp());
        assert!((scores[0].score - expected).abs() < 1e-6);
        assert!((scores.iter().map(|s| s.score).sum::<f32>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn probability_ensemble_sums_a_softmax_over_all_prompts() {
        // Label "a" has one prompt that matches the image and one that does not; "b" has two
        // lukewarm ones. The mean ensemble blurs "a"; the probability ensemble keeps its match.
        let s = std::f32::consts::FRAC_1_SQRT_2;
        let prompts = [
            vec![vec![1.0, 0.0], vec![-1.0, 0.0]],
            vec![vec![s, s], vec![s, -s]],
        ];
        let image = [1.0, 0.0];
        let mean = ensemble_scores(&image, &["a", "b"], &prompts, SOFTMAX, Ensemble::Mean);
        assert_eq!(mean[0].label, "b");
        let probability = ensemble_scores(
            &image,
            &["a", "b"],
            &prompts,
            SOFTMAX,
            Ensemble::Probability,
        );
        let exps: Vec<f32> = [10.0f32, -10.0, 10.0 * s, 10.0 * s]
            .iter()
            .map(|l| l.exp())
            .collect();
        let expected_a = (exps[0] + exps[1]) / exps.iter().sum::<f32>();
        assert_eq!(probability[0].label, "a");
        assert!((probability[0].score - expected_a).abs() < 1e-6);
        assert!(Ensemble::parse("median").is_err());
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
