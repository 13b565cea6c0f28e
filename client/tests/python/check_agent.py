"""A third-party gRPC client (Python grpcio) built from proto/clawops.proto at run time.

Usage: check_agent.py PROTO_DIR ADDR TOKEN
Calls Health and Status with the token (must succeed) and without it / with a wrong one (must
be UNAUTHENTICATED). Exits non-zero with a message on any deviation.
"""
import importlib
import importlib.resources
import sys
import tempfile

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_tools import protoc


def main() -> int:
    proto_dir, addr, token = sys.argv[1:4]
    out = tempfile.mkdtemp()
    # grpc_tools ships the well-known types (google/protobuf/timestamp.proto).
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    rc = protoc.main(["protoc", f"-I{proto_dir}", f"-I{well_known}", f"--python_out={out}",
                      f"--grpc_python_out={out}", "clawops.proto"])
    if rc != 0:
        print("protoc failed on clawops.proto", file=sys.stderr)
        return 1
    sys.path.insert(0, out)
    pb = importlib.import_module("clawops_pb2")
    pb_grpc = importlib.import_module("clawops_pb2_grpc")

    channel = grpc.insecure_channel(addr)
    agent = pb_grpc.AgentStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    good = [("authorization", f"Bearer {token}")]

    for service in ("", "clawops.v1.Agent"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), metadata=good, timeout=10)
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            print(f"health {service!r}: {reply.status}", file=sys.stderr)
            return 1
    status = agent.Status(pb.StatusRequest(), metadata=good, timeout=10)
    if not status.agent_version or status.app.service != "openclaw-gateway":
        print(f"unexpected status: {status}", file=sys.stderr)
        return 1

    for metadata in (None, [("authorization", "Bearer wrong-token-000000")]):
        for call in (lambda: agent.Status(pb.StatusRequest(), metadata=metadata, timeout=10),
                     lambda: health.Check(health_pb2.HealthCheckRequest(), metadata=metadata, timeout=10)):
            try:
                call()
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAUTHENTICATED:
                    print(f"expected UNAUTHENTICATED, got {e.code()}", file=sys.stderr)
                    return 1
            else:
                print("a call without the right token succeeded", file=sys.stderr)
                return 1
    print(f"python grpcio client OK: agent {status.agent_version}, project {status.app.project}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
