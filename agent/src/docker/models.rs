//! The engine's data types the agent reads or fills in (create bodies, inspect results, build
//! progress), under the adapter's name so that no other module depends on bollard's layout.
pub use bollard::{
    moby::buildkit::v1::{StatusResponse, Vertex, VertexLog},
    models::{
        BuildInfo, BuildInfoAux, ChangeType, ContainerCreateBody, ContainerInspectResponse,
        ContainerStateStatusEnum, ContainerStatsResponse, ContainerSummary,
        ContainerSummaryStateEnum, EndpointSettings, EventMessage, FilesystemChange, HealthConfig,
        HealthStatusEnum, HostConfig, HostConfigLogConfig, ImageInspect, ImageSummary, Mount,
        MountType, NetworkCreateRequest, NetworkingConfig, PortBinding, RestartPolicy,
        RestartPolicyNameEnum, SystemInfo, SystemVersion, VolumeCreateRequest,
    },
};
