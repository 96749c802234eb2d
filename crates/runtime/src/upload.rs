//! What an uploaded function is, before wasmtime compiles it: a component's
//! binary, or WebAssembly text (WAT, as the tests' fixtures are) that
//! parses to one. Anything else is refused saying what it is instead, in
//! the uploader's terms rather than the parser's.

use std::borrow::Cow;

use crate::DeployError;

/// The upload as a component's binary.
pub(crate) fn component_binary(bytes: &[u8]) -> Result<Cow<'_, [u8]>, DeployError> {
    if let Some(what) = not_webassembly(bytes) {
        return Err(refused(what.to_string()));
    }
    let binary = match wat::Detect::from_bytes(bytes) {
        wat::Detect::WasmText => wat::parse_bytes(bytes).map_err(|e| refused(text_error(&e)))?,
        _ => Cow::Borrowed(bytes),
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

/// What `bytes` are instead, when they are neither a WebAssembly binary
/// nor WebAssembly text: text that merely starts with `(` (a Lisp file, a
/// JavaScript IIFE) is not WAT either, which must open with `(module` or
/// `(component`. `None`: WebAssembly, perhaps with errors the parser names.
pub fn not_webassembly(bytes: &[u8]) -> Option<NotWebAssembly> {
    match wat::Detect::from_bytes(bytes) {
        wat::Detect::WasmBinary => None,
        wat::Detect::WasmText if opens_like_wat(bytes) => None,
        _ => Some(NotWebAssembly::of(bytes)),
    }
}

/// What an upload that is neither WebAssembly binary nor text is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotWebAssembly {
    Empty,
    /// Text, with its first characters.
    Text(String),
    Binary,
}

impl NotWebAssembly {
    fn of(bytes: &[u8]) -> Self {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Self::Empty;
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => Self::Text(text.trim_start().chars().take(16).collect()),
            Err(_) => Self::Binary,
        }
    }

    /// In a few words, for a message that gives its own advice.
    pub fn brief(&self) -> String {
        match self {
            Self::Empty => "it is empty".into(),
            Self::Text(start) => format!("it is text starting {start:?}"),
            Self::Binary => "its bytes do not start with \\0asm".into(),
        }
    }
}

/// The server's answer, which says what to upload instead.
impl std::fmt::Display for NotWebAssembly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Empty => write!(f, "the upload is empty"),
            Self::Text(start) => {
                write!(f, "it is text starting {start:?}, not WebAssembly: upload the component's .wasm file")
            }
            Self::Binary => write!(f, "it is not WebAssembly: a .wasm file starts with the bytes \\0asm"),
        }
    }
}

/// Whether the first `(` (after whitespace and comments) opens a module
/// or a component.
fn opens_like_wat(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let mut rest = text.as_ref();
    loop {
        rest = rest.trim_start();
        if let Some(comment) = rest.strip_prefix(";;") {
            rest = comment.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(comment) = rest.strip_prefix("(;") {
            rest = comment.split_once(";)").map_or("", |(_, after)| after);
        } else {
            break;
        }
    }
    let opened = rest.strip_prefix('(').map(str::trim_start).unwrap_or("");
    ["module", "component"].iter().any(|word| {
        opened
            .strip_prefix(word)
            .is_some_and(|after| after.is_empty() || after.starts_with(|c: char| !c.is_alphanumeric()))
    })
}

fn refused(what: String) -> DeployError {
    DeployError::NotAComponent(what)
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
        assert!(component_binary(b";; a comment\n(; block ;) (component)").is_ok());
    }

    /// A JavaScript or Lisp file opening with `(` showed a WAT parser error
    /// ("expected valid module field") instead of saying it is not WebAssembly.
    #[test]
    fn text_opening_with_a_parenthesis_is_not_taken_for_wat() {
        let iife = why(b"(function () { return 1 })()\n");
        assert!(iife.contains(r#"it is text starting "(function () { r", not WebAssembly"#), "{iife}");
        assert!(why(b"(defun f () 1)").contains("not WebAssembly"));
        assert!(why(b"(modules)").contains("not WebAssembly"));
        assert!(not_webassembly(b"(module)").is_none() && not_webassembly(b"\0asm\x0d\0\x01\0").is_none());
    }
}
