//! Records the git commit the native module was built from (see `build_info`).

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=CREWAI_RUST_GIT_SHA");
    let git_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.git");
    // Only watch paths that exist: a missing one makes cargo rerun this script
    // (and rebuild the crate) on every build, as happens in an sdist.
    for watched in ["HEAD", "refs/heads"] {
        let path = git_dir.join(watched);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    let sha = std::env::var("CREWAI_RUST_GIT_SHA")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .output()
                .ok()
                .filter(|out| out.status.success())
                .and_then(|out| String::from_utf8(out.stdout).ok())
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=CREWAI_RUST_GIT_SHA={sha}");
    println!(
        "cargo:rustc-env=CREWAI_RUST_PROFILE={}",
        std::env::var("PROFILE").unwrap_or_default()
    );
    println!(
        "cargo:rustc-env=CREWAI_RUST_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
}
