/// Large blocks mapped on their own (see `foldwise::model::alloc`); the
/// library leaves the allocator to the binary.
#[global_allocator]
static GLOBAL: foldwise::model::alloc::Allocator = foldwise::model::alloc::Allocator;

fn main() {
    foldwise::model::configure_process();
    std::process::exit(foldwise::cli::main());
}
