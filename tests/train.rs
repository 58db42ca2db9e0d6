//! Contrastive training: the loss and its gradients against open_clip, whole-model gradients
//! against transformers, a finite-difference check, a short run whose loss falls
//! (deterministically), and the export round trip. Data directories: tests/cli.rs.

mod common;

use std::collections::HashMap;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::{Device, Gradients, Tensor, TensorData};
use common::*;
use webclip::config::{siglip, Architecture};
use webclip::model::TokenBatch;
use webclip::tasks::Scoring;
use webclip::train::checkpoint::trainable;
use webclip::train::{clip_loss, sigmoid_loss, train, TrainConfig, TrainData, Trained};
use webclip::weights::ParamTable;
use webclip::{block_on, Backend, Clip};

fn matrix(v: &serde_json::Value, device: &Device) -> Tensor<2> {
    let rows = rows(v);
    let (n, d) = (rows.len(), rows[0].len());
    Tensor::from_data(TensorData::new(rows.concat(), [n, d]), device)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

/// Each case of a loss fixture: the loss within 1e-5 (relative, at least 1), and the gradients
/// of the features and of each scalar parameter (`scalars`, e.g. `logit_scale`; its gradient
/// is `grad_<name>`) within `tolerance(reference gradient)`.
fn check_loss_cases(
    file: &str,
    scalars: &[&str],
    loss_of: impl Fn(Tensor<2>, Tensor<2>, &[Tensor<1>]) -> Tensor<1>,
    tolerance: impl Fn(&[f32]) -> f32,
) {
    let device = Device::flex().autodiff();
    let cases = read_json(fixtures().join("loss").join(file));
    for case in cases["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let image = matrix(&case["image_features"], &device).require_grad();
        let text = matrix(&case["text_features"], &device).require_grad();
        let number = |field: &str| case[field].as_f64().unwrap() as f32;
        let params: Vec<Tensor<1>> = scalars
            .iter()
            .map(|field| Tensor::<1>::from_floats([number(field)], &device).require_grad())
            .collect();
        let loss = loss_of(image.clone(), text.clone(), &params);
        let grads = loss.backward();
        let expected = number("loss");
        let ours = values(loss.inner())[0];
        assert!(
            (ours - expected).abs() <= 1e-5 * expected.abs().max(1.0),
            "{name}: loss {ours} vs {expected}"
        );
        let check = |what: &str, ours: Vec<f32>, theirs: Vec<f32>| {
            let diff = max_abs_diff(&ours, &theirs);
            let tol = tolerance(&theirs);
            assert!(diff <= tol, "{name}: {what} max abs diff {diff} > {tol}");
        };
        check(
            "d/dimage",
            values(image.grad(&grads).unwrap()),
            rows(&case["grad_image_features"]).concat(),
        );
        check(
            "d/dtext",
            values(text.grad(&grads).unwrap()),
            rows(&case["grad_text_features"]).concat(),
        );
        for (field, param) in scalars.iter().zip(&params) {
            check(
                &format!("d/d{field}"),
                values(param.grad(&grads).unwrap()),
                vec![number(&format!("grad_{field}"))],
            );
        }
    }
}

#[test]
fn loss_and_gradients_match_open_clip() {
    check_loss_cases(
        "cases.json",
        &["logit_scale"],
        |image, text, p| clip_loss(image, text, p[0].clone()),
        |_| 1e-4,
    );
}

#[test]
fn sigmoid_loss_and_gradients_match_open_clip() {
    // Its gradients reach hundreds (hard negatives at scale 100): 1e-4 of the largest, at least.
    check_loss_cases(
        "siglip_cases.json",
        &["logit_scale", "logit_bias"],
        |image, text, p| sigmoid_loss(image, text, p[0].clone(), p[1].clone()),
        |theirs| 1e-4 * theirs.iter().fold(1.0f32, |m, x| m.max(x.abs())),
    );
}

#[test]
fn gradients_match_finite_differences() {
    let device = Device::flex().autodiff();
    let cases = read_json(fixtures().join("loss/cases.json"));
    let case = &cases["cases"][3];
    let base = rows(&case["image_features"]);
    let text = matrix(&case["text_features"], &device);
    let s = case["logit_scale"].as_f64().unwrap() as f32;
    let loss_at = |image: Vec<Vec<f32>>, s: f32| -> f32 {
        let (n, d) = (image.len(), image[0].len());
        let image = Tensor::from_data(TensorData::new(image.concat(), [n, d]), &device);
        values(clip_loss(image, text.clone(), Tensor::from_floats([s], &device)).inner())[0]
    };
    let image = matrix(&case["image_features"], &device).require_grad();
    let scale = Tensor::<1>::from_floats([s], &device).require_grad();
    let grads = clip_loss(image.clone(), text.clone(), scale.clone()).backward();
    let analytic = values(image.grad(&grads).unwrap());
    let h = 1e-2;
    for (r, c) in [(0, 0), (3, 5), (7, 15)] {
        let (mut plus, mut minus) = (base.clone(), base.clone());
        plus[r][c] += h;
        minus[r][c] -= h;
        let numeric = (loss_at(plus, s) - loss_at(minus, s)) / (2.0 * h);
        let a = analytic[r * base[0].len() + c];
        assert!(
            (numeric - a).abs() <= 2e-3,
            "d/dimage[{r}][{c}]: numeric {numeric} vs autodiff {a}"
        );
    }
    let numeric = (loss_at(base.clone(), s + h) - loss_at(base.clone(), s - h)) / (2.0 * h);
    let a = values(scale.grad(&grads).unwrap())[0];
    assert!(
        (numeric - a).abs() <= 2e-3,
        "d/dlogit_scale: numeric {numeric} vs autodiff {a}"
    );
}

/// Collects each parameter's gradient (in the model's layout), by parameter id.
struct CollectGrads<'a>(&'a Gradients, HashMap<ParamId, Vec<f32>>);

impl ModuleVisitor for CollectGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = param.val().grad(self.0) {
            self.1.insert(param.id, values(grad));
        }
    }
}

#[test]
fn model_gradients_match_transformers() {
    // Backpropagation through the whole model (both towers, attention, layer norms, the
    // patch convolution, embeddings, projections) against PyTorch autograd.
    let device = Device::flex().autodiff();
    for name in ["tiny-quickgelu", "tiny-gelu"] {
        let dir = model_dir(name);
        let expected = read_json(dir.join("gradients.json"));
        let reference = read_json(dir.join("reference.json"));
        let clip = Clip::load_dir(&dir, &device).unwrap();
        let model = trainable(clip.model().clone());

        let n = expected["texts"].as_u64().unwrap() as usize;
        let shape: Vec<usize> = reference["pixel_shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let pixels = Tensor::<4>::from_data(
            TensorData::new(
                floats(&reference["pixel_values"]),
                [n, shape[1], shape[2], shape[3]],
            ),
            &device,
        );
        let ids = &ids(&reference["input_ids"])[..n];
        let tokens = TokenBatch::new(ids, &clip.config().text, &device).unwrap();
        let loss = clip_loss(
            model.embed_images(pixels),
            model.embed_texts(&tokens),
            model.logit_scale.val(),
        );
        let grads = loss.backward();
        let ours = values(loss.inner())[0];
        let want = expected["loss"].as_f64().unwrap() as f32;
        assert!((ours - want).abs() <= 1e-4, "{name}: loss {ours} vs {want}");

        // By checkpoint name and in the checkpoint's layout (Q/K/V split back into three).
        let mut collect = CollectGrads(&grads, HashMap::new());
        model.visit(&mut collect);
        let ours: HashMap<String, Vec<f32>> = ParamTable::new(&model, clip.config())
            .to_checkpoint(&collect.1)
            .into_iter()
            .map(|t| (t.name, t.values))
            .collect();
        let expected = expected["gradients"].as_object().unwrap();
        assert_eq!(
            ours.len(),
            expected.len(),
            "{name}: parameters with gradients"
        );
        for (param, want) in expected {
            let got = ours
                .get(param)
                .unwrap_or_else(|| panic!("{name}: no gradient for {param}"));
            let want_values = floats(&want["values"]);
            let got = match want.get("rows") {
                // The token embedding: only the rows the texts use.
                Some(rows) => {
                    let width = got.len() / clip.config().text.vocab_size;
                    let rows: Vec<usize> = rows
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| r.as_u64().unwrap() as usize)
                        .collect();
                    rows.iter()
                        .flat_map(|&r| got[r * width..][..width].to_vec())
                        .collect()
                }
                None => got.clone(),
            };
            let scale = want_values
                .iter()
                .fold(0f32, |m, v| m.max(v.abs()))
                .max(1e-3);
            let diff = max_abs_diff(&got, &want_values);
            assert!(
                diff <= 1e-3 * scale,
                "{name}: gradient of {param} differs by {diff} (largest entry {scale})"
            );
        }
    }
}

/// burn seeds its CPU random generator per process, so parameter initialisation is only
/// deterministic when one training starts at a time: the training tests take turns.
static ONE_TRAINING_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn short_run() -> TrainConfig {
    let mut config = TrainConfig::synthetic_default();
    config.steps = 40;
    config.warmup = 5;
    config.batch_size = 32;
    config.eval_every = 0;
    config.eval_images = 24;
    config.seed = 7;
    config
}

/// Train on synthetic scenes, with each step's loss.
fn train_synthetic(config: &TrainConfig, device: &Device) -> (Trained, Vec<f32>) {
    let mut losses = Vec::new();
    let trained = train(
        config,
        &TrainData::Synthetic,
        device,
        1,
        |r| losses.push(r.loss),
        |_| {},
    )
    .unwrap();
    (trained, losses)
}

/// Write `trained` as a Hugging Face directory, read it back with the ordinary loader and
/// check that it embeds texts exactly as the model in memory; `check` sees the directory and
/// the loaded model before the directory is removed.
fn assert_export_loads_back(
    trained: &Trained,
    device: &Device,
    name: &str,
    check: impl FnOnce(&std::path::Path, &Clip),
) {
    let dir = std::env::temp_dir().join(format!("webclip-{name}-{}", std::process::id()));
    trained.write_dir(&dir).unwrap();
    let loaded = Clip::load_dir(&dir, device).unwrap();
    check(&dir, &loaded);
    let in_memory = trained.load(device).unwrap();
    let texts = [
        "a small red circle on the left",
        "a big blue cross at the top",
    ];
    assert_eq!(
        block_on(loaded.embed_texts(&texts)).unwrap(),
        block_on(in_memory.embed_texts(&texts)).unwrap(),
        "{name}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_short_run_lowers_the_loss_deterministically_and_exports() {
    let _turn = ONE_TRAINING_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let device = Backend::Cpu.device().unwrap();
    let config = short_run();
    let run = || train_synthetic(&config, &device);
    let (trained, losses) = run();
    assert_eq!(losses.len(), 40);
    let first: f32 = losses[..5].iter().sum::<f32>() / 5.0;
    let last: f32 = losses[35..].iter().sum::<f32>() / 5.0;
    // Chance level is ln(batch size): below it, the model has begun to match pairs.
    let chance = (config.batch_size as f32).ln();
    assert!(
        last < first * 0.9 && last < 0.95 * chance,
        "loss fell too little: {first} -> {last} (chance {chance})"
    );
    assert_eq!(trained.evaluations.len(), 1, "an evaluation at the end");

    let (_, again) = run();
    assert_eq!(
        losses, again,
        "training is deterministic for a fixed seed on the CPU backend"
    );

    // The export is a Hugging Face directory that the ordinary loader reads back unchanged.
    assert_export_loads_back(&trained, &device, "export", |_, _| {});
}

#[test]
fn a_resumed_run_continues_exactly_where_its_checkpoint_was_taken() {
    let _turn = ONE_TRAINING_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let device = Backend::Cpu.device().unwrap();
    // CLIP's contrastive loss, and SigLIP's sigmoid loss (whose bias and padded text must
    // come back from the checkpoint too).
    let siglip = siglip::from_clip(&short_run().model);
    for (name, model) in [("clip", short_run().model), ("siglip", siglip)] {
        let dir =
            std::env::temp_dir().join(format!("webclip-checkpoint-{name}-{}", std::process::id()));
        let mut config = short_run();
        config.model = model;
        config.steps = 12;
        config.batch_size = 16;
        config.checkpoint_every = 6;
        config.checkpoint_dir = Some(dir.clone());
        let run = |config: &TrainConfig| {
            let (trained, losses) = train_synthetic(config, &device);
            (trained.weights, losses)
        };
        let (weights, losses) = run(&config);
        let checkpoint = dir.join("step-00000006");
        assert!(checkpoint.join("optimizer.safetensors").is_file());
        let state = read_json(checkpoint.join("trainer_state.json"));
        assert_eq!(
            state["step"], 6,
            "{name}: the checkpoint before the last step is kept"
        );

        config.checkpoint_every = 0;
        config.resume = Some(webclip::train::checkpoint::resolve(&dir).unwrap());
        let (resumed_weights, resumed_losses) = run(&config);
        assert_eq!(
            resumed_losses,
            losses[6..],
            "{name}: the same batches and updates after resuming"
        );
        assert!(resumed_weights == weights, "{name}: the same final weights");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn the_sigmoid_loss_trains_a_siglip_model_that_loads_back() {
    let _turn = ONE_TRAINING_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let device = Backend::Cpu.device().unwrap();
    let mut config = short_run();
    config.model = siglip::from_clip(&config.model);
    let (trained, losses) = train_synthetic(&config, &device);
    let first: f32 = losses[..5].iter().sum::<f32>() / 5.0;
    let last: f32 = losses[35..].iter().sum::<f32>() / 5.0;
    assert!(
        last < first * 0.7,
        "loss fell too little: {first} -> {last}"
    );

    // A SigLIP directory (with the pad token named), read back by the ordinary loader.
    assert_export_loads_back(&trained, &device, "siglip-export", |dir, loaded| {
        assert!(dir.join("tokenizer_config.json").is_file());
        assert_eq!(loaded.config().architecture, Architecture::Siglip);
        assert!(matches!(loaded.scoring(), Scoring::Sigmoid { .. }));
    });
}
