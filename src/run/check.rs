//! What the sandbox will not load, found before (or while) Wasmtime compiles a module: the
//! program's fault, answered with a sentence, never a 500.

use wasmparser::{Parser, Payload, TypeRef};

/// Why a compiled program cannot be loaded into the sandbox.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Unfit(pub String);

/// Checks `wasm` against the sandbox's limits: one memory and one table (what the pooling
/// allocator holds), initial memory within `memory_limit`, and no function body over
/// `max_function_bytes` (Wasmtime compiles each function in the server's process, in time that
/// grows with its size). A module that does not parse is left for Wasmtime to report.
pub(super) fn check(
    wasm: &[u8],
    memory_limit: usize,
    max_function_bytes: usize,
) -> Result<(), Unfit> {
    let (mut memories, mut tables, mut min_pages) = (0usize, 0usize, 0u64);
    for payload in Parser::new(0).parse_all(wasm) {
        let Ok(payload) = payload else {
            return Ok(());
        };
        match payload {
            Payload::ImportSection(imports) => {
                for import in imports.into_imports().flatten() {
                    match import.ty {
                        TypeRef::Memory(m) => {
                            memories += 1;
                            min_pages = min_pages.max(m.initial);
                        }
                        TypeRef::Table(_) => tables += 1,
                        _ => {}
                    }
                }
            }
            Payload::MemorySection(section) => {
                for memory in section.into_iter().flatten() {
                    memories += 1;
                    min_pages = min_pages.max(memory.initial);
                }
            }
            Payload::TableSection(section) => tables += section.count() as usize,
            Payload::CodeSectionEntry(body) => {
                let size = body.range().len();
                if size > max_function_bytes {
                    return Err(Unfit(format!(
                        "the compiled program has a function of {size} bytes; the limit is \
                         {max_function_bytes} bytes (split it into smaller functions)"
                    )));
                }
            }
            _ => {}
        }
    }
    if memories > 1 {
        return Err(Unfit(format!(
            "the program has {memories} linear memories; the sandbox allows one"
        )));
    }
    if tables > 1 {
        return Err(Unfit(format!(
            "the program has {tables} tables; the sandbox allows one"
        )));
    }
    let needed = min_pages.saturating_mul(64 << 10);
    if needed > memory_limit as u64 {
        return Err(Unfit(format!(
            "the program needs {needed} bytes of memory before it starts (its static data and \
             stack); the memory limit is {memory_limit} bytes"
        )));
    }
    Ok(())
}

/// Words for Wasmtime's refusal to link a module against the sandbox's imports.
pub(super) fn link_error(err: &wasmtime::Error) -> Unfit {
    if let Some(unknown) = err.downcast_ref::<wasmtime::UnknownImportError>() {
        let kind = match unknown.ty() {
            wasmtime::ExternType::Func(_) => "a function",
            wasmtime::ExternType::Global(_) => "a global",
            wasmtime::ExternType::Table(_) => "a table",
            wasmtime::ExternType::Memory(_) => "a memory",
            _ => "an item",
        };
        return Unfit(format!(
            "the program imports `{}::{}`, {kind} the sandbox does not provide (it offers \
             WASI preview 1 only)",
            unknown.module(),
            unknown.name()
        ));
    }
    Unfit(format!(
        "the program cannot be linked in the sandbox: {err:#}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_encoder::{
        CodeSection, Function, FunctionSection, Instruction, MemorySection, MemoryType, Module,
        TypeSection,
    };

    fn memories(pages: &[u64]) -> Vec<u8> {
        let mut section = MemorySection::new();
        for &minimum in pages {
            section.memory(MemoryType {
                minimum,
                maximum: None,
                memory64: false,
                shared: false,
                page_size_log2: None,
            });
        }
        let mut module = Module::new();
        module.section(&section);
        module.finish()
    }

    #[test]
    fn limits_are_checked_before_compiling() {
        assert_eq!(
            check(&memories(&[200]), 10_000_000, 1 << 20).unwrap_err().0,
            "the program needs 13107200 bytes of memory before it starts (its static data and stack); the memory limit is 10000000 bytes"
        );
        assert!(check(&memories(&[2]), 10_000_000, 1 << 20).is_ok());
        assert_eq!(
            check(&memories(&[1, 1]), 10_000_000, 1 << 20)
                .unwrap_err()
                .0,
            "the program has 2 linear memories; the sandbox allows one"
        );

        let mut module = Module::new();
        let mut types = TypeSection::new();
        types.ty().function([], []);
        let mut funcs = FunctionSection::new();
        funcs.function(0);
        let mut body = Function::new([]);
        body.instruction(&Instruction::I32Const(1))
            .instruction(&Instruction::Drop)
            .instruction(&Instruction::End);
        let mut code = CodeSection::new();
        code.function(&body);
        module.section(&types).section(&funcs).section(&code);
        assert_eq!(
            check(&module.finish(), 10_000_000, 4).unwrap_err().0,
            "the compiled program has a function of 5 bytes; the limit is 4 bytes (split it into smaller functions)"
        );
    }
}
