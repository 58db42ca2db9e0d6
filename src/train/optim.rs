//! AdamW over the model's parameters, with weight decay only on linear and convolution weights
//! (not on norms, biases, embeddings or `logit_scale`), global-norm gradient clipping, and the
//! `logit_scale` clamp of CLIP. Parameters are known by their module paths (the
//! [`ParamTable`]), which also name the moments in checkpoints.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Gradients, Tensor};

use super::loss::MAX_LOGIT_SCALE;
use crate::error::{Error, Result};
use crate::model::ClipModel;
use crate::weights::safetensors::Entry;
use crate::weights::{ParamEntry, ParamTable};

/// AdamW hyper-parameters.
#[derive(Debug, Clone, Copy)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Clip the global gradient norm to this (`None`: no clipping).
    pub max_grad_norm: Option<f64>,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-6,
            weight_decay: 0.2,
            max_grad_norm: Some(1.0),
        }
    }
}

/// Moments of one parameter, flattened.
struct Moments {
    m: Tensor<1>,
    v: Tensor<1>,
}

/// AdamW state across steps for one model's parameters, keyed by module path.
pub struct AdamW {
    config: AdamWConfig,
    step: u64,
    table: ParamTable,
    by_id: HashMap<ParamId, usize>,
    moments: HashMap<String, Moments>,
}

impl AdamW {
    /// An optimizer for the parameters in `table`.
    pub fn new(config: AdamWConfig, table: ParamTable) -> Self {
        Self {
            config,
            step: 0,
            by_id: table.by_id(),
            table,
            moments: HashMap::new(),
        }
    }

    /// Updates applied so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// The moments as safetensors entries (`<name>.exp_avg`, `<name>.exp_avg_sq`, flat F32),
    /// sorted by name.
    pub fn state_tensors(&self) -> Result<Vec<Entry<'static>>> {
        let mut names: Vec<&String> = self.moments.keys().collect();
        names.sort();
        let mut out = Vec::with_capacity(names.len() * 2);
        for name in names {
            let moments = &self.moments[name];
            for (suffix, tensor) in [("exp_avg", &moments.m), ("exp_avg_sq", &moments.v)] {
                let values = crate::model::values(tensor.clone())?;
                let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                out.push((format!("{name}.{suffix}"), "F32", vec![values.len()], bytes));
            }
        }
        Ok(out)
    }

    /// Restore the state written by [`AdamW::state_tensors`] after `steps` updates: every pair
    /// of moments must belong to one of the parameters and match its size.
    pub fn restore(
        &mut self,
        steps: u64,
        tensors: HashMap<String, Vec<f32>>,
        device: &burn::tensor::Device,
    ) -> Result<()> {
        let sizes: HashMap<&str, usize> = self
            .table
            .entries()
            .iter()
            .map(|e| (e.path.as_str(), e.numel()))
            .collect();
        let bad = |message: String| Error::Input(format!("optimizer state: {message}"));
        for (key, values) in &tensors {
            let name = key
                .strip_suffix(".exp_avg")
                .or_else(|| key.strip_suffix(".exp_avg_sq"))
                .ok_or_else(|| bad(format!("unexpected tensor `{key}`")))?;
            let expected = sizes
                .get(name)
                .ok_or_else(|| bad(format!("`{key}` belongs to no parameter of the model")))?;
            if values.len() != *expected {
                return Err(bad(format!(
                    "`{key}` has {} values, the parameter has {expected}",
                    values.len()
                )));
            }
        }
        self.step = steps;
        self.moments.clear();
        for (key, values) in &tensors {
            let Some(name) = key.strip_suffix(".exp_avg") else {
                continue;
            };
            let squares = tensors
                .get(&format!("{name}.exp_avg_sq"))
                .ok_or_else(|| bad(format!("`{name}.exp_avg` has no `{name}.exp_avg_sq`")))?;
            let tensor = |v: &Vec<f32>| {
                Tensor::from_data(burn::tensor::TensorData::new(v.clone(), [v.len()]), device)
            };
            self.moments.insert(
                name.to_string(),
                Moments {
                    m: tensor(values),
                    v: tensor(squares),
                },
            );
        }
        Ok(())
    }

    /// Apply one update with learning rate `lr`; returns the gradient norm before clipping.
    pub fn step(&mut self, model: &mut ClipModel, grads: &Gradients, lr: f64) -> Result<f32> {
        let mut norm = GradNorm { grads, sum: None };
        model.visit(&mut norm);
        let norm = match norm.sum {
            Some(sum) => crate::model::values(sum.sqrt())?[0],
            None => 0.0,
        };
        let clip = match self.config.max_grad_norm {
            Some(max) if norm as f64 > max => max / norm as f64,
            _ => 1.0,
        };
        self.step += 1;
        let mut update = Update {
            optimizer: self,
            grads,
            lr,
            clip,
        };
        *model = model.clone().map(&mut update);
        Ok(norm)
    }

    /// One parameter's update: moments, then the decoupled decay and the step.
    fn update(
        &mut self,
        entry: &ParamEntry,
        value: Tensor<1>,
        grad: Tensor<1>,
        lr: f64,
    ) -> Tensor<1> {
        let c = self.config;
        let moments = self
            .moments
            .entry(entry.path.clone())
            .or_insert_with(|| Moments {
                m: grad.zeros_like(),
                v: grad.zeros_like(),
            });
        moments.m = moments.m.clone() * c.beta1 + grad.clone() * (1.0 - c.beta1);
        moments.v = moments.v.clone() * c.beta2 + grad.powi_scalar(2) * (1.0 - c.beta2);
        let t = self.step as i32;
        let m_hat = moments.m.clone() / (1.0 - c.beta1.powi(t));
        let v_hat = moments.v.clone() / (1.0 - c.beta2.powi(t));
        // Decoupled weight decay, on matrix weights only.
        let mut value = if entry.is_matrix() {
            value * (1.0 - lr * c.weight_decay)
        } else {
            value
        };
        value = value - m_hat / (v_hat.sqrt() + c.eps) * lr;
        if entry.path == "logit_scale" {
            value = value.clamp(0.0, MAX_LOGIT_SCALE);
        }
        value
    }
}

/// Sums the squares of all gradients.
struct GradNorm<'a> {
    grads: &'a Gradients,
    sum: Option<Tensor<1>>,
}

impl ModuleVisitor for GradNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = param.val().grad(self.grads) {
            let squares = g.powi_scalar(2).sum();
            self.sum = Some(match self.sum.take() {
                Some(sum) => sum + squares,
                None => squares,
            });
        }
    }
}

struct Update<'a> {
    optimizer: &'a mut AdamW,
    grads: &'a Gradients,
    lr: f64,
    clip: f64,
}

impl ModuleMapper for Update<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let value = param.val();
        let (Some(grad), Some(&index)) =
            (value.grad(self.grads), self.optimizer.by_id.get(&param.id))
        else {
            return param;
        };
        let entry = self.optimizer.table.entries()[index].clone();
        let shape = value.dims();
        let numel = shape.iter().product::<usize>();
        let value = value.inner().reshape([numel]);
        let grad = grad.reshape([numel]) * self.clip;
        let value = self.optimizer.update(&entry, value, grad, self.lr);
        let value = Tensor::from_inner(value.reshape(shape)).require_grad();
        Param::initialized(param.id, value)
    }
}

/// Linear warm-up to `peak`, then cosine decay to zero at `total` steps.
pub fn learning_rate(step: u64, warmup: u64, total: u64, peak: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let progress = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    0.5 * peak * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
}
