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
        "notary/signer.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_prost_build::configure().compile_protos(&protos, &["."])?;
    Ok(())
}
