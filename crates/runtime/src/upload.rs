//! What an uploaded function is, before wasmtime compiles it: a component's
//! binary, or WebAssembly text (WAT, as the tests' fixtures are) that
//! parses to one. Anything else is refused saying what it is instead, in
//! the uploader's terms rather than the parser's.

use std::borrow::Cow;

use crate::DeployError;

/// The upload as a component's binary.
pub(crate) fn component_binary(bytes: &[u8]) -> Result<Cow<'_, [u8]>, DeployError> {
    let binary = match wat::Detect::from_bytes(bytes) {
        wat::Detect::WasmBinary => Cow::Borrowed(bytes),
        wat::Detect::WasmText => wat::parse_bytes(bytes).map_err(|e| refused(text_error(&e)))?,
        wat::Detect::Unknown => return Err(refused(unknown(bytes))),
    };
    // Binaries start with `\0asm`, a version, then a layer: 1 for components.
    match binary.get(6..8) {
        Some([1, 0]) => Ok(binary),
        Some([0, 0]) => {
            Err(refused("it is a core WebAssembly module, which wasm-tools component new makes into one".into()))
        }
        _ => Err(refused("its WebAssembly header is cut short or of a version this server does not read".into())),
    }
}

fn refused(what: String) -> DeployError {
    DeployError::NotAComponent(what)
}

/// What an upload that is neither WebAssembly binary nor text is.
fn unknown(bytes: &[u8]) -> String {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return "the upload is empty".into();
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            let start: String = text.trim_start().chars().take(16).collect();
            format!("it is text starting {start:?}, not WebAssembly: upload the component's .wasm file")
        }
        Err(_) => "it is not WebAssembly: a .wasm file starts with the bytes \\0asm".into(),
    }
}

/// A WAT parse error as its first line and where: `expected `(` at line 3,
/// column 5` (the parser's own rendering quotes the source and a file
/// named `<anon>`).
fn text_error(error: &wat::Error) -> String {
    let rendered = error.to_string();
    let message = rendered.lines().next().unwrap_or("");
    let place = rendered.lines().find_map(|l| l.trim().strip_prefix("--> ")).and_then(|at| {
        let mut parts = at.rsplitn(3, ':');
        let (column, line) = (parts.next()?, parts.next()?);
        Some(format!(" at line {line}, column {column}"))
    });
    format!("its WebAssembly text does not parse: {message}{}", place.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn why(bytes: &[u8]) -> String {
        component_binary(bytes).err().unwrap().to_string()
    }

    #[test]
    fn uploads_that_are_not_components_say_what_they_are() {
        assert!(why(b"").contains("the upload is empty"));
        assert!(why(b"hello").contains(r#"it is text starting "hello", not WebAssembly"#), "{}", why(b"hello"));
        assert!(why(b"\xff\xfe\x00garbage").contains("a .wasm file starts with"));
        assert!(why(b"(module)").contains("core WebAssembly module"));
        assert!(why(b"\0asm\x01\0\0\0").contains("core WebAssembly module"));
        let broken = why(b"(component\n  (oops))");
        assert!(broken.contains("does not parse") && broken.contains("at line 2, column"), "{broken}");
        for message in [why(b""), why(b"hello"), broken] {
            assert!(!message.contains("<anon>") && !message.contains("module field"), "{message}");
        }
        assert!(component_binary(b"(component)").is_ok());
    }
}
