//! `/compile`'s views of a compiled module that need more than the compiler's own output: the
//! x86-64 code Wasmtime generates, decoded and named after the program's functions.
//!
//! It uses no other module of the crate: the pipeline hands it the bytes.

pub mod disasm;

pub use disasm::{DisasmError, Flavor, disassemble};
