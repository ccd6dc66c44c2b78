//! Writes what the Debian package ships besides the binary, from the CLI definition itself:
//! man pages (`clap_mangen`: `dtls-group.1` and one page per subcommand) and shell completions
//! (`clap_complete`: bash, zsh, fish).
//!
//! ```text
//! cargo run -p group-std --example package_assets -- target/package-assets
//! ```
//!
//! `.ci/deb.sh` runs it before `cargo deb` (`[package.metadata.deb]` in group-std's
//! Cargo.toml lists the files).

use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .unwrap_or_else(|| "target/package-assets".into()),
    );
    let man = out.join("man");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let cmd = group_std::cli::Cli::command();
    clap_mangen::generate_to(cmd.clone(), &man)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut c = cmd.clone();
        clap_complete::generate_to(shell, &mut c, "dtls-group", &completions)?;
    }
    let mut pages: Vec<String> = std::fs::read_dir(&man)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    println!("man pages: {}", pages.join(" "));
    println!("completions: {}", completions.display());
    Ok(())
}
