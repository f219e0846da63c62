//! Marks the build `sesame_test_postgres` when SESAME_TEST_POSTGRES_URL is
//! set, so that without it the PostgreSQL halves of the tests are reported
//! as ignored, not counted as passes.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(sesame_test_postgres)");
    println!("cargo::rerun-if-env-changed=SESAME_TEST_POSTGRES_URL");
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var_os("SESAME_TEST_POSTGRES_URL").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=sesame_test_postgres");
    }
}
