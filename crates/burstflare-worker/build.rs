//! Embeds the names of the D1 migration files this Worker is built against,
//! so `GET /api/v1/health` can detect schema drift at runtime.

use std::{env, fs, path::PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let dir = manifest_dir.join("../../migrations");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".sql"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let body: String = names.iter().map(|n| format!("    {n:?},\n")).collect();
    let out = PathBuf::from(env::var("OUT_DIR").unwrap_or_default()).join("migrations.rs");
    let code = format!(
        "/// Migration file names in `migrations/`, in order.\npub const MIGRATIONS: &[&str] = &[\n{body}];\n"
    );
    if let Err(e) = fs::write(&out, code) {
        println!("cargo:warning=cannot write {}: {e}", out.display());
        std::process::exit(1);
    }
}
