//! A Docker client for tests, negotiated down to the engine's API version.
use bollard::Docker;

pub async fn connect() -> Docker {
    Docker::connect_with_local_defaults()
        .expect("docker client")
        .negotiate_version()
        .await
        .expect("the Docker engine must be running for these tests (bash .ci/run starts it)")
}
