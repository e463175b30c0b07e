//! `wasm-playground`: see the library crate for how it is put together.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match wasm_playground::cli::main().await {
        Ok(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}
