//! The broker's jars, from a committed Maven project (`pom.xml` beside this crate), copied into
//! one directory by `mvn dependency:copy-dependencies` once and reused while the pom is unchanged.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::Error;

/// The Apache Kafka release the pom pins (a test keeps the two in step).
pub const KAFKA_VERSION: &str = "4.1.2";

/// The pinned Maven project.
pub const POM: &str = include_str!("../pom.xml");

/// What to install when `java` cannot be started.
pub(crate) const JAVA: &str = "java (install a JDK 17: apt-get install openjdk-17-jre-headless)";

/// Written into the classpath directory once it is complete: the pom's digest.
const STAMP: &str = ".pom.sha256";

#[derive(Clone, Debug)]
pub struct Classpath {
    lib: PathBuf,
}

impl Classpath {
    /// Where `cargo xtask infra up` keeps it: kept across `infra down`, like Maven's own cache.
    pub fn default_dir(workspace_root: &Path) -> PathBuf {
        workspace_root.join("target/infra/kafka-lib")
    }

    /// The classpath in `lib`, materializing it with `mvn` first when it is missing or was made
    /// from another pom. Needs `mvn` on PATH (and Maven Central) only that first time.
    pub fn materialize(lib: &Path) -> Result<Classpath, Error> {
        if stamp(lib).as_deref() == Some(pom_checksum().as_str()) {
            return Ok(Classpath {
                lib: lib.to_owned(),
            });
        }
        let parent = lib.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)?;
        let staging = parent.join("kafka-lib.partial");
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging)?;
        let pom = staging.join("pom.xml");
        std::fs::write(&pom, POM)?;
        let mut command = Command::new("mvn");
        command
            .args(["-B", "-q", "-f"])
            .arg(&pom)
            .args(["dependency:copy-dependencies", "-DincludeScope=runtime"])
            .arg(format!(
                "-DoutputDirectory={}",
                staging.join("jars").display()
            ));
        run(
            &mut command,
            "mvn dependency:copy-dependencies",
            "mvn (install Maven: apt-get install maven)",
        )?;
        let _ = std::fs::remove_dir_all(lib);
        std::fs::rename(staging.join("jars"), lib)?;
        std::fs::write(lib.join(STAMP), pom_checksum())?;
        let _ = std::fs::remove_dir_all(&staging);
        Ok(Classpath {
            lib: lib.to_owned(),
        })
    }

    /// The classpath in `lib` as it is; an error naming the command that makes it when absent.
    pub fn open(lib: &Path) -> Result<Classpath, Error> {
        match stamp(lib) {
            Some(_) => Ok(Classpath {
                lib: lib.to_owned(),
            }),
            None => Err(Error::NotMaterialized(lib.to_owned())),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.lib
    }

    /// `java` with this classpath, ready for a main class and its arguments.
    pub fn java(&self, heap_mb: u32) -> Command {
        let java = std::env::var_os("JAVA_HOME")
            .map(|home| PathBuf::from(home).join("bin/java"))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("java"));
        let mut command = Command::new(java);
        command
            .args(jvm_flags(heap_mb))
            .arg("-cp")
            .arg(format!("{}/*", self.lib.display()))
            // Our own OTLP settings are for the pipeline, not the broker.
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("KAFKA_HEAP_OPTS")
            .env_remove("KAFKA_OPTS");
        command
    }
}

/// A small fixed heap and a serial collector: on a shared 2-core machine a broker for one
/// developer needs neither G1's threads nor the default quarter of RAM. No JIT limit: the broker
/// runs benchmarks too.
fn jvm_flags(heap_mb: u32) -> Vec<String> {
    vec![
        format!("-Xms{}m", heap_mb.min(256)),
        format!("-Xmx{heap_mb}m"),
        "-XX:+UseSerialGC".into(),
        "-XX:-UsePerfData".into(),
        "-XX:+ExitOnOutOfMemoryError".into(),
        "-Xshare:auto".into(),
        "-Djava.awt.headless=true".into(),
    ]
}

fn pom_checksum() -> String {
    Sha256::digest(POM.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn stamp(lib: &Path) -> Option<String> {
    std::fs::read_to_string(lib.join(STAMP))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Runs `command` to its end: its stdout, or an error naming `what` with the last lines it
/// printed. `program` names what to install when it cannot be started.
pub(crate) fn run(command: &mut Command, what: &str, program: &str) -> Result<Vec<u8>, Error> {
    let output = command.output().map_err(|source| Error::Spawn {
        what: program.into(),
        source,
    })?;
    if !output.status.success() {
        return Err(Error::Command {
            what: what.into(),
            detail: tail(&output.stdout, &output.stderr),
        });
    }
    Ok(output.stdout)
}

/// The last lines a failed command printed.
fn tail(stdout: &[u8], stderr: &[u8]) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(stdout),
        String::from_utf8_lossy(stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pom_pins_the_version_we_name() {
        assert!(POM.contains(&format!("<kafka.version>{KAFKA_VERSION}</kafka.version>")));
        // Without a binding the broker logs nothing, and readiness is read from its log.
        assert!(POM.contains("<artifactId>log4j-slf4j-impl</artifactId>"));
    }

    #[test]
    fn an_unmaterialized_directory_names_the_command() {
        let err = Classpath::open(Path::new("/nonexistent/kafka-lib")).unwrap_err();
        assert!(err.to_string().contains("cargo xtask infra up"), "{err}");
    }
}
