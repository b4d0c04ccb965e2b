//! The plumbing every candle custom op of this module shares: the f32
//! values of an input ([`f32_slice`]), and [`custom_op!`], which writes
//! the candle trait impl of an op from two inherent methods that take the
//! op's inputs as an array, so each op states only what it computes.

use candle_core::{CpuStorage, Layout, Result, Shape, Tensor};

/// One input of an op's CPU pass: its storage and layout.
pub(super) type Input<'a> = (&'a CpuStorage, &'a Layout);

/// What an op's CPU pass returns: its output's storage and shape.
pub(super) type Output = Result<(CpuStorage, Shape)>;

/// What an op's backward pass returns: the gradient of each of its `N`
/// arguments (`None`: no gradient).
pub(super) type Grads<const N: usize> = Result<[Option<Tensor>; N]>;

/// The f32 values of a contiguous storage; `what` names the operand in
/// errors ("conv: input").
pub(super) fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let Some((start, end)) = l.contiguous_offsets() else {
        candle_core::bail!("{what} must be contiguous");
    };
    match s {
        CpuStorage::F32(v) => Ok(&v[start..end]),
        _ => candle_core::bail!("{what} must be f32"),
    }
}

/// `custom_op!(CustomOpN for Op, "name", cpu)` implements candle's
/// `CustomOpN` (N = 1, 2 or 3) for `Op`, its CPU pass being the inherent
/// `fn cpu(&self, inputs: [Input; N]) -> Output`;
/// `custom_op!(CustomOpN for Op, "name", cpu, backward)` adds the backward
/// pass `fn backward(&self, args: [&Tensor; N], y: &Tensor, dy: &Tensor)
/// -> Grads<N>`.
macro_rules! custom_op {
    (CustomOp1 for $($rest:tt)*) => {
        $crate::model::op::custom_op!(@impl CustomOp1 [s1 l1 a1 g1] $($rest)*);
    };
    (CustomOp2 for $($rest:tt)*) => {
        $crate::model::op::custom_op!(@impl CustomOp2 [s1 l1 a1 g1, s2 l2 a2 g2] $($rest)*);
    };
    (CustomOp3 for $($rest:tt)*) => {
        $crate::model::op::custom_op!(
            @impl CustomOp3 [s1 l1 a1 g1, s2 l2 a2 g2, s3 l3 a3 g3] $($rest)*
        );
    };
    (@impl $trait:ident [$($s:ident $l:ident $a:ident $g:ident),+]
        $op:ty, $name:literal, $cpu:ident $(, $bwd:ident)?) => {
        impl candle_core::$trait for $op {
            fn name(&self) -> &'static str {
                $name
            }

            fn cpu_fwd(
                &self,
                $($s: &candle_core::CpuStorage, $l: &candle_core::Layout),+
            ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
                self.$cpu([$(($s, $l)),+])
            }

            $crate::model::op::custom_op!(@bwd [$($a $g),+] $($bwd)?);
        }
    };
    (@bwd [$($a:ident $g:ident),+]) => {};
    (@bwd [$($a:ident $g:ident),+] $bwd:ident) => {
        // One gradient is `(Option<Tensor>)`, as CustomOp1 wants it.
        #[allow(unused_parens)]
        fn bwd(
            &self,
            $($a: &candle_core::Tensor,)+
            y: &candle_core::Tensor,
            dy: &candle_core::Tensor,
        ) -> candle_core::Result<($($crate::model::op::custom_op!(@grad $g)),+)> {
            let [$($g),+] = self.$bwd([$($a),+], y, dy)?;
            Ok(($($g),+))
        }
    };
    (@grad $g:ident) => {
        Option<candle_core::Tensor>
    };
}

pub(crate) use custom_op;
