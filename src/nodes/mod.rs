//! The node kinds, one per file, and [`KINDS`], the registry the command
//! line hands to `config` and `report`. What a kind is (the trait, its run
//! context, its errors) lives in [`crate::kind`]; the formats of the files
//! kinds hand each other live in [`crate::artifact`].

use crate::kind::Kind;

pub mod command;
pub mod dataset;
pub mod ensemble;
pub mod evaluate;
pub mod ladder;
pub mod postprocess;
pub mod predict;
pub mod split;
pub mod submit;
pub mod synthetic;
pub mod train;

/// Every kind foldwise knows.
pub static KINDS: &[&dyn Kind] = &[
    &dataset::Dataset,
    &synthetic::Synthetic,
    &split::Split,
    &command::Command,
    &train::Train,
    &predict::Predict,
    &ensemble::Ensemble,
    &evaluate::Evaluate,
    &postprocess::Postprocess,
    &ladder::Ladder,
    &submit::Submit,
];

/// The device a model node computes on, from `[pipeline] device` or
/// `run --device`: `auto` is the first GPU when this foldwise was built
/// with CUDA and one is visible, else the CPU; `cuda`/`cuda:N` must be
/// usable, or the node fails saying why (a build without the `cuda`
/// feature, no GPU visible) and how to go on.
pub(crate) fn model_device(
    ctx: &crate::kind::RunCtx<'_>,
) -> Result<crate::model::Device, crate::kind::NodeError> {
    use crate::kind::DeviceChoice;
    use crate::model::Device;
    let device = match ctx.device {
        DeviceChoice::Auto => return Ok(Device::auto()),
        DeviceChoice::Cpu => return Ok(Device::Cpu),
        DeviceChoice::Cuda(n) => Device::Cuda(n.unwrap_or(0) as usize),
    };
    let fail = |message: String, help: &str| {
        Err(crate::kind::NodeError::new("foldwise::node::device", message).with_help(help))
    };
    if !Device::cuda_built() {
        return fail(
            format!(
                "device `{}` asked for, but this foldwise was built without the `cuda` feature",
                ctx.device
            ),
            "build it with `scripts/cuda-build.sh` (docs/cuda.md), or set `device = \"auto\"` or `\"cpu\"` in `[pipeline]`, or run with `--device cpu`",
        );
    }
    match device.check() {
        Ok(()) => Ok(device),
        Err(e) => fail(
            format!("device `{}` asked for, but it cannot be used: {e}", ctx.device),
            "run where an NVIDIA GPU and its driver are visible (`nvidia-smi`), or run with `--device cpu`",
        ),
    }
}

/// A model error as a node error; running out of device memory names the
/// instance, the batch size and the device, and how to go on (nothing of
/// the failed run is kept as an artifact).
pub(crate) fn model_error(
    e: crate::model::ModelError,
    instance: &str,
    batch: usize,
    device: crate::model::Device,
) -> crate::kind::NodeError {
    match e {
        crate::model::ModelError::OutOfMemory(msg) => crate::kind::NodeError::new(
            "foldwise::node::out_of_memory",
            format!("`{instance}` ran out of memory on {device} with batch size {batch}: {msg}"),
        )
        .with_help("lower `batch` for this node and run again (no partial artifact was kept)"),
        e => crate::kind::NodeError::new("foldwise::node::model", e.to_string()),
    }
}

/// Runs `step` on batches `0..count` that `make` prepares, in order. With
/// `ahead` (a model on a GPU) the next batches are prepared on another
/// thread while the device computes (decoding and augmentation stay on CPU
/// threads, at most two batches ahead); without it (the CPU, whose kernels
/// already use every core) one after the other. The batches are the same
/// either way.
pub(crate) fn pipelined<B: Send, E>(
    ahead: bool,
    count: usize,
    make: impl Fn(usize) -> B + Sync,
    mut step: impl FnMut(usize, B) -> Result<(), E>,
) -> Result<(), E> {
    if !ahead {
        for i in 0..count {
            step(i, make(i))?;
        }
        return Ok(());
    }
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel(2);
        let make = &make;
        s.spawn(move || {
            for i in 0..count {
                if tx.send(make(i)).is_err() {
                    break;
                }
            }
        });
        for i in 0..count {
            let b = rx.recv().expect("the batch thread sends every batch");
            step(i, b)?;
        }
        Ok(())
    })
}

/// Looks a kind up by name.
pub fn kind(name: &str) -> Option<&'static dyn Kind> {
    KINDS.iter().copied().find(|k| k.name() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prepared ahead on another thread or one after the other, the steps
    /// see the same batches in the same order; an error stops the steps
    /// (and the preparing thread) at once.
    #[test]
    fn pipelined_batches_arrive_in_order_and_an_error_stops_them() {
        for ahead in [false, true] {
            let mut seen = Vec::new();
            let r: Result<(), String> = pipelined(
                ahead,
                50,
                |i| vec![i; 3],
                |i, b| {
                    assert_eq!(b, vec![i; 3]);
                    seen.push(i);
                    Ok(())
                },
            );
            assert_eq!(r, Ok(()));
            assert_eq!(seen, (0..50).collect::<Vec<_>>());
            let made = std::sync::atomic::AtomicUsize::new(0);
            let r = pipelined(
                ahead,
                1000,
                |i| {
                    made.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    i
                },
                |i, _| {
                    if i == 3 {
                        Err(format!("batch {i}"))
                    } else {
                        Ok(())
                    }
                },
            );
            assert_eq!(r, Err("batch 3".to_string()));
            // At most the failed batch and two queued ones, plus the one
            // whose sending found the channel closed.
            assert!(made.into_inner() <= 7, "ahead {ahead}");
        }
    }

    #[test]
    fn out_of_memory_names_the_instance_batch_and_device() {
        let e = model_error(
            crate::model::ModelError::OutOfMemory("CUDA_ERROR_OUT_OF_MEMORY".into()),
            "cnn[2]",
            256,
            crate::model::Device::Cuda(0),
        );
        assert_eq!(e.code(), "foldwise::node::out_of_memory");
        assert_eq!(
            e.message(),
            "`cnn[2]` ran out of memory on cuda:0 with batch size 256: CUDA_ERROR_OUT_OF_MEMORY"
        );
        assert_eq!(
            e.help(),
            Some("lower `batch` for this node and run again (no partial artifact was kept)")
        );
    }

    #[test]
    fn every_default_of_every_kind_is_valid_json() {
        fn walk(params: &[crate::kind::schema::Param], at: &str) {
            for p in params {
                if let crate::kind::schema::Dflt::Value(lit) = p.default {
                    assert!(
                        serde_json::from_str::<serde_json::Value>(lit).is_ok(),
                        "{at}.{}: {lit}",
                        p.name
                    );
                }
                if let crate::kind::schema::Ty::Table(inner) = &p.ty {
                    walk(inner, &format!("{at}.{}", p.name));
                }
            }
        }
        for k in KINDS {
            walk(k.params(), k.name());
        }
    }
}
