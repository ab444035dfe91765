//! `cargo xtask setup`: everything the build needs, installed idempotently.
//!
//! Building Rust eBPF needs `-Z build-std=core`, so a compiler with its std source, and
//! bpf-linker built against an LLVM as new as that compiler's. On Debian 12 the rustup
//! toolchains ship without `rust-src`, so we use Debian's `rustc-web` (which has
//! `rust-web-src`) for the kernel programs only, linked into rustup under a fixed name that
//! `agent/build.rs` asks for. Userspace builds with the normal rustup toolchain.

use std::{path::Path, process::Command};

use anyhow::{bail, Context as _, Result};

use crate::shell::{is_root, output, run_command, workspace_root};

/// Debian packages: the eBPF compiler with std source, and LLVM 22 for bpf-linker.
const APT_PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "rust-web-src",
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    // Test tools: systemd-analyze for the units, setpriv and mount, openssl for test PKI.
    "systemd",
    "util-linux",
    "openssl",
    // The evasion tests build small C programs: static, with io_uring through liburing.
    "gcc",
    "libc6-dev",
    "liburing-dev",
    // The systemd tests boot a bookworm tree (mmdebstrap) with systemd as PID 1 (nspawn).
    "mmdebstrap",
    "systemd-container",
];
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
/// Must match `EBPF_TOOLCHAIN` in `agent/build.rs`.
const TOOLCHAIN_NAME: &str = "lineage-bpf";
const TOOLCHAIN_DIR: &str = "/opt/lineage-bpf-toolchain";

/// Python packages the tests use: the independent test-vector checker (blake3, cryptography),
/// a gRPC client generated from proto/ by another toolchain (grpcio-tools), and an
/// S3-compatible server for the collector's object-store backend (moto).
/// kubernetes-validate checks the rendered deploy manifests against the Kubernetes schemas.
const PYTHON_PACKAGES: &[&str] = &[
    "blake3",
    "cryptography",
    "grpcio-tools",
    "moto[server]",
    "kubernetes-validate",
    "prometheus_client",
];
/// The modules those packages provide, to check they are importable.
const PYTHON_MODULES: &str =
    "import blake3, cryptography, grpc_tools, moto, boto3, yaml, kubernetes_validate, prometheus_client";

struct Missing {
    packages: Vec<&'static str>,
    bpf_linker: bool,
    toolchain_link: bool,
    python: bool,
    /// helm (and kubectl) for rendering the deploy chart and manifests.
    k8s_tools: bool,
}

impl Missing {
    fn nothing(&self) -> bool {
        self.packages.is_empty()
            && !self.bpf_linker
            && !self.toolchain_link
            && !self.python
            && !self.k8s_tools
    }
}

fn k8s_tools_ok() -> bool {
    output("helm", &["version", "--short"]).is_some()
        && output("kubectl", &["version", "--client"]).is_some()
}

fn python_ok() -> bool {
    output("python3", &["-c", PYTHON_MODULES]).is_some()
}

fn package_installed(name: &str) -> bool {
    output("dpkg-query", &["-W", "-f=${Status}", name])
        .is_some_and(|s| s.contains("install ok installed"))
}

fn bpf_linker_ok() -> bool {
    output("bpf-linker", &["--version"]).is_some_and(|v| v.contains(BPF_LINKER_VERSION))
}

fn toolchain_linked() -> bool {
    output(
        "rustup",
        &["run", TOOLCHAIN_NAME, "rustc", "--print", "sysroot"],
    )
    .is_some_and(|s| s.trim() == "/usr")
        && Path::new("/usr/lib/rustlib/src/rust/library/core").is_dir()
}

fn check() -> Missing {
    Missing {
        packages: APT_PACKAGES
            .iter()
            .copied()
            .filter(|p| !package_installed(p))
            .collect(),
        bpf_linker: !bpf_linker_ok(),
        toolchain_link: !toolchain_linked(),
        python: !python_ok(),
        k8s_tools: !k8s_tools_ok(),
    }
}

fn is_apt_system() -> bool {
    let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let debian_like = release.lines().any(|l| {
        (l.starts_with("ID=") || l.starts_with("ID_LIKE="))
            && (l.contains("debian") || l.contains("ubuntu"))
    });
    debian_like && output("apt-get", &["--version"]).is_some()
}

fn describe(m: &Missing) -> String {
    let mut lines = Vec::new();
    if !m.packages.is_empty() {
        lines.push(format!("- packages: {} (a Rust compiler with std source for the bpfel-unknown-none target, LLVM 22 development files)", m.packages.join(" ")));
    }
    if m.bpf_linker {
        lines.push(format!("- bpf-linker {BPF_LINKER_VERSION} built against LLVM 22 (LLVM_PREFIX={LLVM_PREFIX} cargo install bpf-linker --version {BPF_LINKER_VERSION} --no-default-features --features llvm-22)"));
    }
    if m.toolchain_link {
        lines.push(format!("- a rustup toolchain named `{TOOLCHAIN_NAME}` whose rustc has rust-src (rustup toolchain link {TOOLCHAIN_NAME} <dir with bin/rustc, bin/cargo, lib/rustlib>)"));
    }
    if m.k8s_tools {
        lines.push(
            "- helm and kubectl (deploy/tools/install-k8s-tools.sh installs them)".to_string(),
        );
    }
    if m.python {
        lines.push(format!(
            "- python3 with {} (the independent test-vector checker)",
            PYTHON_PACKAGES.join(", ")
        ));
    }
    lines.join("\n")
}

/// Installs what is missing; prints what it does and skips what is present.
pub fn run() -> Result<()> {
    let missing = check();
    if missing.nothing() {
        eprintln!("setup: everything is in place");
        return Ok(());
    }
    if !is_apt_system() {
        bail!(
            "setup supports Debian and Ubuntu (apt). On this system, install by hand:\n{}",
            describe(&missing)
        );
    }
    if !is_root() {
        bail!(
            "setup installs system packages and must run as root. Missing:\n{}",
            describe(&missing)
        );
    }
    if !missing.packages.is_empty() {
        eprintln!("setup: installing {}", missing.packages.join(" "));
        run_command(Command::new("apt-get").args(["update", "-q"]))?;
        run_command(
            Command::new("apt-get")
                .args(["install", "-y", "-q", "--no-install-recommends"])
                .args(&missing.packages)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
        .context("installing the build packages (see the apt-get output above)")?;
    }
    if !bpf_linker_ok() {
        eprintln!(
            "setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (about 2 minutes)"
        );
        run_command(
            Command::new("cargo")
                .args([
                    "install",
                    "bpf-linker",
                    "--version",
                    BPF_LINKER_VERSION,
                    "--no-default-features",
                    "--features",
                    "llvm-22",
                ])
                .env("LLVM_PREFIX", LLVM_PREFIX),
        )?;
    }
    if !toolchain_linked() {
        eprintln!("setup: linking Debian's rustc as rustup toolchain `{TOOLCHAIN_NAME}`");
        let dir = Path::new(TOOLCHAIN_DIR);
        std::fs::create_dir_all(dir.join("bin"))?;
        std::fs::create_dir_all(dir.join("lib"))?;
        for (link, target) in [
            ("bin/rustc", "/usr/bin/rustc"),
            ("bin/cargo", "/usr/bin/cargo"),
            ("lib/rustlib", "/usr/lib/rustlib"),
        ] {
            let link = dir.join(link);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(target, &link)
                .with_context(|| format!("linking {}", link.display()))?;
        }
        run_command(Command::new("rustup").args([
            "toolchain",
            "link",
            TOOLCHAIN_NAME,
            TOOLCHAIN_DIR,
        ]))?;
    }
    if !python_ok() {
        eprintln!(
            "setup: installing Python packages {}",
            PYTHON_PACKAGES.join(" ")
        );
        let pip = |extra: &[&str]| {
            run_command(
                Command::new("python3")
                    .args(["-m", "pip", "install", "--quiet"])
                    .args(extra)
                    .args(PYTHON_PACKAGES),
            )
        };
        // Debian's own python refuses pip without this flag; a pyenv/venv python does not need it.
        pip(&[]).or_else(|_| pip(&["--break-system-packages"]))?;
    }
    if !k8s_tools_ok() {
        eprintln!("setup: installing helm (and kubectl if missing) for the deploy tests");
        run_command(&mut Command::new(
            workspace_root().join("deploy/tools/install-k8s-tools.sh"),
        ))?;
    }
    let left = check();
    if !left.nothing() {
        bail!(
            "setup finished but these are still missing:\n{}",
            describe(&left)
        );
    }
    eprintln!("setup: done");
    Ok(())
}

/// Runs setup only when something is missing (what `run` and `test` call first).
pub fn ensure() -> Result<()> {
    if check().nothing() {
        return Ok(());
    }
    run()
}

/// cargo-fuzz and the nightly toolchain, for the short fuzz run.
pub fn ensure_fuzz() -> Result<()> {
    let nightly = output("rustup", &["toolchain", "list"])
        .is_some_and(|l| l.lines().any(|t| t.starts_with("nightly")));
    if !nightly {
        bail!("fuzzing needs the rustup nightly toolchain (rustup toolchain install nightly), which is missing");
    }
    if output("cargo", &["fuzz", "--version"]).is_none() {
        eprintln!("setup: installing cargo-fuzz");
        run_command(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    Ok(())
}
