//! Which tests this build can run, as `cfg`s the tests read in their
//! `#[ignore = "why"]` attributes, so that a skipped test is listed as
//! ignored, with its reason, in the summary of `cargo test`:
//!
//! - `full_suite` when `FOLDWISE_FULL_SUITE=1` (set by `.ci/run`): the
//!   tests that need `../shared/data`, git, Chromium or Taplo run, and fail
//!   naming what is missing. Without it they are listed as ignored.
//! - `shared_data` when `../shared/data` exists beside the checkout: the
//!   tests that read the real data run, as in CI, for anyone who has it
//!   (cargo watches that folder once it exists).
//! - `avx512f_host` when the building CPU has AVX-512F: the direct
//!   convolution kernel's tests run (the tests build and run on one machine).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(full_suite)");
    println!("cargo::rustc-check-cfg=cfg(avx512f_host)");
    println!("cargo::rustc-check-cfg=cfg(shared_data)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=FOLDWISE_FULL_SUITE");
    if std::env::var_os("FOLDWISE_FULL_SUITE").is_some_and(|v| v == "1") {
        println!("cargo::rustc-cfg=full_suite");
    }
    // Watched only once present: cargo reruns a build script on every
    // build while a watched path is missing.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let shared = std::path::Path::new(&manifest).join("../shared/data");
    if shared.is_dir() {
        println!("cargo::rerun-if-changed={}", shared.display());
        println!("cargo::rustc-cfg=shared_data");
    }
    if host_has_avx512f() {
        println!("cargo::rustc-cfg=avx512f_host");
    }
}

/// Whether the CPU running this script has AVX-512F and builds for itself.
fn host_has_avx512f() -> bool {
    let native = std::env::var("HOST").ok() == std::env::var("TARGET").ok();
    #[cfg(target_arch = "x86_64")]
    {
        native && std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = native;
        false
    }
}
