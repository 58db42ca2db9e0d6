//! QuickGELU and tanh-GELU as single burn operations on the CPU backend, with their own
//! backward pass, for training. burn composes QuickGELU from three operations, its sigmoid a
//! scalar `exp` per value on one thread (and computed again in the backward pass); here the
//! forward and the backward are one vectorized pass each over [`super::activation`], split
//! across threads. Other backends (wgpu) keep burn's composition.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, Flex};
use burn::tensor::{DType, Device, Tensor, TensorData};
use burn_flex::FlexTensor;

use super::activation::{activation_backward, apply_activation};
use super::cpu_linear::for_each_part;
use crate::config::Activation;

/// Values per parallel chunk.
const CHUNK: usize = 16 * 1024;

/// `activation(x)` as one operation where `x` is an f32 tensor on the CPU backend (with or
/// without autodiff), else burn's composition ([`None`]). Exact GELU is burn's own operation.
pub fn try_activate<const D: usize>(x: &Tensor<D>, activation: Activation) -> Option<Tensor<D>> {
    let on_cpu = x.device().inner() == Device::flex();
    if !on_cpu || x.dtype() != DType::F32 || activation == Activation::Gelu {
        return None;
    }
    let out = <Dispatch as ActivationOps>::activation(x.clone().into_dispatch(), activation);
    Some(Tensor::from_dispatch(out))
}

/// The operation, routed by burn's backend dispatch.
#[backend_extension(Flex, Autodiff)]
pub trait ActivationOps: Backend {
    /// `activation(x)`, elementwise.
    fn activation(x: FloatTensor<Self>, activation: Activation) -> FloatTensor<Self>;
}

/// The backward pass, run on the backend under autodiff.
pub trait ActivationGrad: Backend {
    /// `grad * activation'(x)`, elementwise.
    fn activation_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        activation: Activation,
    ) -> FloatTensor<Self>;
}

impl ActivationOps for Flex {
    fn activation(x: FlexTensor, activation: Activation) -> FlexTensor {
        let mut values = f32_values(x);
        for_each_part(values.0.chunks_mut(CHUNK), |chunk| {
            apply_activation(chunk, activation)
        });
        values.into_tensor()
    }
}

impl ActivationGrad for Flex {
    fn activation_backward(x: FlexTensor, grad: FlexTensor, activation: Activation) -> FlexTensor {
        let x = f32_values(x);
        let mut grad = f32_values(grad);
        assert_eq!(
            x.0.len(),
            grad.0.len(),
            "an activation's gradient has its input's shape"
        );
        let pairs = x.0.chunks(CHUNK).zip(grad.0.chunks_mut(CHUNK));
        for_each_part(pairs, |(x, grad)| activation_backward(x, grad, activation));
        grad.into_tensor()
    }
}

/// A tensor's values, contiguous, with its shape.
struct Values(Vec<f32>, burn::tensor::Shape);

impl Values {
    fn into_tensor(self) -> FlexTensor {
        FlexTensor::from_data(TensorData::new(self.0, self.1))
    }
}

fn f32_values(x: FlexTensor) -> Values {
    let data = x.into_data();
    let shape = data.shape().clone();
    let values = data
        .try_into_vec::<f32>()
        .expect("activations run on f32 tensors");
    Values(values, shape)
}

impl<B: ActivationOps + ActivationGrad, C: CheckpointStrategy> ActivationOps for Autodiff<B, C> {
    fn activation(x: FloatTensor<Self>, activation: Activation) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct ActivationBackward(Activation);

        impl<B: ActivationOps + ActivationGrad> Backward<B, 1> for ActivationBackward {
            type State = NodeId;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let x = checkpointer.retrieve_node_output(ops.state);
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    B::activation_backward(x, grad, self.0)
                });
            }
        }

        match ActivationBackward(activation)
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = prep.checkpoint(&x);
                prep.finish(state, B::activation(x.into_primitive(), activation))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::activation(x.into_primitive(), activation)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::activation::{gelu_approximate, sigmoid};

    /// burn's own composition, which [`try_activate`] replaces.
    fn burns(x: Tensor<3>, activation: Activation) -> Tensor<3> {
        match activation {
            Activation::QuickGelu => x.clone() * sigmoid(x * 1.702),
            _ => gelu_approximate(x),
        }
    }

    #[test]
    fn values_and_gradients_match_burns_composition() {
        let device = Device::flex().autodiff();
        let values: Vec<f32> = (0..2 * 5 * 2000)
            .map(|i| ((i * 37) % 201) as f32 / 25.0 - 4.0)
            .collect();
        let weights: Vec<f32> = (0..values.len())
            .map(|i| ((i * 13) % 7) as f32 - 3.0)
            .collect();
        let shape = [2, 5, 2000];
        let weights = Tensor::<3>::from_data(TensorData::new(weights, shape), &device);
        for activation in [Activation::QuickGelu, Activation::GeluTanh] {
            let run = |ours: bool| {
                let x = Tensor::<3>::from_data(TensorData::new(values.clone(), shape), &device)
                    .require_grad();
                let y = match ours {
                    true => try_activate(&x, activation).expect("an f32 CPU tensor"),
                    false => burns(x.clone(), activation),
                };
                let grads = (y.clone() * weights.clone()).sum().backward();
                let grad = x.grad(&grads).expect("x is tracked");
                (
                    crate::model::values(y.inner()).unwrap(),
                    crate::model::values(grad).unwrap(),
                )
            };
            let ((y, dx), (want_y, want_dx)) = (run(true), run(false));
            let max_diff = crate::model::max_abs_diff;
            assert!(max_diff(&y, &want_y) < 1e-5, "{activation:?} values");
            assert!(max_diff(&dx, &want_dx) < 1e-4, "{activation:?} gradients");
        }
    }

    #[test]
    fn other_devices_and_exact_gelu_keep_burns_path() {
        let x = Tensor::<2>::ones([2, 2], &Device::flex());
        assert!(try_activate(&x, Activation::Gelu).is_none());
        assert!(try_activate(&x, Activation::QuickGelu).is_some());
    }
}
