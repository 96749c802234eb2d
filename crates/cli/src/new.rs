//! `glassbox new js|python|rust NAME`: scaffolds a function — its source,
//! the build script that works for its language (the same tools the
//! examples use), the WIT it is built against, a README — and adds it to
//! the app manifest (`glassbox.app.toml` in the current directory) that
//! `glassbox apply` deploys. Templates are embedded from `templates/`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The manifest `glassbox apply` reads, in the current directory.
pub const MANIFEST: &str = crate::apply::manifest::DEFAULT_FILE;

/// The interfaces a function is built against: the repository's WIT.
const WIT: &str = include_str!("../../../wit/function.wit");

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    glassbox new rust telemetry                ./telemetry: cargo for wasm32-wasip2\n  \
    glassbox new js alerts --dir fns/alerts    componentize-js, through npm\n  \
    glassbox new python report                 componentize-py, through pip\n\n\
    Then NAME/build.sh builds NAME/NAME.wasm, and `glassbox apply glassbox.app.toml --build`\n\
    deploys it (or: glassbox functions deploy NAME/NAME.wasm --name NAME --trigger ...).")]
pub struct NewArgs {
    /// The language of the template.
    language: Language,
    /// The function's name: 1-64 letters, digits, `-`, `_` or `.`. Its
    /// default trigger is `mqtt:devices/+/NAME`.
    name: String,
    /// Where to write it (default ./NAME); must not exist, or be empty.
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy)]
enum Language {
    Js,
    Python,
    Rust,
}

/// One file of a template: where it goes in the scaffold, its text, and
/// whether it is a script to make executable.
struct File {
    path: &'static str,
    text: &'static str,
    executable: bool,
}

const fn file(path: &'static str, text: &'static str) -> File {
    File { path, text, executable: false }
}

const fn script(path: &'static str, text: &'static str) -> File {
    File { path, text, executable: true }
}

impl Language {
    fn files(self) -> Vec<File> {
        match self {
            Language::Js => vec![
                file("handler.js", include_str!("../templates/js/handler.js")),
                file("package.json", include_str!("../templates/js/package.json")),
                script("build.sh", include_str!("../templates/js/build.sh")),
                file(".gitignore", include_str!("../templates/js/gitignore")),
            ],
            Language::Python => vec![
                file("app.py", include_str!("../templates/python/app.py")),
                file("requirements.txt", include_str!("../templates/python/requirements.txt")),
                script("build.sh", include_str!("../templates/python/build.sh")),
                file(".gitignore", include_str!("../templates/python/gitignore")),
            ],
            Language::Rust => vec![
                file("Cargo.toml", include_str!("../templates/rust/Cargo.toml")),
                // The example's lock: the same two crates, so the build needs nothing new.
                file("Cargo.lock", include_str!("../../../examples/rust-telemetry/Cargo.lock")),
                file("src/lib.rs", include_str!("../templates/rust/lib.rs")),
                script("build.sh", include_str!("../templates/rust/build.sh")),
                file(".gitignore", include_str!("../templates/rust/gitignore")),
            ],
        }
    }

    /// What building needs, for the README.
    fn needs(self) -> &'static str {
        match self {
            Language::Js => "Node.js 20 and npm; build.sh installs componentize-js, pinned in package.json",
            Language::Python => "Python 3 and pip; build.sh installs componentize-py, pinned in requirements.txt",
            Language::Rust => "Rust with the wasm32-wasip2 target: rustup target add wasm32-wasip2",
        }
    }

    fn source(self) -> &'static str {
        match self {
            Language::Js => "handler.js",
            Language::Python => "app.py",
            Language::Rust => "src/lib.rs",
        }
    }
}

/// The names a template's placeholders stand for.
struct Names {
    name: String,
    /// The cargo package (and so library) name: a lower-case identifier.
    krate: String,
    /// The npm package name: lower case.
    package: String,
}

impl Names {
    fn of(name: &str) -> Self {
        Self {
            name: name.into(),
            krate: format!("fn_{}", name.to_ascii_lowercase().replace(['.', '-'], "_")),
            package: format!("glassbox-fn-{}", name.to_ascii_lowercase()),
        }
    }

    fn fill(&self, text: &str) -> String {
        let text = text.replace("{{name}}", &self.name).replace("{{crate}}", &self.krate);
        let text = text.replace("{{package}}", &self.package);
        // The example's lock names the example's package.
        text.replace("name = \"rust-telemetry\"", &format!("name = \"{}\"", self.krate))
    }
}

pub fn run(args: NewArgs) -> anyhow::Result<()> {
    glassbox_functions::validate_name(&args.name).map_err(|e| anyhow::anyhow!("{e}"))?;
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(&args.name));
    let manifest = Path::new(MANIFEST);
    let existing = read_manifest(manifest)?;
    refuse_existing(&args.name, existing.as_deref(), &dir)?;
    scaffold(args.language, &Names::of(&args.name), &dir)?;
    let entry = entry(&args.name, &dir);
    let text = match existing {
        Some(text) => format!("{}{}{entry}", text, if text.ends_with('\n') || text.is_empty() { "" } else { "\n" }),
        None => format!("app = {}\n{entry}", quoted(&app_name()?)),
    };
    std::fs::write(manifest, text).with_context(|| format!("writing {MANIFEST}"))?;
    print_next_steps(args.language, &args.name, &dir);
    Ok(())
}

/// The manifest's text, if there is one; refused if it is not TOML.
fn read_manifest(path: &Path) -> anyhow::Result<Option<String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {MANIFEST}")),
    };
    text.parse::<toml::Table>().with_context(|| {
        format!("{MANIFEST} is not valid TOML; fix it (or move it away) and run glassbox new again")
    })?;
    Ok(Some(text))
}

/// Nothing is overwritten: not a function of the manifest, not a directory
/// with anything in it.
fn refuse_existing(name: &str, manifest: Option<&str>, dir: &Path) -> anyhow::Result<()> {
    let table: toml::Table = manifest.unwrap_or_default().parse()?;
    if table.get("functions").and_then(|f| f.get(name)).is_some() {
        bail!(
            "{MANIFEST} has a function {name:?} already: choose another name, or remove its [functions.{name}] \
             section first"
        );
    }
    let occupied = std::fs::read_dir(dir).map(|mut entries| entries.next().is_some()).unwrap_or(dir.is_file());
    if occupied {
        bail!("{} exists and is not empty: give another --dir, or remove it first", dir.display());
    }
    Ok(())
}

fn scaffold(language: Language, names: &Names, dir: &Path) -> anyhow::Result<()> {
    let mut files = language.files();
    files.push(file("wit/function.wit", WIT));
    for file in &files {
        write(&dir.join(file.path), &names.fill(file.text), file.executable)?;
    }
    write(&dir.join("README.md"), &readme(language, &names.name, dir), false)
}

fn write(path: &Path, text: &str, executable: bool) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    if executable {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("making {} executable", path.display()))?;
    }
    Ok(())
}

fn readme(language: Language, name: &str, dir: &Path) -> String {
    let dir = dir.display();
    format!(
        "# {name}\n\nA Glassbox function: `{source}` handles each event (the interfaces are in `wit/`; \
         docs/functions.md explains them).\n\n\
         Build it with `{dir}/build.sh` → `{dir}/{name}.wasm` (needs {needs}).\n\n\
         Deploy it with the app manifest, `glassbox apply {MANIFEST} --build`, or alone:\n\
         `glassbox functions deploy {dir}/{name}.wasm --name {name} --trigger 'mqtt:devices/+/{name}'`.\n",
        source = language.source(),
        needs = language.needs(),
    )
}

/// The manifest section for the function, paths relative to the manifest.
fn entry(name: &str, dir: &Path) -> String {
    let path = |file: &str| quoted(&dir.join(file).to_string_lossy());
    format!(
        "\n[functions.{}]\ncomponent = {}\nbuild = {}\ntriggers = [{}]\n",
        key(name),
        path(&format!("{name}.wasm")),
        path("build.sh"),
        quoted(&format!("mqtt:devices/+/{name}"))
    )
}

/// The app's name for a new manifest: the current directory's, made a name
/// the server takes (`My Project` → `My-Project`).
fn app_name() -> anyhow::Result<String> {
    let cwd = std::env::current_dir().context("finding the current directory")?;
    Ok(as_app_name(&cwd.file_name().map_or("app".into(), |n| n.to_string_lossy())))
}

/// `text` with each character a name may not hold as `-`, cut to 64; `app`
/// when nothing is left.
fn as_app_name(text: &str) -> String {
    let name: String =
        text.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '-' }).take(64).collect();
    let name = name.trim_matches('-');
    match glassbox_functions::is_name(name) {
        true => name.to_string(),
        false => "app".into(),
    }
}

/// A TOML key: bare when it may be, else quoted (a name with `.`).
fn key(name: &str) -> String {
    match name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        true => name.to_string(),
        false => quoted(name),
    }
}

/// A TOML basic string.
fn quoted(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

fn print_next_steps(language: Language, name: &str, dir: &Path) {
    let dir = dir.display();
    println!("created {dir}/ ({} function {name}) and added [functions.{}] to {MANIFEST}", label(language), key(name));
    println!("next:");
    println!("  {dir}/build.sh                      # → {dir}/{name}.wasm (needs {})", language.needs());
    println!(
        "  glassbox apply {MANIFEST} --build   # or: glassbox functions deploy {dir}/{name}.wasm --name {name} --trigger 'mqtt:devices/+/{name}'"
    );
}

fn label(language: Language) -> &'static str {
    match language {
        Language::Js => "JavaScript",
        Language::Python => "Python",
        Language::Rust => "Rust",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_name_becomes_an_app_name_the_server_takes() {
        assert_eq!(as_app_name("greenhouse"), "greenhouse");
        assert_eq!(as_app_name("My Project"), "My-Project");
        assert_eq!(as_app_name("café (v2)"), "caf---v2");
        assert_eq!(as_app_name("***"), "app");
        assert_eq!(as_app_name(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn names_fill_every_placeholder_and_the_lock_names_the_package() {
        let names = Names::of("Cool.fn-1");
        assert_eq!((names.krate.as_str(), names.package.as_str()), ("fn_cool_fn_1", "glassbox-fn-cool.fn-1"));
        for language in [Language::Js, Language::Python, Language::Rust] {
            for file in language.files() {
                let filled = names.fill(file.text);
                assert!(!filled.contains("{{"), "{}: {filled}", file.path);
            }
        }
        let lock = names.fill(include_str!("../../../examples/rust-telemetry/Cargo.lock"));
        assert!(lock.contains("name = \"fn_cool_fn_1\"") && !lock.contains("rust-telemetry"), "{lock}");
    }

    #[test]
    fn a_manifest_entry_quotes_what_toml_needs_quoted() {
        let entry = entry("a.b", Path::new("fns/a.b"));
        let table: toml::Table = entry.parse().unwrap();
        let function = &table["functions"]["a.b"];
        assert_eq!(function["component"].as_str(), Some("fns/a.b/a.b.wasm"));
        assert_eq!(function["build"].as_str(), Some("fns/a.b/build.sh"));
        assert_eq!(function["triggers"][0].as_str(), Some("mqtt:devices/+/a.b"));
    }
}
