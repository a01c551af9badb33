//! A replica's supervisor as its own program (the `mofang` binary runs the same code as
//! `mofang shim`); see `mofang_executor::shim`.

fn main() -> std::process::ExitCode {
    mofang_executor::shim::main_from_args()
}
