//! The `synthetic` node kind. (Being written.)

use crate::config::schema::Param;
use crate::nodes::{Kind, NodeError, RunCtx};

pub struct Synthetic;

impl Kind for Synthetic {
    fn name(&self) -> &'static str {
        "synthetic"
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
