//! The `dataset` node kind. (Being written.)

use crate::config::schema::Param;
use crate::nodes::{Kind, NodeError, RunCtx};

pub struct Dataset;

impl Kind for Dataset {
    fn name(&self) -> &'static str {
        "dataset"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        ""
    }
    fn params(&self) -> &'static [Param] {
        &[]
    }
    fn run(&self, _ctx: &RunCtx<'_>) -> Result<(), NodeError> {
        Err(NodeError::msg("not written yet"))
    }
}
