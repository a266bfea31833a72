//! Compiles the API's .proto files; fails with the install command when protoc is missing.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = std::env::var_os("PROTOC").unwrap_or_else(|| "protoc".into());
    if std::process::Command::new(&protoc)
        .arg("--version")
        .output()
        .is_err()
    {
        return Err("protoc not found: run `apt-get install -y protobuf-compiler` (or `make deps`), or set PROTOC".into());
    }
    let protos = [
        "sigil/v1/keys.proto",
        "sigil/v1/signer.proto",
        "sigil/v1/tokens.proto",
        "notary/signer.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    // UnlockRequest carries a PIN: its Debug is written by hand (redacted) in src/lib.rs.
    // The descriptor set feeds gRPC reflection on the socket (`sigil_proto::FILE_DESCRIPTOR_SET`).
    let out_dir = std::path::PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR unset")?);
    tonic_prost_build::configure()
        .skip_debug(["sigil.v1.UnlockRequest"])
        .file_descriptor_set_path(out_dir.join("sigil_descriptor.bin"))
        .compile_protos(&protos, &["."])?;
    Ok(())
}
