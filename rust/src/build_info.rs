//! What this build of the native module is: crate version, commit, features.

/// Facts about the compiled crate, shown by `python -m crewai_rust status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    pub version: &'static str,
    pub git_sha: &'static str,
    pub profile: &'static str,
    pub target: &'static str,
    pub features: Vec<&'static str>,
}

/// The build info of this binary.
pub fn build_info() -> BuildInfo {
    let mut features = Vec::new();
    if cfg!(feature = "python") {
        features.push("python");
    }
    BuildInfo {
        version: env!("CARGO_PKG_VERSION"),
        git_sha: env!("CREWAI_RUST_GIT_SHA"),
        profile: env!("CREWAI_RUST_PROFILE"),
        target: env!("CREWAI_RUST_TARGET"),
        features,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_crate_version_and_a_commit() {
        let info = build_info();
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
        assert!(!info.git_sha.is_empty());
        assert!(["debug", "release"].contains(&info.profile));
        assert!(!info.target.is_empty());
    }
}
