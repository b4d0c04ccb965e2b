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

/// The device a model node runs its tensors on. This build computes on
/// the CPU alone: `auto` means the CPU, and a device named `cuda` is an
/// error rather than a silent fallback.
pub(crate) fn model_device(
    ctx: &crate::kind::RunCtx<'_>,
) -> Result<&'static str, crate::kind::NodeError> {
    use crate::kind::DeviceChoice;
    match ctx.device {
        DeviceChoice::Auto | DeviceChoice::Cpu => Ok("cpu"),
        DeviceChoice::Cuda(_) => Err(crate::kind::NodeError::new(
            "foldwise::node::device",
            format!(
                "device `{}` asked for, but this foldwise computes on the CPU only",
                ctx.device
            ),
        )
        .with_help(
            "set `device = \"auto\"` or `\"cpu\"` in `[pipeline]`, or run with `--device cpu`",
        )),
    }
}

/// Looks a kind up by name.
pub fn kind(name: &str) -> Option<&'static dyn Kind> {
    KINDS.iter().copied().find(|k| k.name() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

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
