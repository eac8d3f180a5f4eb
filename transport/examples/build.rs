//! Compiles the examples' .proto files with protox (no system `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/helloworld.proto", "proto/echo.proto"];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        // Generated clients take any GrpcService (a grpc_h3::Channel), not tonic's transport.
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
