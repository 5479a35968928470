//! Generates the DPDK bindings with bindgen and builds the C shim, both with
//! the C flags Debian's libdpdk.pc gives (never -march=native).
use std::env;
use std::path::PathBuf;
use std::process::Command;

fn pkg_config(args: &[&str]) -> Vec<String> {
    let out = Command::new("pkg-config")
        .args(args)
        .arg("libdpdk")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run pkg-config ({e}); install pkg-config and libdpdk-dev")
        });
    if !out.status.success() {
        panic!(
            "pkg-config {} libdpdk failed: {}\nInstall DPDK 22.11: apt-get install libdpdk-dev",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout)
        .expect("pkg-config output is UTF-8")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Joins `-include X` into one argument each so both cc and clang see pairs.
fn cflags() -> Vec<String> {
    let mut flags = Vec::new();
    let mut raw = pkg_config(&["--cflags"]).into_iter();
    while let Some(flag) = raw.next() {
        if flag == "-include" {
            if let Some(file) = raw.next() {
                flags.push(format!("-include{file}"));
            }
        } else {
            flags.push(flag);
        }
    }
    flags
}

fn main() {
    println!("cargo:rerun-if-changed=shim/shim.c");
    println!("cargo:rerun-if-changed=shim/shim.h");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    let cflags = cflags();

    let mut build = cc::Build::new();
    build.file("shim/shim.c").opt_level(3).warnings(false);
    for flag in &cflags {
        build.flag(flag);
    }
    build.compile("rvs_dpdk_shim");

    for flag in pkg_config(&["--libs"]) {
        if let Some(lib) = flag.strip_prefix("-l") {
            println!("cargo:rustc-link-lib=dylib={lib}");
        } else if let Some(dir) = flag.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
        }
    }

    let bindings = bindgen::Builder::default()
        .header("shim/shim.h")
        .clang_args(cflags.iter().filter(|f| !f.starts_with("-march")))
        .allowlist_function("rvs_.*")
        .allowlist_function("rte_(eal|eth|pktmbuf|mempool|lcore|socket|strerror|get_tsc|thread|ring|delay|dev|version).*")
        .allowlist_type("rte_mbuf|rte_mempool|rte_eth_.*|rte_ether_addr|rte_ring")
        .allowlist_var("RTE_.*")
        .blocklist_function("rte_eth_(rx|tx)_burst")
        .derive_default(true)
        .layout_tests(true)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .expect("bindgen failed on DPDK headers");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR set by cargo"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("write bindings.rs");
}
