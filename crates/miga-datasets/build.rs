//! Whether OpenH264 gets its x86 assembly. openh264-sys2 assembles it with nasm when nasm runs
//! (`$NASM`, else `nasm` on the path) and silently falls back to its C code otherwise; this
//! build script makes the same test so that `miga info` can say which decoder path the build
//! has ([`miga_datasets::video::DECODER`]).

fn main() {
    for var in ["OPENH264_NO_ASM", "NASM", "PATH"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let nasm = std::env::var("NASM").unwrap_or_else(|_| "nasm".into());
    let runs = std::process::Command::new(nasm)
        .arg("-v")
        .output()
        .is_ok_and(|out| out.status.success());
    let assembly = matches!(arch.as_str(), "x86_64" | "x86")
        && runs
        && std::env::var_os("OPENH264_NO_ASM").is_none();
    println!(
        "cargo:rustc-env=MIGA_OPENH264_ASSEMBLY={}",
        u8::from(assembly)
    );
}
