//! The training objectives: CLIP's symmetric InfoNCE with a learned temperature, and SigLIP's
//! pairwise sigmoid loss with a learned temperature and bias.

use burn::tensor::activation::{log_sigmoid, log_softmax};
use burn::tensor::{Int, Tensor};

use crate::model::ClipModel;

/// The largest allowed `logit_scale` (log of 100), as in CLIP and open_clip.
pub const MAX_LOGIT_SCALE: f32 = 4.605_170_2;

/// The model's own objective on a batch of its embeddings: SigLIP's sigmoid loss where the model
/// has a `logit_bias`, else CLIP's contrastive loss.
pub fn model_loss(model: &ClipModel, image: Tensor<2>, text: Tensor<2>) -> Tensor<1> {
    let scale = model.logit_scale.val();
    match &model.logit_bias {
        Some(bias) => sigmoid_loss(image, text, scale, bias.val()),
        None => clip_loss(image, text, scale),
    }
}

/// Symmetric InfoNCE over a batch of matched pairs: `logits = exp(logit_scale) * img @ txt^T`
/// on L2-normalized features; cross-entropy over rows (image → text) and over columns (text →
/// image) with the diagonal as targets, averaged. Returns a one-element tensor.
pub fn clip_loss(image: Tensor<2>, text: Tensor<2>, logit_scale: Tensor<1>) -> Tensor<1> {
    let [n, _] = image.dims();
    let scale = logit_scale.exp().reshape([1, 1]);
    let logits = image.matmul(text.transpose()) * scale;
    let targets = Tensor::<1, Int>::arange(0..n as i64, &logits.device()).reshape([n, 1]);
    let image_to_text = diagonal_nll(logits.clone(), targets.clone());
    let text_to_image = diagonal_nll(logits.transpose(), targets);
    (image_to_text + text_to_image) / 2.0
}

/// Mean negative log-likelihood of the target column in each row.
fn diagonal_nll(logits: Tensor<2>, targets: Tensor<2, Int>) -> Tensor<1> {
    -log_softmax(logits, 1).gather(1, targets).mean()
}

/// SigLIP's sigmoid loss (open_clip's `SigLipLoss`): every image-text pair of the batch is an
/// independent binary decision, `logits = exp(logit_scale) * img @ txt^T + logit_bias`, labels
/// +1 on the diagonal and -1 elsewhere; `-sum(log_sigmoid(labels * logits)) / batch`. Returns a
/// one-element tensor.
pub fn sigmoid_loss(
    image: Tensor<2>,
    text: Tensor<2>,
    logit_scale: Tensor<1>,
    logit_bias: Tensor<1>,
) -> Tensor<1> {
    let [n, _] = image.dims();
    let device = image.device();
    let logits = image.matmul(text.transpose()) * logit_scale.exp().reshape([1, 1])
        + logit_bias.reshape([1, 1]);
    let labels = Tensor::<2>::eye(n, &device) * 2.0 - 1.0;
    -log_sigmoid(logits * labels).sum() / n as f32
}
