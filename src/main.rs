fn main() {
    foldwise::model::configure_process();
    std::process::exit(foldwise::cli::main());
}
