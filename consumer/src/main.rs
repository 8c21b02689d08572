//! `consumer`: the worker daemon. All logic lives in the library; see `consumer::cli`.

fn main() -> std::process::ExitCode {
    consumer::cli::main()
}
