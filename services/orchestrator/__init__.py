"""The orchestrator: owns a generation request's life between the gateway and the models."""
