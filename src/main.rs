fn main() {
    std::process::exit(foldwise::cli::main());
}
