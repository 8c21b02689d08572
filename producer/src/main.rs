//! `producer`: the operator's CLI. All logic lives in the library; see `producer::cli`.

fn main() -> std::process::ExitCode {
    producer::cli::main()
}
