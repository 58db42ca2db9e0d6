//! The linear layer of both towers, `x @ W + b`: burn's `Linear` parameters under the same
//! names, whose weight can be packed into column panels for the CPU kernels
//! ([`DenseLayers::pack_for_cpu`], [`super::panels`]).

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};

use super::panels::{self, Kernel};
use super::{cpu_linear, gpu_kernels};
use crate::config::Activation;

/// `x @ weight + bias`, as burn's `Linear`.
#[derive(Module, Debug)]
pub struct Dense {
    /// `[d_input, d_output]`; after [`DenseLayers::pack_for_cpu`], the panels of
    /// [`super::panels`] as `[panels * d_input, width]`.
    pub weight: Param<Tensor<2>>,
    pub bias: Option<Param<Tensor<1>>>,
    #[module(skip)]
    pub d_input: usize,
    #[module(skip)]
    pub d_output: usize,
}

impl Dense {
    /// A layer with burn's default initialisation (parameters created lazily: they are usually
    /// replaced by loaded weights before first use).
    pub fn new(d_input: usize, d_output: usize, bias: bool, device: &Device) -> Self {
        let Linear { weight, bias } = LinearConfig::new(d_input, d_output)
            .with_bias(bias)
            .init(device);
        Dense {
            weight,
            bias,
            d_input,
            d_output,
        }
    }

    /// `x @ W + b` over the last axis of `x`; on the CPU backend through [`cpu_linear`], on
    /// GPU devices one kernel ([`gpu_kernels`]).
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match gpu_kernels::try_linear(self, &x, None, None) {
            Some(out) => out,
            None => cpu_linear::forward(self, x),
        }
    }

    /// `activate(x @ W + b)`, in the same pass.
    pub fn forward_activated<const D: usize>(
        &self,
        x: Tensor<D>,
        activation: Activation,
    ) -> Tensor<D> {
        match gpu_kernels::try_linear(self, &x, Some(activation), None) {
            Some(out) => out,
            None => cpu_linear::forward_activated(self, x, activation),
        }
    }

    /// `x @ W + b + residual`; on GPU devices in the same kernel.
    pub fn forward_residual<const D: usize>(&self, x: Tensor<D>, residual: Tensor<D>) -> Tensor<D> {
        match gpu_kernels::try_linear(self, &x, None, Some(&residual)) {
            Some(out) => out,
            None => residual + cpu_linear::forward(self, x),
        }
    }

    /// The panel width, where the weight is packed.
    pub fn panel_width(&self) -> Option<usize> {
        let [rows, cols] = self.weight.lazy_shape().dims();
        ([rows, cols] != [self.d_input, self.d_output]).then_some(cols)
    }

    /// The weight as `[d_input, d_output]` (unpacked again where it is packed).
    pub fn weight_rows(&self) -> Tensor<2> {
        let weight = self.weight.val();
        let Some(width) = self.panel_width() else {
            return weight;
        };
        let (k, n) = (self.d_input, self.d_output);
        let packed = crate::model::values(weight.clone()).expect("a CPU tensor reads back");
        let rows = panels::unpack(k, n, &packed, width);
        Tensor::from_data(TensorData::new(rows, [k, n]), &weight.device())
    }

    /// Pack the weight in panels `width` wide, where it is a CPU weight and can be packed.
    fn pack(&mut self, width: usize) {
        let (k, n) = (self.d_input, self.d_output);
        // One panel as wide as the output is the row-major layout itself.
        if self.panel_width().is_some() || n == width {
            return;
        }
        let weight = self.weight.val();
        let packed = cpu_linear::with_f32_values(&weight, |w| panels::pack(k, n, w, width));
        if let Some(packed) = packed.flatten() {
            let rows = packed.len() / width;
            let packed =
                Tensor::from_data(TensorData::new(packed, [rows, width]), &weight.device());
            self.weight = self.weight.clone().map(|_| packed);
        }
    }
}

/// A module's [`Dense`] layers, for changing how their weights are stored.
pub trait DenseLayers {
    /// Every [`Dense`] layer in the module.
    fn dense_layers(&mut self) -> Vec<&mut Dense>;

    /// Pack every weight on the CPU backend into panels for this CPU's kernel, dropping the
    /// row-major copy layer by layer (for inference). Weights on other devices, autodiff ones
    /// included, and CPUs without a kernel are left as they are.
    fn pack_for_cpu(&mut self) {
        if let Some(kernel) = Kernel::detect() {
            self.dense_layers()
                .into_iter()
                .for_each(|dense| dense.pack(kernel.width()));
        }
    }

    /// Every weight row-major again (for export or training).
    fn unpack(&mut self) {
        for dense in self.dense_layers() {
            if dense.panel_width().is_some() {
                let rows = dense.weight_rows();
                dense.weight = dense.weight.clone().map(|_| rows);
            }
        }
    }
}

impl DenseLayers for Dense {
    fn dense_layers(&mut self) -> Vec<&mut Dense> {
        vec![self]
    }
}
