//! `cargo xtask package`: one tarball with everything an install needs (docs/OPERATIONS.md).

use std::{fs, path::Path, process::Command};

use anyhow::{Context as _, Result};

use crate::{
    build_release,
    shell::{output, run_command, workspace_root},
    BINARIES,
};

const DOCS: [&str; 6] = [
    "README.md",
    "docs/OPERATIONS.md",
    "docs/DATA_DIR.md",
    "docs/FORMAT.md",
    "docs/EVENTS.md",
    "docs/API.md",
];

fn copy(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to.parent().expect("has a parent"))?;
    fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    Ok(())
}

/// Builds the tarball and returns its path.
pub fn run() -> Result<std::path::PathBuf> {
    build_release()?;
    let root = workspace_root();
    let version = env!("CARGO_PKG_VERSION");
    let name = format!("lineage-{version}-{}-linux", std::env::consts::ARCH);
    let stage = root.join("target/package").join(&name);
    let _ = fs::remove_dir_all(&stage);
    for bin in BINARIES {
        copy(
            &root.join("target/release").join(bin),
            &stage.join("bin").join(bin),
        )?;
    }
    for unit in ["lineage-agent.service", "lineage-collector.service"] {
        copy(
            &root.join("deploy/systemd").join(unit),
            &stage.join("systemd").join(unit),
        )?;
    }
    copy(
        &root.join("deploy/systemd/lineage.sysusers.conf"),
        &stage.join("sysusers/lineage.conf"),
    )?;
    for doc in DOCS {
        copy(
            &root.join(doc),
            &stage
                .join("doc")
                .join(Path::new(doc).file_name().expect("file")),
        )?;
    }
    fs::create_dir_all(stage.join("etc"))?;
    for (bin, conf) in [
        ("lineage-agent", "agent.toml"),
        ("lineage-collector", "collector.toml"),
    ] {
        let text = output(
            stage.join("bin").join(bin).to_str().expect("utf-8 path"),
            &["config", "print-default"],
        )
        .with_context(|| format!("{bin} config print-default"))?;
        fs::write(stage.join("etc").join(conf), text)?;
    }
    run_command(
        Command::new("sh")
            .arg("-c")
            .arg("find . -type f ! -name SHA256SUMS | sort | xargs sha256sum > SHA256SUMS")
            .current_dir(&stage),
    )?;
    let tarball = root.join("target/package").join(format!("{name}.tar.gz"));
    run_command(
        Command::new("tar")
            .arg("-czf")
            .arg(&tarball)
            .arg("-C")
            .arg(stage.parent().expect("parent"))
            .arg(&name),
    )?;
    eprintln!("xtask: wrote {}", tarball.display());
    Ok(tarball)
}
