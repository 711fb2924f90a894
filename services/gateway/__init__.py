"""The gateway: REST and SSE in front of the mesh, translated into gRPC calls to the orchestrator."""
