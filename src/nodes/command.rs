//! The `command` node kind. (Being written.)

#[allow(unused_imports)]
use crate::config::schema::{float_range, int_min, int_range, Dflt, Param, Ty, RATIO};
use crate::nodes::{Kind, NodeError, RunCtx};

pub struct Command;

impl Kind for Command {
    fn name(&self) -> &'static str {
        "command"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "Runs an external program with caching. It receives its inputs' artifact folders and its own output folder through environment variables (`FOLDWISE_OUT`, `FOLDWISE_INPUT_<NAME>`, …); its key covers the argv (or shell text), the declared parameters, the declared dependency files and the input digests."
    }
    fn params(&self) -> &'static [Param] {
        PARAMS
    }
    fn run(&self, _ctx: &RunCtx<'_>) -> Result<(), NodeError> {
        Err(NodeError::msg("not written yet"))
    }
}

static PARAMS: &[Param] = &[
    Param { name: "argv", ty: Ty::List(&Ty::Str), default: Dflt::Optional, doc: "Program and arguments, run without a shell. Exactly one of `argv` and `shell`." },
    Param { name: "shell", ty: Ty::Str, default: Dflt::Optional, doc: "A command line run by `sh -c`, when a shell is wanted." },
    Param { name: "inputs", ty: Ty::Map(&Ty::Ref(&[])), default: Dflt::Value("{}"), doc: "Upstream nodes by name; each becomes `FOLDWISE_INPUT_<NAME>`." },
    Param { name: "params", ty: Ty::Map(&Ty::Any), default: Dflt::Value("{}"), doc: "Declared parameters: hashed, and passed as `FOLDWISE_PARAMS` (JSON) and `FOLDWISE_PARAM_<NAME>`." },
    Param { name: "deps", ty: Ty::List(&Ty::Path), default: Dflt::Value("[]"), doc: "Files or folders the program reads (its script, say): hashed by content." },
    Param { name: "env", ty: Ty::Map(&Ty::Str), default: Dflt::Value("{}"), doc: "Extra environment variables (hashed)." },
];
