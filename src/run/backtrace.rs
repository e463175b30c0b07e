//! Backtraces for programs built with `backtrace: true`.
//!
//! std cannot walk a WebAssembly stack, but Wasmtime can: the program's panic hook (the
//! backtrace entry stub) calls the host import `wasm_playground::backtrace(buf, len)`, which
//! captures a [`WasmBacktrace`], names each frame (inlined ones included) from the module's line
//! tables (`-C debuginfo=line-tables-only`, read with Wasmtime's `addr2line`), and writes the
//! frames into `buf` as native Rust prints a short backtrace:
//!
//! ```text
//!    0: __rustc::rust_begin_unwind
//!              at /rustc/.../library/std/src/panicking.rs:689:5
//!    1: playground::main
//!              at ./src/main.rs:2:5
//! ```
//!
//! Programs that do not import it pay nothing: the import is resolved only when a module asks.

use wasmtime::{Caller, Extern, Linker, WasmBacktrace};

use super::engine::StoreState;

/// The import's module and name, as the backtrace stub declares them.
const MODULE: &str = "wasm_playground";
const NAME: &str = "backtrace";

/// Defines `wasm_playground::backtrace` in `linker`.
pub(super) fn add_to_linker(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        NAME,
        |mut caller: Caller<'_, StoreState>, ptr: u32, len: u32| -> u32 {
            let text = render(&WasmBacktrace::capture(&caller));
            let bytes = &text.as_bytes()[..text.len().min(len as usize)];
            // A threaded program's memory is the run's shared memory.
            let written = match caller.data().threads.clone() {
                Some(run) => run.write_memory(ptr as usize, bytes),
                None => match caller.get_export("memory") {
                    Some(Extern::Memory(memory)) => {
                        memory.write(&mut caller, ptr as usize, bytes).is_ok()
                    }
                    _ => false,
                },
            };
            if written { bytes.len() as u32 } else { 0 }
        },
    )?;
    Ok(())
}

/// One function on the stack (an inlined call is a frame of its own, as natively).
struct Frame {
    name: String,
    /// `file:line:col`, when the line tables know it.
    location: Option<String>,
}

/// The frames between the panic machinery and the program's entry, numbered as natively.
fn render(trace: &WasmBacktrace) -> String {
    let frames: Vec<Frame> = trace
        .frames()
        .iter()
        .flat_map(|frame| {
            // The function itself is named by its symbol (the name section keeps the mangled
            // path, as a native symbol table does: `playground::main::{{closure}}`); the line
            // tables name only the functions inlined into it, with their short names.
            let symbol = frame.func_name().map(demangle);
            let fallback = symbol.clone().unwrap_or_default();
            let last = frame.symbols().len().saturating_sub(1);
            let symbols: Vec<Frame> = frame
                .symbols()
                .iter()
                .enumerate()
                .map(|(i, s)| Frame {
                    name: match (&symbol, s.name()) {
                        (Some(symbol), _) if i == last => symbol.clone(),
                        (_, Some(name)) => demangle(name),
                        (_, None) => fallback.clone(),
                    },
                    location: s.file().zip(s.line()).map(|(file, line)| {
                        let file = if file.starts_with('/') {
                            file.to_string()
                        } else {
                            format!("./{file}")
                        };
                        format!("{file}:{line}:{}", s.column().unwrap_or(0))
                    }),
                })
                .collect();
            if symbols.is_empty() {
                vec![Frame {
                    name: fallback,
                    location: None,
                }]
            } else {
                symbols
            }
        })
        .collect();
    // std's short backtrace: after `__rust_end_short_backtrace` (the panic machinery and our
    // hook), up to `__rust_begin_short_backtrace` or the stub's `__entry`. (The line tables
    // name functions with their generic arguments.)
    let start = frames
        .iter()
        .position(|f| f.name.contains("__rust_end_short_backtrace"))
        .map_or(0, |i| i + 1);
    let mut out = String::new();
    let shown = frames[start..]
        .iter()
        .take_while(|f| !f.name.contains("__rust_begin_short_backtrace") && f.name != "__entry");
    for (i, frame) in shown.enumerate() {
        out.push_str(&format!("{i:4}: {}\n", frame.name));
        if let Some(location) = &frame.location {
            out.push_str(&format!("             at {location}\n"));
        }
    }
    out
}

/// A symbol as native backtraces show it: demangled, without the hash. The program's `main`
/// keeps its unmangled name in the module (wasm-ld treats `main` as the C entry point's name),
/// so it is given its path back.
fn demangle(name: &str) -> String {
    if name == "main" {
        return "playground::main".into();
    }
    format!("{:#}", rustc_demangle::demangle(name))
}
