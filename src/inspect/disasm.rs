//! The x86-64 machine code Wasmtime generates for a program's own functions, as text: what
//! `/compile` answers for `target: "asm"`.
//!
//! Wasmtime's precompiled form of a module is an ELF object whose `.text` section holds every
//! function's code under a symbol named `wasm[0]::function[N]...`. The symbol's name part is cut
//! at 96 bytes, so names come from the module's own name section instead (mangled by rustc,
//! demangled here). We decode the functions that belong to the user's crate (`playground::...`)
//! and label call targets with their function names.

use std::collections::HashMap;
use std::fmt::Write as _;

use iced_x86::{
    Decoder, DecoderOptions, Formatter, GasFormatter, Instruction, IntelFormatter, OpKind,
    SymbolResolver, SymbolResult,
};
use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};
use wasmparser::{KnownCustom, Name, Parser, Payload};

/// The crate name every program is compiled under.
const USER_CRATE: &str = "playground::";

/// The assembly syntax of the listing (play.rust-lang.org's `assemblyFlavor`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Flavor {
    /// AT&T syntax, play.rust-lang.org's default.
    #[default]
    Att,
    Intel,
}

impl std::str::FromStr for Flavor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "att" => Ok(Flavor::Att),
            "intel" => Ok(Flavor::Intel),
            _ => Err(format!(
                "unknown assemblyFlavor `{s}`, expected att or intel"
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DisasmError {
    #[error("machine code listings are only available on x86-64 hosts")]
    UnsupportedArch,
    #[error("Wasmtime's compiled object could not be read: {0}")]
    Object(#[from] object::Error),
    #[error("Wasmtime's compiled object has no .text section")]
    NoText,
    #[error("the module's name section could not be read: {0}")]
    Names(#[from] wasmparser::BinaryReaderError),
}

/// One function of the compiled object: where its code lies in `.text`, and its name.
struct Function {
    name: String,
    start: u64,
    size: u64,
}

/// Lists the machine code of the user's functions in `elf`, `Engine::precompile_module`'s
/// output for `wasm`.
pub fn disassemble(wasm: &[u8], elf: &[u8], flavor: Flavor) -> Result<String, DisasmError> {
    if !cfg!(target_arch = "x86_64") {
        return Err(DisasmError::UnsupportedArch);
    }
    let wasm_names = function_names(wasm)?;
    let file = object::File::parse(elf)?;
    let text = file
        .sections()
        .find(|s| s.name() == Ok(".text"))
        .ok_or(DisasmError::NoText)?;
    let code = text.data()?;
    let base = text.address();
    let functions: Vec<Function> = file
        .symbols()
        .filter(|s| s.kind() == SymbolKind::Text && s.section_index() == Some(text.index()))
        .filter_map(|s| {
            // Wasm functions by their source name; trampolines and builtins by their symbol.
            let symbol = s.name().ok()?;
            let name = function_index(symbol).and_then(|index| wasm_names.get(&index));
            Some(Function {
                name: name.cloned().unwrap_or_else(|| symbol.to_string()),
                start: s.address().checked_sub(base)?,
                size: s.size(),
            })
        })
        .collect();
    let names: HashMap<u64, String> = functions
        .iter()
        .map(|f| (f.start, f.name.clone()))
        .collect();
    let resolver = Box::new(Names(names));
    let mut formatter: Box<dyn Formatter> = match flavor {
        Flavor::Att => Box::new(GasFormatter::with_options(Some(resolver), None)),
        Flavor::Intel => Box::new(IntelFormatter::with_options(Some(resolver), None)),
    };
    let options = formatter.options_mut();
    options.set_first_operand_char_index(8);
    options.set_uppercase_hex(false);
    options.set_branch_leading_zeros(false);

    let mut out = String::new();
    let mut line = String::new();
    let mut instruction = Instruction::default();
    // `playground::f` and `<playground::T as Trait>::f`.
    let users = functions.iter().filter(|f| {
        let name = f.name.strip_prefix('<').unwrap_or(&f.name);
        name.starts_with(USER_CRATE)
    });
    for function in users {
        let end = function.start.checked_add(function.size);
        let Some(bytes) = usize::try_from(function.start)
            .ok()
            .zip(end.and_then(|end| usize::try_from(end).ok()))
            .and_then(|(start, end)| code.get(start..end))
        else {
            continue;
        };
        out.push_str(&function.name);
        out.push_str(":\n");
        let mut decoder = Decoder::with_ip(64, bytes, function.start, DecoderOptions::NONE);
        while decoder.can_decode() {
            decoder.decode_out(&mut instruction);
            line.clear();
            formatter.format(&instruction, &mut line);
            let _ = writeln!(out, "  {:6x}:  {line}", instruction.ip());
        }
        out.push('\n');
    }
    if out.is_empty() {
        out.push_str("; no function of the program is left after optimisation\n");
    }
    Ok(out)
}

/// The index N of a symbol named `wasm[0]::function[N]` or `wasm[0]::function[N]::...`.
fn function_index(symbol: &str) -> Option<u32> {
    let (_, rest) = symbol.strip_prefix("wasm[")?.split_once("]::function[")?;
    rest.split(']').next()?.parse().ok()
}

/// The demangled names of the module's functions (without rustc's hash), by function index.
fn function_names(wasm: &[u8]) -> Result<HashMap<u32, String>, DisasmError> {
    let mut names = HashMap::new();
    for payload in Parser::new(0).parse_all(wasm) {
        let Payload::CustomSection(section) = payload? else {
            continue;
        };
        let KnownCustom::Name(reader) = section.as_known() else {
            continue;
        };
        for name in reader {
            if let Name::Function(map) = name? {
                for naming in map {
                    let naming = naming?;
                    let demangled = format!("{:#}", rustc_demangle::demangle(naming.name));
                    names.insert(naming.index, demangled);
                }
            }
        }
    }
    Ok(names)
}

/// Labels call and jump targets that are function starts with the function's name (and
/// nothing else: a memory offset of 0 is not the function at 0).
struct Names(HashMap<u64, String>);

impl SymbolResolver for Names {
    fn symbol(
        &mut self,
        instruction: &Instruction,
        operand: u32,
        _instruction_operand: Option<u32>,
        address: u64,
        _address_size: u32,
    ) -> Option<SymbolResult<'_>> {
        if instruction.op_kind(operand) != OpKind::NearBranch64 {
            return None;
        }
        self.0
            .get(&address)
            .map(|name| SymbolResult::with_str(address, name.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_name_function_indices() {
        assert_eq!(
            function_index("wasm[0]::function[12]::_ZN10playground4ma"),
            Some(12)
        );
        assert_eq!(function_index("wasm[0]::function[7]"), Some(7));
        assert_eq!(function_index("wasm[0]::array_to_wasm_trampoline[7]"), None);
        assert_eq!(function_index("trampoline"), None);
    }
}
